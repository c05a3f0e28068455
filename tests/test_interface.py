"""The hardware / host interface module (`rpaccel.interface`): one definition of the CSR
map, register fields, codes and stream layouts, and the C header generated from it."""

import random
import shutil
import subprocess

import pytest

from rpaccel import interface as itf
from rpaccel.config import get_config


def test_register_fields_pack_like_the_documented_words():
    assert itf.load_ctrl(2, itf.LoadUnit.EMBEDDING) == 2 | 1 << 4
    assert itf.err_where(1, 6) == 1 | 6 << 8
    cfg = get_config("three-stage")
    shape = itf.SHAPE.const({"stages": cfg.stages, "partitions": cfg.partitions,
                             "rows": cfg.array_rows, "cols": cfg.array_cols})
    assert shape.as_value().value == 3 | 4 << 4 | 8 << 8 | 16 << 20
    regs = itf.csr_regs(cfg)
    assert regs["S2_DRAM_BYTES"][0] == 0x40 + 2 * 0x40 + 0x28
    assert len({a for a, _, _ in regs.values()}) == len(regs)  # no two registers share


def test_beat_packer_is_the_layouts():
    """The fast packer gives the bits of the Amaranth layout's own constant."""
    for name in ("default", "three-stage", "baseline"):
        cfg = get_config(name)
        layout = itf.top_layouts(cfg)[0]
        pack = itf.beat_packer(layout)
        rng = random.Random(1)
        for _ in range(200):
            beat = {"head": rng.getrandbits(1), "dense": rng.getrandbits(1),
                    "stage": rng.randrange(3),
                    "word": [rng.randint(-128, 127) for _ in range(itf.lanes(cfg))],
                    "table": rng.randrange(cfg.emb_tables), "id": rng.getrandbits(32),
                    "last": rng.getrandbits(1), "end": rng.getrandbits(1)}
            assert pack(beat) == layout.const(beat).as_value().value, beat


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
def test_c_header_packs_what_the_hardware_reads(tmp_path):
    """A C program built against the generated header packs a query beat and the
    register words; they equal the Python packers' bits, and the CSR addresses equal
    the map's."""
    cfg = get_config("default")
    (tmp_path / "rpaccel.h").write_text(itf.c_header(cfg, {"engine": [400, 200],
                                                           "embedding": 271}))
    (tmp_path / "t.c").write_text(r"""
#include <stdio.h>
#include "rpaccel.h"
int main(void) {
    uint32_t w[RPACCEL_QUERY_WORDS32] = {0};
    rpaccel_set_bits(w, RPACCEL_QUERY_DENSE_LSB, RPACCEL_QUERY_DENSE_WIDTH, 1);
    rpaccel_set_bits(w, RPACCEL_QUERY_STAGE_LSB, RPACCEL_QUERY_STAGE_WIDTH, 1);
    for (unsigned i = 0; i < RPACCEL_QUERY_WORD_COUNT; i++)
        rpaccel_set_bits(w, RPACCEL_QUERY_WORD_LSB + i * RPACCEL_QUERY_WORD_ELEM_WIDTH,
                         RPACCEL_QUERY_WORD_ELEM_WIDTH, (uint8_t)(int8_t)(i * 37 - 100));
    rpaccel_set_bits(w, RPACCEL_QUERY_TABLE_LSB, RPACCEL_QUERY_TABLE_WIDTH, 5);
    rpaccel_set_bits(w, RPACCEL_QUERY_ID_LSB, RPACCEL_QUERY_ID_WIDTH, 0xdeadbeefu);
    rpaccel_set_bits(w, RPACCEL_QUERY_LAST_LSB, RPACCEL_QUERY_LAST_WIDTH, 1);
    for (int i = RPACCEL_QUERY_WORDS32 - 1; i >= 0; i--) printf("%08x", w[i]);
    printf(" %x %x %x %u\n", RPACCEL_LOAD_CTRL_WORD(1, RPACCEL_UNIT_EMBEDDING),
           RPACCEL_CSR_STAGE(1, RPACCEL_CSR_S_MISSES), RPACCEL_CSR_LOAD_CTRL,
           (unsigned)rpaccel_get_bits(w, RPACCEL_QUERY_ID_LSB, RPACCEL_QUERY_ID_WIDTH) ==
           0xdeadbeefu);
    /* the same beat as an AXI4-Stream record */
    uint8_t r[RPACCEL_AXIS_QUERY_TDATA_BYTES] = {0};
    uint32_t id = 0xdeadbeefu;
    r[RPACCEL_AXIS_QUERY_FLAGS_OFFSET] = RPACCEL_AXIS_QUERY_DENSE |
                                         (1u << RPACCEL_AXIS_QUERY_STAGE_LSB);
    r[RPACCEL_AXIS_QUERY_KEEP_OFFSET] = 1;
    r[RPACCEL_AXIS_QUERY_LAST_OFFSET] = 1;
    for (unsigned i = 0; i < 4; i++) r[RPACCEL_AXIS_QUERY_ID_OFFSET + i] = id >> (8 * i);
    r[RPACCEL_AXIS_QUERY_TABLE_OFFSET] = 5;
    for (unsigned i = 0; i < RPACCEL_QUERY_WORD_COUNT; i++)
        r[RPACCEL_AXIS_QUERY_WORD_OFFSET + i] = (uint8_t)(int8_t)(i * 37 - 100);
    for (unsigned i = 0; i < RPACCEL_AXIS_QUERY_TDATA_BYTES; i++) printf("%02x", r[i]);
    printf("\n");
    return 0;
}
""")
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-o", str(tmp_path / "t"),
                    str(tmp_path / "t.c")], check=True, cwd=tmp_path)
    out = subprocess.run([str(tmp_path / "t")], check=True, capture_output=True,
                         text=True).stdout.split()
    layout = itf.top_layouts(cfg)[0]
    n = itf.lanes(cfg)
    beat = {"head": 0, "dense": 1, "stage": 1,
            "word": [((i * 37 - 100 + 128) % 256) - 128 for i in range(n)], "table": 5,
            "id": 0xDEADBEEF, "last": 1, "end": 0}
    assert int(out[0], 16) == itf.beat_packer(layout)(beat)
    assert bytes.fromhex(out[5]) == itf.pack_query_records(cfg, [beat])[0][0]
    regs = itf.csr_regs(cfg)
    assert [int(x, 16) for x in out[1:4]] == [itf.load_ctrl(1, itf.LoadUnit.EMBEDDING),
                                             regs["S1_MISSES"][0], regs["LOAD_CTRL"][0]]
    assert out[4] == "1"


