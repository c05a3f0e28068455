"""The hardware / host interface of the RPAccel top level, in one place.

Everything a host needs to drive the accelerator is defined here without any Component:
the CSR map (`CSR`, `STAGE_CSR`, `csr_regs`) and the bit fields of its packed registers
(`SHAPE`, `STATUS`, `ERR_WHERE`, `LOAD_CTRL`), the codes it reads and writes (`ErrCause`,
`LoadUnit`, the load-beat targets `EngineTarget` and `EmbTarget`), and the payloads of
the query and result streams (`top_layouts`, `beat_packer`), and the MLP engine's program and
buffer formats (`StepKind`, `Region`, `EngineGeometry`, `engine_layouts`) that the host
compiler `rpaccel.program` writes into load images. `rpaccel.hw` builds the
hardware from these definitions; the runtime, the testbenches and the CLI pack and
unpack with them; `c_header` writes them as a C header for a host driver (`rpaccel
generate --block rpaccel` writes ``rpaccel.h`` beside ``csr.json``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum
from amaranth.utils import ceil_log2

from .config import RPAccelConfig

__all__ = ["CSR", "STAGE_CSR", "csr_regs", "SHAPE", "STATUS", "ERR_WHERE", "LOAD_CTRL",
           "ENGINE_MAP", "ENGINE_NONE", "default_engine_map", "check_engine_map",
           "engine_map_word",
           "ID_VALUE", "ErrCause", "LoadUnit", "EngineTarget", "EmbTarget", "top_layouts",
           "beat_packer", "query_beats", "QueryRecord", "query_record", "pack_query_records",
           "RESULT_RECORD_BYTES", "unpack_result_record", "load_ctrl", "err_where", "c_header",
           "query_slots",
           "StepKind", "Region", "slot_width", "engine_width", "engine_widths",
           "cache_state_bits",
           "EngineGeometry",
           "EngineLayouts", "engine_layouts",
           "pair_layout", "pair_row_len", "id_lane_fields", "id_lanes",
           "copy_ids", "beat_lookups",
           "feature_pack", "feature_place", "feature_words", "max_feature_pack",
           "clamp_pack"]

#: The ``ID`` register's value ("RPAC").
ID_VALUE = 0x52504143

#: Global CSRs: name -> (byte address, access). Counters are 32-bit views of 48-bit
#: counters (low word).
CSR = {
    "ID": (0x00, "ro"),         # ID_VALUE
    "SHAPE": (0x04, "ro"),      # SHAPE layout
    "CTRL": (0x08, "wo"),       # bit 0: clear the error status
    "STATUS": (0x0C, "ro"),     # STATUS layout
    "ERR_CAUSE": (0x10, "ro"),  # ErrCause
    "ERR_WHERE": (0x14, "ro"),  # ERR_WHERE layout
    "ERR_ID": (0x18, "ro"),
    "QUERIES": (0x1C, "ro"),    # queries answered since reset
    "CYCLES": (0x20, "ro"),     # cycles since reset
    "BUSY_CYCLES": (0x24, "ro"),  # cycles with a query in flight
    "LOAD_ADDR": (0x28, "rw"),  # DRAM byte address of a load image (AXI-word aligned)
    "LOAD_BEATS": (0x2C, "rw"),  # load beats in it
    "LOAD_CTRL": (0x30, "wo"),  # write: start a load (LOAD_CTRL layout)
    "LOAD_STATUS": (0x34, "ro"),  # bit 0: a load is running
    "LOAD_DONE": (0x38, "ro"),  # beats delivered by the current (last) load
    "ENGINE_MAP": (0x3C, "wr"),  # the stage each engine serves (ENGINE_MAP layout)
}
#: Per-stage CSRs at ``STAGE_BASE + STAGE_STRIDE * stage + offset``.
STAGE_CSR = {
    "K": (0x00, "rw"), "DENSE_WORDS": (0x04, "rw"), "TABLES": (0x08, "rw"),
    "DW": (0x0C, "rw"), "ITEMS": (0x10, "ro"), "LOOKUPS": (0x14, "ro"),
    "MISSES": (0x18, "ro"), "MACS": (0x1C, "ro"), "ENGINE_CYCLES": (0x20, "ro"),
    "EMB_ERRORS": (0x24, "ro"), "DRAM_BYTES": (0x28, "ro"),
    "FPACK": (0x2C, "rw"),      # log2 pooled vectors per feature word (`feature_pack`)
}
STAGE_BASE, STAGE_STRIDE = 0x40, 0x40


def csr_regs(config: RPAccelConfig) -> dict:
    """Every register: name -> (byte address, access, width). Stage registers are named
    ``S<s>_<NAME>``."""
    regs = {n: (a, acc, 32) for n, (a, acc) in CSR.items()}
    for st in range(config.stages):
        for n, (off, acc) in STAGE_CSR.items():
            regs[f"S{st}_{n}"] = (STAGE_BASE + STAGE_STRIDE * st + off, acc, 32)
    return regs


#: ``SHAPE``: what was generated.
SHAPE = data.StructLayout({"stages": 4, "partitions": 4, "rows": 12, "cols": 12})
#: ``STATUS``: queries in flight and the error flag.
STATUS = data.StructLayout({"busy": 1, "error": 1, "_pad": 6, "inflight": 8})
#: ``ERR_WHERE``: the stage and table of the first out-of-range id.
ERR_WHERE = data.StructLayout({"stage": 8, "table": 8})
#: ``LOAD_CTRL`` (written): the unit a load image is for and its index: the engine
#: (``unit`` ENGINE) or the stage (``unit`` EMBEDDING).
LOAD_CTRL = data.StructLayout({"stage": 2, "_pad": 2, "unit": 1})
#: ``ENGINE_MAP``: per engine the stage it serves (`ENGINE_NONE`: none); reads the map in
#: use (after reset `default_engine_map`). A write is taken only while no query or load
#: is in the machine and when it gives every stage an engine and names no other stage;
#: otherwise the map stays and ``ERR_CAUSE`` is ENGINE_MAP.
ENGINE_MAP = data.StructLayout({f"e{e}": 2 for e in range(4)})
#: An ``ENGINE_MAP`` entry: the engine serves no stage.
ENGINE_NONE = 3


class ErrCause(enum.IntEnum, shape=8):
    """``ERR_CAUSE`` values (the first error since the last clear)."""

    NONE = 0
    ID_RANGE = 1       # an embedding id outside its table (ERR_WHERE / ERR_ID say which)
    CAND_BEATS = 2     # a candidate with more than cand_beats buffered beats
    CAND_COUNT = 3     # a header with more than max_items candidates (query dropped)
    LOAD_REFUSED = 4   # LOAD_CTRL ignored: a load or a query running, 0 beats, no such stage
    LOAD_BUS = 5       # DRAM answered a load's read with SLVERR / DECERR
    ENGINE_MAP = 6     # ENGINE_MAP not taken: a stage without an engine, or no such stage
    LOOKUP_BUS = 7     # DRAM answered an embedding line read with SLVERR / DECERR
    FRAMING = 8        # a query's end and its stream's `end` (AXI4-Stream tlast) disagree


class LoadUnit(enum.IntEnum, shape=1):
    """``LOAD_CTRL.unit``: which unit of the stage a load image is for."""

    ENGINE = 0      # program, parameters and weights (the engine's load stream)
    EMBEDDING = 1   # table descriptors, static-cache map and rows


class EngineTarget(enum.IntEnum, shape=3):
    """The engine's ``load.target``: which buffer a load beat writes."""

    WEIGHT = 0
    PARAM = 1
    PROG = 2
    PAIR = 3
    ACT = 4


