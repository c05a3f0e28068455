"""The Verilator lint gate (`rpaccel lint`, sim/lint.vlt)."""

import json

import pytest

from rpaccel.config import get_config
from rpaccel.sim.lint import lint_block, lint_verilog

BAD = """module bad(input clk, input [1:0] sel, input a, input b, output reg y, output z,
           output reg q, output w);
  wire undriven_w;
  assign z = undriven_w;
  always @* begin
    casez (sel)
      2'b?1: y = a;
      2'b1?: y = b;
      default: y = 1'b0;
    endcase
  end
  always @* if (a) q = b;
  assign w = a;
  assign w = b;
endmodule
"""


def test_the_gate_reports_the_faults_it_forbids(tmp_path):
    """Undriven, multiply driven, latch, overlapping case arms: each reported (the waivers
    cover only style warnings: the unused clk input here is waived)."""
    f = tmp_path / "bad.v"
    f.write_text(BAD)
    rules = sorted(w.rule for w in lint_verilog(f, "bad"))
    assert rules == ["CASEOVERLAP", "LATCH", "MULTIDRIVEN", "UNDRIVEN"]
    unwaived = {w.rule for w in lint_verilog(f, "bad", waivers=None)}
    assert "UNUSEDSIGNAL" in unwaived


def test_verilog_errors_raise(tmp_path):
    f = tmp_path / "broken.v"
    f.write_text("module broken(input a); assign b = ; endmodule\n")
    with pytest.raises(RuntimeError, match="verilator lint of .*broken.v failed"):
        lint_verilog(f, "broken")


@pytest.mark.parametrize("block,config", [
    ("rpaccel", get_config("three-stage")),  # every block of the top level, 3 stages
    ("rpaccel_axis", get_config("wide-lookup")),  # AXI4-Stream ports, two id lanes
    ("topk", get_config("default").replace(topk_impl="heap", topk_lanes=4, topk_k=64)),
    ("approx_filter", get_config("default")),
])
def test_generated_designs_lint_clean(block, config):
    r = lint_block(block, config)
    assert r["warnings"] == [], "\n".join(
        f"{w['rule']}: {w['file']}:{w['line']}: {w['message']}" for w in r["warnings"])


def test_lint_cli(capsys):
    from rpaccel.scripts.cli import main

    assert main(["lint", "--block", "requant", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["warnings"] == 0 and [r["block"] for r in rep["reports"]] == ["requant"]
    assert main(["lint", "--block", "nope"]) == 2
    assert "--block must be one of" in capsys.readouterr().err
