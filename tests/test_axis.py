"""The AXI4-Stream query and result ports (`rpaccel.hw.axis`): the record adapters alone in
the Amaranth simulator, and the whole accelerator behind them on Verilator driven by
cocotbext-axi's AXI4-Stream source and sink."""

import random

import pytest

from rpaccel.config import get_config
from rpaccel.hw.axis import AxisQueryIn, AxisResultOut
from rpaccel.interface import (
    RESULT_RECORD_BYTES,
    ErrCause,
    pack_query_records,
    query_beats,
    query_record,
    unpack_result_record,
)
from rpaccel.scripts.perf_report import criteo_accelerator

from .amaranth_bench import run_bench, value_of


def _random_query(cfg, rng, n=3):
    """A query's beats (`query_beats`) of random dense words and bags."""
    import numpy as np

    tables = cfg.emb_tables
    dense = [np.array([[rng.randint(-128, 127) for _ in range(5)] for _ in range(n)])
             for _ in range(min(cfg.stages, 2))]
    bags = [(t, [rng.randrange(1 << 32) for _ in range(rng.randint(1, 3))])
            for _ in range(n) for t in range(tables)]
    return query_beats(cfg, dense, bags)


@pytest.mark.parametrize("name", ["default", "wide-lookup"])
def test_axis_query_records_unpack_to_beats(name):
    """Records packed by the host (`pack_query_records`) come out of `AxisQueryIn` as the
    beats they were made from, ``end`` from ``tlast``; a transfer with a null byte
    (``tkeep`` bit low) has it read as 0 and ends the packet (``end``); the source pauses
    and the sink stalls at random (the register slice holds every beat)."""
    cfg = get_config(name)
    rng = random.Random(3)
    beats = _random_query(cfg, rng) + _random_query(cfg, rng, 2)
    records = pack_query_records(cfg, beats)
    rec = query_record(cfg)
    assert all(len(d) == rec.tdata_bytes for d, _ in records)
    assert [e for _, e in records] == [b["end"] for b in beats]
    # one transfer of a dense beat loses a word byte to tkeep
    hole = next(i for i, b in enumerate(beats) if b["dense"] and b["word"][1])
    B = rec.tdata_bytes
    sent = [(int.from_bytes(d, "little"), (1 << B) - 1, e) for d, e in records]
    d, _, e = sent[hole]
    sent[hole] = (d, ((1 << B) - 1) & ~(1 << (rec.word + 1)), e)
    want = [dict(b) for b in beats]
    want[hole] = dict(want[hole], end=1, word=[v if j != 1 else 0
                                              for j, v in enumerate(want[hole]["word"])])
    for b in want:
        b["table"] %= cfg.emb_tables
    dut = AxisQueryIn(cfg)
    got = []

    async def bench(ctx):
        i = 0
        for _ in range(20 * len(sent)):
            valid = i < len(sent) and rng.random() < 0.7
            ctx.set(dut.s_axis.tvalid, valid)
            if i < len(sent):
                ctx.set(dut.s_axis.tdata, sent[i][0])
                ctx.set(dut.s_axis.tkeep, sent[i][1])
                ctx.set(dut.s_axis.tlast, sent[i][2])
            ready = rng.random() < 0.6
            ctx.set(dut.query.ready, ready)
            if valid and ctx.get(dut.s_axis.tready):
                i += 1
            if ready and ctx.get(dut.query.valid):
                got.append(value_of(ctx, dut.query.payload))
            await ctx.tick()

    run_bench(dut, bench)
    assert len(got) == len(want), (len(got), len(want))
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {n}: expected {w}\n actual {g}"


def test_axis_result_records():
    """`AxisResultOut`: every result beat is one 8-byte record (`unpack_result_record`
    reads back its id, score and error flag), ``tlast`` = ``last``, all bytes kept."""
    cfg = get_config("default")
    rng = random.Random(5)
    beats = [{"id": rng.randrange(cfg.max_items), "score": rng.randint(-2**31, 2**31 - 1),
              "last": int(rng.random() < 0.3), "error": int(rng.random() < 0.5)}
             for _ in range(40)]
    dut = AxisResultOut(cfg)
    got = []

    async def bench(ctx):
        for b in beats:
            ctx.set(dut.result.payload, b)
            ctx.set(dut.result.valid, 1)
            ctx.set(dut.m_axis.tready, 1)
            t = dut.m_axis
            data = ctx.get(t.tdata).to_bytes(RESULT_RECORD_BYTES, "little")
            got.append(dict(unpack_result_record(data), last=ctx.get(t.tlast),
                            keep=ctx.get(t.tkeep), valid=ctx.get(t.tvalid),
                            ready=ctx.get(dut.result.ready)))
            await ctx.tick()

    run_bench(dut, bench)
    want = [dict(b, keep=0xFF, valid=1, ready=1) for b in beats]
    assert got == want, [(g, w) for g, w in zip(got, want, strict=True) if g != w][:3]


def test_verilator_axis_ports_criteo_shaped(tmp_path):
    """The whole accelerator (`baseline`: one stage) behind its AXI4-Stream ports on
    Verilator, driven by cocotbext-axi: one packet per query, idle gaps on the query port,
    backpressure on the result port, a stalling DRAM. A packet cut short in the middle of
    its ids (answered, flagged, ERR_CAUSE FRAMING), one whose query ends before its
    ``tlast`` (the surplus is dropped, the answer exact), a too-large header (dropped), and
    the queries around them bit-exact."""
    acc, queries = criteo_accelerator(get_config("baseline"), tables=4, seed=2)
    qs = queries((30, 24, 20, 9, 26, 17))
    run, (tests, failed) = acc.simulate(qs, workdir=tmp_path, idle=0.3, backpressure=0.3,
                                        dram_stall=0.2, seed=3, check=True, load="stream",
                                        port="axis", bad={1: "short", 3: "unended",
                                                          4: "count"})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert run.errors == [False, True, False, False, False]
    assert [a == e for i, (a, e) in enumerate(zip(run.answers, run.expected, strict=True))
            if i != 1] == [True] * 4
    assert run.counters["err_cause"] == ErrCause.FRAMING and run.status_ok
    assert run.counters["queries"] == 5 and len(run.latency) == 5