class EmbTarget(enum.IntEnum, shape=2):
    """The embedding unit's ``load.target``."""

    TABLE = 0
    MAP = 1
    STATIC = 2


class StepKind(enum.IntEnum, shape=2):
    """``kind`` of an engine program step (one descriptor per step)."""

    END = 0   # the run is over
    MLP = 1   # one layer, tiled over the partition
    DOT = 2   # DLRM dot interaction: the bottom output, then the feature-pair dot products
    CAT = 3   # concatenation of the features


class Region(enum.IntEnum, shape=2):
    """Regions of an engine's activation buffer: two ping-pong buffers and the feature
    region (bottom-MLP output and pooled embeddings, read by the interaction step)."""

    A = 0
    B = 1
    FEAT = 2


def slot_width(config: RPAccelConfig, slot: int) -> int:
    """Columns of the widest partition that partition slot ``slot`` can be."""
    return config.array_cols >> ceil_log2(slot + 1)


def engine_width(config: RPAccelConfig, engine: int) -> int:
    """Columns of engine ``engine`` of the `rpaccel.hw.top.RPAccel` top level (and of its
    programs, load beats and stage controllers): one partition, ``array_cols / partitions``.
    The top level runs the array split into ``partitions`` partitions at all times, so an
    engine built for a wider slot (`slot_width`, a merged mode) would carry columns,
    parameter lanes and requantizer lanes that never see data."""
    if not 0 <= engine < config.engine_count:
        raise ValueError(f"engine must be from 0 to {config.engine_count - 1}, not {engine!r}")
    return config.array_cols // config.partitions


