"""Formal proofs (`rpaccel.sim.formal`): the quick ones run here, every proof in
``make formal``; a planted fault must give a counterexample."""

import dataclasses
import inspect
import textwrap

import pytest

from rpaccel.sim.formal import Proof, prove
from rpaccel.sim.formal_specs import PROOFS, Spec, _arbiter

QUICK = ["csr.axi_lite", "arbiter.axi", "loader.ar", "embedding.ar", "embedding.streams",
         "front_end.streams", "controller.streams", "replay.streams", "crossbar.streams"]


@pytest.mark.parametrize("name", QUICK)
def test_proof_passes(name, tmp_path):
    r = prove(PROOFS[name], tmp_path)
    assert r.passed, r.report()


@pytest.mark.parametrize("name,depth", [("topk.exact", 8), ("topk_heap.exact", 22)],
                         ids=["queue", "heap"])
def test_topk_answer_bounded(name, depth, tmp_path):
    """The top-k units' answer, bounded shorter than in ``make formal`` (the queue's
    shortest whole query is 6 cycles, the heap's 21 with its clearing after reset)."""
    r = prove(dataclasses.replace(PROOFS[name], depth=depth), tmp_path)
    assert r.passed, r.report()


def test_a_planted_fault_gives_a_counterexample(tmp_path, monkeypatch):
    """An arbiter whose grant may move while a request waits breaks AXI: the proof fails,
    names the assertion and leaves the counterexample trace."""
    from rpaccel.hw import bus

    src = textwrap.dedent(inspect.getsource(bus.AxiReadArbiter.elaborate))
    assert "with m.If(~o.arvalid | o.arready):" in src
    ns = dict(vars(bus))
    exec(compile(src.replace("with m.If(~o.arvalid | o.arready):", "with m.If(1):"),
                 bus.__file__, "exec"), ns)
    monkeypatch.setattr(bus.AxiReadArbiter, "elaborate", ns["elaborate"])
    r = prove(Proof("arbiter.fault", "bus", "", lambda: Spec(_arbiter)), tmp_path)
    assert r.status == "FAIL", r.report()
    assert r.failed and r.trace and r.trace.endswith(".vcd")