def test_engine_map_words_and_rules():
    from rpaccel.config import get_config

    cfg = get_config("three-stage").replace(engines=4)
    assert itf.default_engine_map(cfg) == (0, 1, 2, 2)
    assert itf.default_engine_map(get_config("default")) == (0, 1)
    # two bits per engine, LSB first; unused engines read as ENGINE_NONE
    assert itf.engine_map_word((0, 1, 2, 2)) == 0 | 1 << 2 | 2 << 4 | 2 << 6
    assert itf.engine_map_word((1, 0)) == 1 | 3 << 4 | 3 << 6
    assert itf.check_engine_map(cfg, [2, None, 0, 1]) == (2, None, 0, 1)
    for bad, rule in (((0, 1, 2), "one stage (or None) per engine (4 engines)"),
                      ((0, 1, 3, 2), "stages from 0 to 2 or None"),
                      ((0, 0, 1, None), "a map giving every stage at least one engine")):
        try:
            itf.check_engine_map(cfg, bad)
        except ValueError as e:
            assert f"engine_map must be {rule}, not {bad!r}" == str(e)
        else:
            raise AssertionError(f"{bad} was taken")


def test_query_beats_with_several_embedding_units_pack_one_lane_per_unit():
    """``emb_units`` 3, five tables: a sparse beat carries unit g's next id in lane g
    (tables g, g + 3, ...), ``keep`` marks the lanes in use, a candidate has as many
    sparse beats as its longest lane, and the ids of every unit come back in order."""
    import numpy as np

    from rpaccel.config import get_config
    from rpaccel.interface import beat_lookups, beat_packer, query_beats, top_layouts

    cfg = get_config("default").replace(emb_units=3)
    bags = [(0, [1, 2]), (1, [3]), (2, [4, 5, 6]), (3, [7]), (4, [8, 9, 10, 11]),
            (0, [12]), (1, [13]), (2, [14]), (3, [15]), (4, [16])]
    dense = [np.zeros((2, 13), np.int64)]
    beats = query_beats(cfg, dense, bags)
    sparse = [b for b in beats[1:] if not b["dense"]]
    # candidate 0: unit 0 has 3 ids (tables 0, 3), unit 1 has 5 (1, 4), unit 2 has 3;
    # candidate 1: 2, 2 and 1
    assert len(sparse) == 5 + 2
    got = [[(t, i, la) for b in sparse[:5] for g, t, i, la in beat_lookups(cfg, b) if g == u]
           for u in range(3)]
    assert got == [[(0, 1, 0), (0, 2, 1), (3, 7, 1)],
                   [(1, 3, 1), (4, 8, 0), (4, 9, 0), (4, 10, 0), (4, 11, 1)],
                   [(2, 4, 0), (2, 5, 0), (2, 6, 1)]]
    assert [b["keep"] for b in sparse] == [0b111, 0b111, 0b111, 0b010, 0b010, 0b111, 0b011]
    # every field packs (the layout has the lanes, the packer agrees with Amaranth's)
    layout = top_layouts(cfg)[0]
    pack = beat_packer(layout)
    for b in beats:
        assert pack(b) == layout.const(b).as_value().value