def engine_widths(config: RPAccelConfig, engine_cols: str = "top") -> list[int]:
    """Columns of every engine: ``"top"``, as the top level builds them (`engine_width`);
    ``"slot"``, each its slot's widest partition (`slot_width`), as
    `rpaccel.hw.mlp_engine.ComputeEngine` alone builds them."""
    if engine_cols not in ("top", "slot"):
        raise ValueError(f"engine_cols must be 'top' or 'slot', not {engine_cols!r}")
    width = engine_width if engine_cols == "top" else slot_width
    return [width(config, e) for e in range(config.engine_count)]


def cache_state_bits(config: RPAccelConfig) -> tuple[int, int]:
    """Bits of a dynamic-cache way's tag (the line address above the set index) and of its
    LRU age, as the embedding unit keeps them (a memory of ``cache_sets`` entries each)."""
    tag = (config.axi_addr_bits - int(math.log2(config.line_bytes))
           - int(math.log2(config.cache_sets)))
    return tag, max(1, ceil_log2(config.cache_ways))


class EngineGeometry:
    """Sizes of an engine's buffers derived from ``config`` (hardware and host compiler).

    Attributes
    ----------
    lanes : int
        int8 values per activation-buffer word: ``lcm(array_rows, array_cols)``, so that a
        k-tile (R values) and an output tile (P values, any mode) never straddle words.
    words : int
        Words per item and region.
    bank_words : int
        Words of one bank (regions A, B, FEAT); there are two banks, one for the running
        sub-batch and one being loaded with the next.
    act_depth : int
        Words of the activation buffer.
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.rows = config.array_rows
        self.lanes = lanes(config)
        self.words = -(-config.max_width // self.lanes)
        self.bank_words = 3 * config.sub_batch * self.words
        self.act_depth = 2 * self.bank_words

    def act_addr(self, region: int, item: int, word: int) -> int:
        """Address of a load beat within a bank (the engine adds the bank)."""
        return (region * self.config.sub_batch + item) * self.words + word


def pair_layout(config: RPAccelConfig):
    """One row of an engine's pair-parameter memory: ``inter_pairs * inter_slots``
    ``{mult, shift}`` (pair ``p`` in row ``p // len``, entry ``p % len``)."""
    pair = data.StructLayout({"mult": unsigned(config.mult_bits),
                              "shift": unsigned(config.shift_bits)})
    return data.ArrayLayout(pair, pair_row_len(config))


def pair_row_len(config: RPAccelConfig) -> int:
    """Pair parameters per row of an engine's pair memory: the most ``dot`` pairs the
    interaction unit computes per cycle."""
    return config.inter_pairs * config.inter_slots


class EngineLayouts(NamedTuple):
    """The layouts of an engine of one width (`engine_layouts`)."""

    desc: data.StructLayout   #: one program step
    lane: data.StructLayout   #: one column's requantization parameters
    pair: data.ArrayLayout    #: one row of pair parameters (`pair_layout`)
    load: data.StructLayout   #: one beat of the engine's load stream (`EngineTarget`)
    out: data.StructLayout    #: one final-layer result beat


def engine_layouts(config: RPAccelConfig, width: int) -> EngineLayouts:
    """Layouts of an engine of ``width`` columns (`slot_width`)."""
    cfg = config
    desc = data.StructLayout({
        "kind": 2, "relu": 1, "final": 1, "src": 2, "dst": 2,
        "k": range(cfg.max_width + 1), "n": range(cfg.max_width + 1),
        "ktiles": range(cfg.max_width + 1), "ntiles": range(cfg.max_width + 1),
        "wbase": range(cfg.weight_rows), "pbase": range(cfg.param_rows),
        # interaction: features, elements per feature, words per feature, feature_pack
        "feats": range(65), "d": range(cfg.max_width + 1), "dw": range(cfg.max_width + 1),
        "pack": range(max_feature_pack(lanes(cfg)) + 1),
    })
    lane = data.StructLayout({"bias": signed(cfg.acc_bits), "mult": unsigned(cfg.mult_bits),
                              "shift": unsigned(cfg.shift_bits)})
    pair = pair_layout(cfg)
    geo = EngineGeometry(cfg)
    data_bits = max(geo.lanes * 8, width * 8, width * lane.size, desc.size, pair.size)
    depth = max(cfg.weight_rows, cfg.param_rows, cfg.max_steps, cfg.max_pairs, geo.act_depth)
    load = data.StructLayout({"target": 3, "addr": range(depth), "data": unsigned(data_bits)})
    out = data.StructLayout({"acc": data.ArrayLayout(signed(cfg.acc_bits), width), "last": 1})
    return EngineLayouts(desc, lane, pair, load, out)


def load_ctrl(index: int, unit: int) -> int:
    """The ``LOAD_CTRL`` word that loads ``unit`` (`LoadUnit`): engine ``index`` or the
    embedding unit of stage ``index``."""
    return LOAD_CTRL.const({"stage": index, "unit": unit}).as_value().value


def default_engine_map(config: RPAccelConfig) -> tuple:
    """The ``ENGINE_MAP`` after reset: engine e serves stage e, the engines beyond the
    stages serve the last stage."""
    return tuple(min(e, config.stages - 1) for e in range(config.engine_count))


def check_engine_map(config: RPAccelConfig, engine_map) -> tuple:
    """``engine_map`` (the stage of each engine, ``None`` for none) as a tuple, or a
    `ValueError` naming the rule it breaks."""
    from .config import require

    em = tuple(engine_map)
    require(len(em) == config.engine_count, "engine_map",
            f"one stage (or None) per engine ({config.engine_count} engines)", engine_map,
            ValueError)
    require(all(s is None or (isinstance(s, int) and 0 <= s < config.stages) for s in em),
            "engine_map", f"stages from 0 to {config.stages - 1} or None", engine_map,
            ValueError)
    require(all(s in em for s in range(config.stages)), "engine_map",
            "a map giving every stage at least one engine", engine_map, ValueError)
    return em


def engine_map_word(engine_map) -> int:
    """The ``ENGINE_MAP`` word of ``engine_map`` (a stage or ``None`` per engine)."""
    em = list(engine_map) + [None] * (4 - len(engine_map))
    return ENGINE_MAP.const({f"e{e}": ENGINE_NONE if s is None else s
                             for e, s in enumerate(em)}).as_value().value


def err_where(stage: int, table: int) -> int:
    """The ``ERR_WHERE`` word naming ``table`` of ``stage``."""
    return ERR_WHERE.const({"stage": stage, "table": table}).as_value().value


def query_slots(config: RPAccelConfig) -> int:
    """Queries in flight at once (candidate-buffer slots): one per stage, a power of two,
    at least two so that stage 0 takes query q + 1 while a later stage runs query q."""
    return 1 if config.stages == 1 else 1 << ceil_log2(config.stages)


def lanes(config: RPAccelConfig) -> int:
    """int8 values per activation word and per dense query beat: ``lcm(rows, cols)``."""
    return math.lcm(config.array_rows, config.array_cols)


def max_feature_pack(lanes: int) -> int:
    """The largest `feature_pack` of words of ``lanes`` values: ``log2(lanes)`` when that
    is a power of two, else 0 (no packing)."""
    return lanes.bit_length() - 1 if lanes & (lanes - 1) == 0 else 0


def clamp_pack(value, lanes: int):
    """A `feature_pack` input of the hardware (a CSR or a program field) clamped to
    `max_feature_pack`: a value it cannot hold reads as the largest (a wrong model
    constant gives wrong answers, never a hung gather)."""
    from amaranth import Mux, Value

    mp = max_feature_pack(lanes)
    if (1 << len(Value.cast(value))) - 1 <= mp:
        return value    # a value that cannot exceed mp
    return Mux(value > mp, mp, value)


def feature_pack(emb_dim: int, lanes: int) -> int:
    """How the pooled vectors of a model with ``emb_dim``-value rows lie in the engine's
    feature region: ``p`` > 0 packs ``2**p`` of them into one activation word of ``lanes``
    values, each in a slot of ``lanes >> p`` lanes (the next power of two at or above
    ``emb_dim``; when two such slots fit a word and ``lanes`` is a power of two); 0 gives
    each vector ``ceil(emb_dim / lanes)`` words of its own."""
    if max_feature_pack(lanes) == 0:
        return 0
    slot = 1 << max(0, ceil_log2(max(1, emb_dim)))
    return 0 if 2 * slot > lanes else (lanes // slot).bit_length() - 1


def feature_place(emb_dim: int, lanes: int, table: int) -> tuple[int, int]:
    """``(word, lane)`` of table ``table``'s pooled vector in an item's feature region:
    after the bottom MLP's output (feature 0, ``ceil(emb_dim / lanes)`` words), packed
    as `feature_pack` says."""
    dw = -(-emb_dim // lanes)
    p = feature_pack(emb_dim, lanes)
    if p == 0:
        return dw + table * dw, 0
    return dw + (table >> p), (table & ((1 << p) - 1)) * (lanes >> p)


def feature_words(emb_dim: int, lanes: int, tables: int) -> int:
    """Words of an item's feature region: the bottom MLP's output and ``tables`` pooled
    vectors (`feature_place`)."""
    dw = -(-emb_dim // lanes)
    p = feature_pack(emb_dim, lanes)
    return dw + (tables * dw if p == 0 else -(-tables // (1 << p)))


def id_lane_fields(config: RPAccelConfig) -> dict:
    """The query beat's fields of id lanes 1 .. ``emb_units - 1`` and the lanes' ``keep``
    mask (none with one embedding unit: lane 0 is ``table``, ``id``, ``last``)."""
    G = config.emb_units
    if G == 1:
        return {}
    return {"keep": unsigned(G), "xtable": data.ArrayLayout(range(config.emb_tables), G - 1),
            "xid": data.ArrayLayout(unsigned(32), G - 1), "xlast": data.ArrayLayout(1, G - 1)}


def id_lanes(config: RPAccelConfig, q) -> list:
    """``(keep, table, id, last)`` of every id lane of a query beat (a view of a
    `top_layouts` or `rpaccel.hw.stage.stage_layouts` query beat): lane g goes to
    embedding unit g. With one unit the lane is kept on every sparse beat."""
    if config.emb_units == 1:
        return [(~q.dense, q.table, q.id, q.last)]
    return [(q.keep[0], q.table, q.id, q.last)] + [
        (q.keep[g], q.xtable[g - 1], q.xid[g - 1], q.xlast[g - 1])
        for g in range(1, config.emb_units)]


def copy_ids(config: RPAccelConfig, dst, src) -> list:
    """Assignments copying the id lanes of query beat ``src`` into ``dst``."""
    out = [dst.table.eq(src.table), dst.id.eq(src.id), dst.last.eq(src.last)]
    if config.emb_units > 1:
        out += [dst.keep.eq(src.keep), dst.xtable.eq(src.xtable), dst.xid.eq(src.xid),
                dst.xlast.eq(src.xlast)]
    return out


def top_layouts(config: RPAccelConfig):
    """``(query, result)`` payload layouts of the top level's streams."""
    cfg = config
    query = data.StructLayout({
        "head": 1, "dense": 1, "stage": range(3),
        "word": data.ArrayLayout(signed(8), lanes(cfg)),
        "table": range(cfg.emb_tables), "id": unsigned(32), "last": 1,
        **id_lane_fields(cfg), "end": 1,
    })
    result = data.StructLayout({"id": unsigned(cfg.topk_id_bits),
                                "score": signed(cfg.score_bits), "last": 1, "error": 1})
    return query, result


def query_beats(config: RPAccelConfig, dense: list, bags: list) -> list:
    """The query stream of one query, as dicts of ``top_layouts(config)[0]``: the header,
    then per candidate the dense words of every stage (``stage`` = s) and its bags.

    With one embedding unit a sparse beat is one id (``last`` on a bag's last id), tables
    in order. With ``emb_units`` G > 1 a sparse beat has G id lanes: lane g carries, in
    order, the ids of the candidate's tables g, g + G, ... (embedding unit g's bags),
    ``keep`` bit g marks it in use; a candidate has as many sparse beats as its longest
    lane, and no beat carries ids of two candidates. ``end`` (the AXI4-Stream port's
    ``tlast``) is set on the query's last beat.

    Parameters
    ----------
    dense : list of int array [items, features]
        Per stage, the candidates' dense features quantized with that stage's scale.
    bags : list of (table, ids)
        Every table's bag of every candidate, in item order (`rpaccel.emb_program.batch_bags`).
    """
    A, G = lanes(config), config.emb_units
    n = len(dense[0])
    zero = [0] * A
    per_item = len(bags) // n
    extra = ({"keep": 0, "xtable": [0] * (G - 1), "xid": [0] * (G - 1),
              "xlast": [0] * (G - 1)} if G > 1 else {})
    beats = [{"head": 1, "dense": 0, "stage": 0, "word": zero, "table": 0, "id": n,
              "last": 0, **extra, "end": 0}]
    for i in range(n):
        for s, d in enumerate(dense):
            for w in range(-(-d.shape[1] // A)):
                word = [int(v) for v in d[i, w * A:(w + 1) * A]]
                beats.append({"head": 0, "dense": 1, "stage": s,
                              "word": word + [0] * (A - len(word)), "table": 0, "id": 0,
                              "last": 0, **extra, "end": 0})
        item = bags[i * per_item:(i + 1) * per_item]
        if G == 1:
            for t, ids in item:
                for j, v in enumerate(ids):
                    beats.append({"head": 0, "dense": 0, "stage": 0, "word": zero, "table": t,
                                  "id": int(v) & 0xFFFFFFFF, "last": int(j == len(ids) - 1),
                                  "end": 0})
            continue
        seqs = [[(t, int(v) & 0xFFFFFFFF, int(j == len(ids) - 1))
                 for t, ids in item if t % G == g for j, v in enumerate(ids)]
                for g in range(G)]
        for k in range(max(len(q) for q in seqs)):
            lane = [q[k] if k < len(q) else (0, 0, 0) for q in seqs]
            beats.append({"head": 0, "dense": 0, "stage": 0, "word": zero,
                          "table": lane[0][0], "id": lane[0][1], "last": lane[0][2],
                          "keep": sum(1 << g for g, q in enumerate(seqs) if k < len(q)),
                          "xtable": [x[0] for x in lane[1:]], "xid": [x[1] for x in lane[1:]],
                          "xlast": [x[2] for x in lane[1:]], "end": 0})
    beats[-1]["end"] = 1
    return beats


class QueryRecord(NamedTuple):
    """Byte offsets of a query beat as a record on the AXI4-Stream query port
    (`query_record`); multi-byte fields little-endian."""

    flags: int      # bit 0 head, bit 1 dense, bits 3:2 stage
    keep: int       # bit g: id lane g in use (more than one embedding unit)
    last: int       # bit g: lane g's id ends its bag
    id: int         # u32 per lane, lane g at id + 4 g; a header's lane 0: candidate count
    table: int      # u8 per lane
    word: int       # the dense word: lanes() int8 values
    size: int       # bytes the record uses
    tdata_bytes: int  # the port's width: size rounded up to a power of two


def query_record(config: RPAccelConfig) -> QueryRecord:
    """The AXI4-Stream query port's record: one transfer per query beat (`query_beats`),
    ``tlast`` on the query's last one (its ``end``), every ``tkeep`` bit set. Fields are
    byte-aligned so a host writes them as a C struct and a DMA engine of ``tdata_bytes``
    streams a query buffer as it is; the bytes past ``size`` are reserved (0)."""
    G = config.emb_units
    table = 4 + 4 * G
    word = table + -(-G // 4) * 4
    size = word + lanes(config)
    return QueryRecord(0, 1, 2, 4, table, word, size, 1 << (size - 1).bit_length())


def pack_query_records(config: RPAccelConfig, beats: list) -> list:
    """``(tdata bytes, tlast)`` per query beat (dicts of ``top_layouts(config)[0]``)."""
    r = query_record(config)
    out = []
    for b in beats:
        rec = bytearray(r.tdata_bytes)
        lanes_ = [(b["table"], b["id"], b["last"])]
        keep = 1
        if config.emb_units > 1:
            lanes_ += list(zip(b["xtable"], b["xid"], b["xlast"], strict=True))
            keep = b["keep"]
        rec[r.flags] = b["head"] | b["dense"] << 1 | b["stage"] << 2
        rec[r.keep] = keep
        rec[r.last] = sum(la << g for g, (_, _, la) in enumerate(lanes_))
        for g, (t, i, _) in enumerate(lanes_):
            rec[r.id + 4 * g:r.id + 4 * g + 4] = (int(i) & 0xFFFFFFFF).to_bytes(4, "little")
            rec[r.table + g] = t
        rec[r.word:r.word + lanes(config)] = bytes(int(v) & 0xFF for v in b["word"])
        out.append((bytes(rec), int(b["end"])))
    return out


#: Bytes of a result record on the AXI4-Stream result port: ``id`` u16, ``flags`` u16
#: (bit 0: the query's error flag), ``score`` s32, little-endian; ``tlast`` on a query's
#: last survivor.
RESULT_RECORD_BYTES = 8


def unpack_result_record(data: bytes) -> dict:
    """``{"id", "score", "error"}`` of a result record's bytes."""
    return {"id": int.from_bytes(data[0:2], "little"),
            "error": data[2] & 1,
            "score": int.from_bytes(data[4:8], "little", signed=True)}


def beat_lookups(config: RPAccelConfig, beat: dict) -> list:
    """``(unit, table, id, last)`` of every id a sparse query beat (dict) carries."""
    if config.emb_units == 1:
        return [(0, beat["table"], beat["id"], beat["last"])]
    lanes_ = [(beat["table"], beat["id"], beat["last"])] + list(
        zip(beat["xtable"], beat["xid"], beat["xlast"], strict=True))
    return [(g, *x) for g, x in enumerate(lanes_) if beat["keep"] >> g & 1]


def beat_packer(layout):
    """A fast ``dict -> int`` packer of a `top_layouts` beat (bit-identical to
    ``layout.const(beat).as_value().value``; a regression packs millions of beats)."""
    fields = []
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            fields.append((name, field.offset, Shape.cast(shape.elem_shape).width,
                           shape.length))
        else:
            fields.append((name, field.offset, Shape.cast(shape).width, 0))

    def pack(beat: dict) -> int:
        bits = 0
        for name, off, w, n in fields:
            mask = (1 << w) - 1
            v = beat[name]
            if n:
                for i, e in enumerate(v):
                    bits |= (int(e) & mask) << (off + i * w)
            else:
                bits |= (int(v) & mask) << off
        return bits

    return pack


def _fields(prefix: str, layout) -> list:
    out = []
    for name, field in layout:
        if name.startswith("_"):
            continue
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            ew = Shape.cast(shape.elem_shape).width
            out += [f"#define {prefix}_{name.upper()}_LSB {field.offset}u",
                    f"#define {prefix}_{name.upper()}_ELEM_WIDTH {ew}u",
                    f"#define {prefix}_{name.upper()}_COUNT {shape.length}u"]
        else:
            out += [f"#define {prefix}_{name.upper()}_LSB {field.offset}u",
                    f"#define {prefix}_{name.upper()}_WIDTH {Shape.cast(shape).width}u"]
    return out


def c_header(config: RPAccelConfig, load_beat_bits: dict | None = None) -> str:
    """A C header of the accelerator generated from ``config``: the CSR map, register
    fields, codes, the query and result beat layouts (bit offsets, LSB first) and, given
    ``load_beat_bits`` (``{"engine": [bits per engine], "embedding": bits}``), the sizes of
    the load images' beats. With it a C driver needs nothing else: it copies the load
    images and tables (``Accelerator.dram``) into DRAM, writes the CSRs, streams query
    beats and reads result beats."""
    cfg = config
    guard = "RPACCEL_H"
    q, r = top_layouts(cfg)
    lines = [
        f"/* Generated by rpaccel (rpaccel.interface.c_header) for config {cfg.name!r},",
        f" * digest {cfg.digest()}. Do not edit: regenerate with rpaccel generate. */",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
        "/* ---- configuration */",
        f"#define RPACCEL_STAGES {cfg.stages}u",
        f"#define RPACCEL_PARTITIONS {cfg.partitions}u",
        f"#define RPACCEL_ENGINES {cfg.engine_count}u",
        f"#define RPACCEL_ARRAY_ROWS {cfg.array_rows}u",
        f"#define RPACCEL_ARRAY_COLS {cfg.array_cols}u",
        f"#define RPACCEL_LANES {lanes(cfg)}u",
        f"#define RPACCEL_MAX_ITEMS {cfg.max_items}u",
        f"#define RPACCEL_EMB_TABLES {cfg.emb_tables}u",
        f"#define RPACCEL_EMB_UNITS {cfg.emb_units}u",
        f"#define RPACCEL_TOPK_K {cfg.topk_k}u",
        f"#define RPACCEL_CAND_BEATS {cfg.cand_beats}u",
        f"#define RPACCEL_AXI_DATA_BITS {cfg.axi_data_bits}u",
        f"#define RPACCEL_ID_VALUE 0x{ID_VALUE:08x}u", "",
        "/* ---- CSRs (AXI4-Lite, byte addresses; ro / rw / wo as commented) */",
    ]
    for name, (addr, acc) in CSR.items():
        lines.append(f"#define RPACCEL_CSR_{name} 0x{addr:03x}u /* {acc} */")
    lines += [f"#define RPACCEL_CSR_STAGE_BASE 0x{STAGE_BASE:03x}u",
              f"#define RPACCEL_CSR_STAGE_STRIDE 0x{STAGE_STRIDE:03x}u",
              "#define RPACCEL_CSR_STAGE(s, off) "
              "(RPACCEL_CSR_STAGE_BASE + RPACCEL_CSR_STAGE_STRIDE * (s) + (off))"]
    for name, (off, acc) in STAGE_CSR.items():
        lines.append(f"#define RPACCEL_CSR_S_{name} 0x{off:02x}u /* {acc} */")
    lines += ["", "/* ---- packed registers (bit offsets) */"]
    for reg, layout in (("SHAPE", SHAPE), ("STATUS", STATUS), ("ERR_WHERE", ERR_WHERE),
                        ("LOAD_CTRL", LOAD_CTRL), ("ENGINE_MAP", ENGINE_MAP)):
        lines += _fields(f"RPACCEL_{reg}", layout)
    lines += ["#define RPACCEL_LOAD_CTRL_WORD(stage, unit) "
              "(((uint32_t)(stage) << RPACCEL_LOAD_CTRL_STAGE_LSB) | "
              "((uint32_t)(unit) << RPACCEL_LOAD_CTRL_UNIT_LSB))", ""]
    for enum_cls, prefix in ((ErrCause, "RPACCEL_ERR"), (LoadUnit, "RPACCEL_UNIT")):
        lines.append(f"/* {enum_cls.__doc__.splitlines()[0]} */")
        lines += [f"#define {prefix}_{m.name} {m.value}u" for m in enum_cls]
        lines.append("")
    lines += ["/* ---- query stream: one beat per word, LSB first (head, dense, ids) */",
              f"#define RPACCEL_QUERY_BITS {q.size}u",
              f"#define RPACCEL_QUERY_WORDS32 {-(-q.size // 32)}u"]
    lines += _fields("RPACCEL_QUERY", q)
    lines += ["", "/* ---- result stream: the survivors of the last stage, best first */",
              f"#define RPACCEL_RESULT_BITS {r.size}u",
              f"#define RPACCEL_RESULT_WORDS32 {-(-r.size // 32)}u"]
    lines += _fields("RPACCEL_RESULT", r)
    rec = query_record(cfg)
    lines += ["", "/* ---- AXI4-Stream ports (rpaccel_axis): byte records, little-endian; a query",
              " * is one packet (tlast on its last record), every tkeep bit set */"]
    lines += [f"#define RPACCEL_AXIS_QUERY_{name.upper()}_OFFSET {v}u"
              for name, v in rec._asdict().items() if name not in ("size", "tdata_bytes")]
    lines += [f"#define RPACCEL_AXIS_QUERY_RECORD_BYTES {rec.size}u",
              f"#define RPACCEL_AXIS_QUERY_TDATA_BYTES {rec.tdata_bytes}u",
              "#define RPACCEL_AXIS_QUERY_HEAD 0x01u",
              "#define RPACCEL_AXIS_QUERY_DENSE 0x02u",
              "#define RPACCEL_AXIS_QUERY_STAGE_LSB 2u",
              "/* result record: uint16_t id; uint16_t flags (bit 0: error); int32_t score */",
              f"#define RPACCEL_AXIS_RESULT_TDATA_BYTES {RESULT_RECORD_BYTES}u"]
    if load_beat_bits:
        lines += ["", "/* ---- load images: beats padded to whole AXI data words */"]
        for s, bits in enumerate(load_beat_bits["engine"]):
            lines.append(f"#define RPACCEL_LOAD_ENGINE{s}_BEAT_BITS {bits}u")
        lines.append(f"#define RPACCEL_LOAD_EMBEDDING_BEAT_BITS {load_beat_bits['embedding']}u")
        lines.append("#define RPACCEL_LOAD_BEAT_BYTES(bits) "
                     "((((bits) + RPACCEL_AXI_DATA_BITS - 1) / RPACCEL_AXI_DATA_BITS) * "
                     "(RPACCEL_AXI_DATA_BITS / 8))")
    lines += ["", "/* Set / get a field of a beat held as little-endian 32-bit words. */",
              "static inline void rpaccel_set_bits(uint32_t *w, unsigned lsb, unsigned width,",
              "                                    uint64_t v) {",
              "    for (unsigned i = 0; i < width; i++) {",
              "        unsigned b = lsb + i;",
              "        uint32_t bit = (uint32_t)((v >> i) & 1u) << (b % 32);",
              "        w[b / 32] = (w[b / 32] & ~(1u << (b % 32))) | bit;",
              "    }",
              "}",
              "static inline uint64_t rpaccel_get_bits(const uint32_t *w, unsigned lsb,",
              "                                        unsigned width) {",
              "    uint64_t v = 0;",
              "    for (unsigned i = 0; i < width; i++) {",
              "        unsigned b = lsb + i;",
              "        v |= (uint64_t)((w[b / 32] >> (b % 32)) & 1u) << i;",
              "    }",
              "    return v;",
              "}", "", f"#endif /* {guard} */", ""]
    return "\n".join(lines)
