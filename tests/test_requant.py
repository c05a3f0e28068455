"""Requantize unit: Amaranth-simulator unit tests, then its Verilog on Verilator (and
Icarus) against the golden spec under idle gaps and backpressure."""

import gc
import re
import warnings

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from rpaccel.config import get_config
from rpaccel.golden.numerics import requantize
from rpaccel.hw.requant import RequantUnit
from rpaccel.sim.amaranth_tb import stream_get, stream_put
from rpaccel.sim.runner import build, run, simulator_available
from rpaccel.sim.tb_requant import stimulus

CFG = get_config("default")


def beats(lanes, n, seed):
    acc, bias, mult, shift, relu = stimulus(CFG, lanes, n, np.random.default_rng(seed))
    golden = requantize(acc, bias, mult, shift, relu[:, None])
    payloads = [{"lanes": [{"acc": int(acc[b, j]), "bias": int(bias[b, j]),
                            "mult": int(mult[b, j]), "shift": int(shift[b, j])}
                           for j in range(lanes)], "relu": int(relu[b])} for b in range(n)]
    return payloads, golden.tolist()


@pytest.mark.parametrize("lanes", [1, 3])
def test_amaranth_sim_matches_golden(lanes):
    dut = RequantUnit(CFG, lanes=lanes)
    payloads, golden = beats(lanes, 60, seed=lanes)
    got = []

    async def producer(ctx):
        for p in payloads:
            await stream_put(ctx, dut.i, p)

    async def consumer(ctx):
        for _ in payloads:
            v = await stream_get(ctx, dut.o)
            got.append([int(v[j]) for j in range(lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == golden


def test_amaranth_sim_clamp_boundaries_at_every_shift():
    """Products just inside and outside every clamp threshold (and the edge of the bits
    the unit keeps after the shift) for each shift amount, with and without ReLU."""
    rows = []
    for s in range(CFG.max_shift + 1):
        for k in (-515, -513, -512, -511, -259, -258, -257, -256, -255, -1, 0, 253, 254,
                  255, 256, 257, 510, 511, 512, 513):
            target = (k << s) >> 1
            for d in (-1, 0, 1):
                mult = 1 if abs(target) < 1 << 30 else CFG.max_mult
                acc = target // mult + d
                if abs(acc) < 1 << 31:
                    rows.append((acc, 0, mult, s))
    acc, bias, mult, shift = (np.array(c).reshape(-1, 4) for c in zip(*rows[:len(rows) // 4 * 4],
                                                                      strict=True))
    n = len(acc)
    relu = np.arange(n) % 2
    golden = requantize(acc, bias, mult, shift, relu[:, None]).tolist()
    dut = RequantUnit(CFG, lanes=4)
    got = []

    async def producer(ctx):
        for b in range(n):
            await stream_put(ctx, dut.i, {
                "lanes": [{"acc": int(acc[b, j]), "bias": 0, "mult": int(mult[b, j]),
                           "shift": int(shift[b, j])} for j in range(4)],
                "relu": int(relu[b])})

    async def consumer(ctx):
        for _ in range(n):
            v = await stream_get(ctx, dut.o)
            got.append([int(v[j]) for j in range(4)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    bad = [(b, golden[b], got[b]) for b in range(n) if got[b] != golden[b]]
    assert not bad, f"beat, expected, actual: {bad[:5]}"


def test_amaranth_sim_holds_under_backpressure():
    dut = RequantUnit(CFG, lanes=1)
    depth = RequantUnit.LATENCY
    payloads, golden = beats(1, depth + 2, seed=9)
    got = []

    async def tb(ctx):
        for p in payloads[:depth + 1]:  # output blocked: the pipeline fills, then stalls
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, p)
            await ctx.tick()
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(depth):
            got.append(int((await stream_get(ctx, dut.o))[0]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == [g[0] for g in golden[:depth]]


def test_lanes_validation():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the half-built object warns when collected
        with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
            RequantUnit(CFG, lanes=0)
        gc.collect()


class OffByOneRequant(wiring.Component):
    """A deliberately wrong unit (lane 0 reads 3 as 4) to prove the bench catches faults."""

    def __init__(self, config):
        self.inner = RequantUnit(config)
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        wiring.connect(m, wiring.flipped(self.i), self.inner.i)
        m.d.comb += [self.o.valid.eq(self.inner.o.valid), self.inner.o.ready.eq(self.o.ready),
                     self.o.payload.eq(self.inner.o.payload)]
        with m.If(self.inner.o.payload[0] == 3):
            m.d.comb += self.o.payload[0].eq(4)
        return m


@pytest.mark.parametrize("lanes, seed", [(4, 1), (4, 2), (1, 3)])
def test_verilator_matches_golden(tmp_path, lanes, seed):
    cfg = CFG.replace(requant_lanes=lanes)
    sb = build(RequantUnit, cfg, "requant")
    tests, failed = run(sb, "rpaccel.sim.tb_requant", tmp_path,
                        {"beats": 1500, "seed": seed, "idle": 0.3, "backpressure": 0.4},
                        seed=seed)
    assert (tests, failed) == (2, 0), (tmp_path / "sim.log").read_text()[-3000:]


def test_verilator_bench_catches_a_wrong_unit(tmp_path):
    sb = build(OffByOneRequant, CFG, "requant_faulty")
    tests, failed = run(sb, "rpaccel.sim.tb_requant", tmp_path,
                        {"beats": 1500, "seed": 5}, testcase="requant_matches_golden")
    assert (tests, failed) == (1, 1)
    log = (tmp_path / "sim.log").read_text()
    assert "mismatch" in log and "expected" in log and "actual" in log


def _waves_ok(path, top):
    """An FST file (its first block the header, type 0, of 329 bytes), or a VCD naming the
    top module's scope and its streams' signals."""
    data = path.read_bytes()
    if path.suffix == ".fst":
        return len(data) > 1000 and data[0] == 0 and int.from_bytes(data[1:9], "big") == 329
    text = data.decode()
    return all(s in text for s in (f"$scope module {top} $end", " i__valid ", "$enddefinitions"))


def test_waves_of_a_failing_bench(tmp_path, capsys):
    """A traced build (its own build directory) writes an FST waveform; a failing run
    prints where its log and waves are, and the first mismatch's cycle."""
    sb = build(OffByOneRequant, CFG, "requant_faulty", waves=True)
    assert sb.waves and sb.build_dir.name.endswith("-waves")
    tests, failed = run(sb, "rpaccel.sim.tb_requant", tmp_path,
                        {"beats": 300, "seed": 5}, testcase="requant_matches_golden")
    assert (tests, failed) == (1, 1)
    wave = sb.waves_file(tmp_path)
    assert wave.parent == tmp_path.resolve() and _waves_ok(wave, "requant_faulty")
    assert f"waves: {wave}" in capsys.readouterr().err
    first = re.search(r"first mismatch at cycle (\d+)", (tmp_path / "sim.log").read_text())
    assert first and int(first.group(1)) > 0


@pytest.mark.icarus
@pytest.mark.skipif(not simulator_available("icarus"), reason="iverilog not installed")
def test_icarus_waves(tmp_path):
    sb = build(RequantUnit, CFG, "requant", sim="icarus", waves=True)
    tests, failed = run(sb, "rpaccel.sim.tb_requant", tmp_path,
                        {"beats": 100, "seed": 3}, testcase="requant_matches_golden")
    assert (tests, failed) == (1, 0)
    assert _waves_ok(sb.waves_file(tmp_path), "requant")


@pytest.mark.icarus
@pytest.mark.skipif(not simulator_available("icarus"), reason="iverilog not installed")
def test_icarus_matches_golden(tmp_path):
    sb = build(RequantUnit, CFG, "requant", sim="icarus")
    tests, failed = run(sb, "rpaccel.sim.tb_requant", tmp_path,
                        {"beats": 400, "seed": 11, "idle": 0.3, "backpressure": 0.3})
    assert (tests, failed) == (2, 0), (tmp_path / "sim.log").read_text()[-3000:]
