"""The RPAccel top level end to end on Verilator: real MovieLens-100k queries through the
generated Verilog (CSRs over AXI4-Lite, query / result streams, DRAM over AXI4) against
the golden int8 pipeline, bit for bit."""

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.interface import ErrCause
from rpaccel.runtime import Accelerator, AccelError, parse_engine_map, parse_stages
from rpaccel.sim.runner import simulator_available


@pytest.fixture(scope="module")
def default_acc(models_dir, qmodels, ml):
    return Accelerator.from_models(get_config("default"), models_dir, ml=ml)


def test_runtime_refuses_bad_input(default_acc, qmodels, ml):
    cfg = get_config("default")
    with pytest.raises(AccelError, match="number of stage models must be config.stages"):
        Accelerator(cfg, [(qmodels["large"], 10)])
    with pytest.raises(AccelError, match=r"k of stage 0 must be from 1 to topk_k \(32\)"):
        Accelerator(cfg, [(qmodels["small"], 33), (qmodels["large"], 10)])
    with pytest.raises(AccelError, match="candidates of a query must be from 1 to max_items"):
        default_acc.query_beats(ml.batch(np.zeros(200, int), np.arange(200)))
    with pytest.raises(AccelError, match="a stage must be written MODEL:K"):
        parse_stages("small:16,large")
    two = [(qmodels["small"], 16), (qmodels["large"], 10)]
    with pytest.raises(AccelError, match=r"engine_map must be a map giving every stage at "
                                         r"least one engine, not \(1, 1\)"):
        Accelerator(cfg, two, engine_map=(1, 1))
    with pytest.raises(AccelError, match=r"engine_map must be one stage \(or None\) per "
                                         r"engine \(2 engines\), not \(0, 1, 1\)"):
        Accelerator(cfg, two, engine_map=(0, 1, 1))
    with pytest.raises(AccelError, match="an engine map entry must be a stage number or '-'"):
        parse_engine_map("0,x")
    assert parse_engine_map("0,-,1") == (0, None, 1)
    # the swapped map: stage 0's model is compiled for and loaded into engine 1
    swapped = Accelerator(cfg, two, engine_map=(1, 0))
    assert [ctrl >> 4 for _, _, ctrl in swapped.loads] == [0, 0, 1, 1]
    assert swapped.progs[0] is swapped.engine_progs[1]


def test_golden_answers_are_the_pipelines(default_acc, ml):
    """The runtime's expectation is the two stages computed here from the int8 models: small
    scores all candidates, keeps 16 (ties to the lower position), large scores those and the
    best 10 are the answer, with large's integer scores."""
    (batch, _), = default_acc.movielens_queries(ml, 1, seed=3)
    (small, k0), (large, k1) = default_acc.stages
    s0 = small.forward(batch)
    keep = sorted(range(batch.size), key=lambda i: (-int(s0[i]), i))[:k0]
    s1 = large.forward(batch.take(np.array(keep)))
    best = sorted(range(len(keep)), key=lambda j: (-int(s1[j]), keep[j]))[:k1]
    expect = [(keep[j], int(s1[j])) for j in best]
    assert default_acc.golden(batch) == expect


@pytest.mark.slow  # CI: the native bench runs these faults and the reset (test_native.py)
def test_verilator_default_real_queries(default_acc, ml, tmp_path):
    """Four real queries (100 candidates: small keeps 16, large keeps 10) back to back,
    the second with an out-of-range id: its answer is flagged and the status names the
    id; all others are bit-exact, with idle gaps, result backpressure and a stalling DRAM,
    after a reset in the middle of a query. The model is loaded from DRAM by the model
    loader (CSR-started; a 0-beat start is refused with ERR_CAUSE = LOAD_REFUSED)."""
    qs = default_acc.movielens_queries(ml, 4, seed=5)
    run, (tests, failed) = default_acc.simulate(
        [b for b, _ in qs], workdir=tmp_path, idle=0.2, backpressure=0.3, dram_stall=0.2,
        bad=[1], reset_mid=True, check=True)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert run.errors == [False, True, False, False]
    assert run.counters["queries"] == 4
    assert run.counters["s0_items"] == sum(b.size for b, _ in qs)
    assert run.counters["s1_items"] == 4 * 16


def criteo_accelerator(cfg, seed=0, ks=None):
    from rpaccel.workloads import criteo_shaped

    return criteo_shaped(cfg, seed, ks)


@pytest.mark.slow  # CI: test_native.py runs these faults on the same queries
def test_verilator_default_criteo_shaped(tmp_path):
    """Criteo-shaped synthetic queries on the default build: 40 and 70 candidates (not a
    multiple of the sub-batch), then a query with a candidate longer than the candidate
    buffer holds (answered, flagged, ERR_CAUSE CAND_BEATS), one whose header claims
    max_items + 1 candidates (dropped: no answer), and 9 candidates (fewer than stage 0's
    k) that must still be right; back to back with idle gaps, backpressure and a stalling
    DRAM. The model goes in through the ``eload`` / ``mload`` streams (the other tests
    load it from DRAM with the model loader). A max_items query: `test_native.py`."""
    acc, queries = criteo_accelerator(get_config("default"), seed=3)
    qs = queries((40, 70, 12, 5, 9))
    run, (tests, failed) = acc.simulate(qs, workdir=tmp_path, idle=0.3, backpressure=0.3,
                                        dram_stall=0.3, seed=4, check=True, load="stream",
                                        bad={2: "beats", 3: "count"})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert [len(a) for a in run.answers] == [10, 10, 10, 9]
    assert run.errors == [False, False, True, False]
    # query 2 lost ids of its first candidate: only its flag is defined; the rest exact
    assert [a == e for i, (a, e) in enumerate(zip(run.answers, run.expected, strict=True))
            if i != 2] == [True] * 3
    assert run.status_ok and run.mixed_flags == 0
    assert run.counters["err_cause"] == ErrCause.CAND_BEATS


@pytest.mark.slow
def test_verilator_three_stage_real_and_criteo(models_dir, ml, tmp_path):
    """three-stage (8 x 16 array, four 4-column partitions): small keeps 16, medium 12,
    large 10 on real queries; then Criteo-shaped queries; bit-exact."""
    cfg = get_config("three-stage")
    acc = Accelerator.from_models(cfg, models_dir, ml=ml)
    qs = acc.movielens_queries(ml, 2, seed=7)
    run, (tests, failed) = acc.simulate([b for b, _ in qs], workdir=tmp_path / "ml",
                                        idle=0.2, backpressure=0.2, dram_stall=0.2,
                                        check=True)
    assert (tests, failed) == (1, 0), (tmp_path / "ml" / "sim.log").read_text()[-5000:]
    acc, queries = criteo_accelerator(cfg, seed=5)
    run, (tests, failed) = acc.simulate(queries((50, 100, 7)), workdir=tmp_path / "criteo",
                                        idle=0.3, backpressure=0.3, dram_stall=0.3,
                                        bad=[1], check=True)
    assert (tests, failed) == (1, 0), (tmp_path / "criteo" / "sim.log").read_text()[-5000:]
    assert run.errors == [False, True, False]


@pytest.mark.slow
def test_verilator_paper_structures_real_queries(models_dir, ml, tmp_path):
    """``default`` built with the ``paper`` config's structures (block-RAM heap top-k,
    shared tile module): real queries, one out-of-range id, a reset in the middle of a
    query (the heaps clear their RAMs after reset), idle gaps, backpressure, slow DRAM."""
    cfg = get_config("default").replace(name="default-heap-tiles", topk_impl="heap",
                                        tile_modules=True)
    acc = Accelerator.from_models(cfg, models_dir, ml=ml)
    qs = acc.movielens_queries(ml, 4, seed=11)
    run, (tests, failed) = acc.simulate(
        [b for b, _ in qs], workdir=tmp_path, idle=0.2, backpressure=0.3, dram_stall=0.2,
        bad=[2], reset_mid=True, check=True)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert run.errors == [False, False, True, False]
    assert all(a == e for a, e, err in zip(run.answers, run.expected, run.errors, strict=True)
               if not err)


@pytest.mark.slow  # the blocks' Icarus tests stay in CI
@pytest.mark.icarus
@pytest.mark.skipif(not simulator_available("icarus"), reason="iverilog not installed")
def test_icarus_default_criteo_shaped(tmp_path):
    """The second simulator: one Criteo-shaped query of 20 candidates end to end on
    Icarus Verilog, bit-exact."""
    acc, queries = criteo_accelerator(get_config("default"), seed=8)
    run, (tests, failed) = acc.simulate(queries((20,)), sim="icarus", workdir=tmp_path,
                                        idle=0.2, backpressure=0.2, check=True,
                                        load="stream")
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert run.mismatches == 0


def test_cli_sim_json_and_bad_arguments(models_dir, capsys):
    """``rpaccel sim`` on one real query: JSON with the documented keys, no mismatch,
    hardware quality equal to golden; bad arguments exit 2 with a one-line reason. CI
    runs it on the native bench (its Verilator build is test_native's); the cocotb bench
    of the whole top runs in the ``slow`` tests above."""
    import json

    from rpaccel.scripts.cli import main

    assert main(["sim", "--config", "default", "--queries", "1", "--seed", "2", "--json",
                 "--bench", "native", "--models", str(models_dir)]) == 0
    rep = json.loads(capsys.readouterr().out)
    for key in ("queries", "mismatches", "error_status_ok", "mixed_error_flags", "model",
                "hr@10", "ndcg@10", "golden_hr@10", "golden_ndcg@10",
                "cycles_per_query", "counters"):
        assert key in rep
    assert rep["mismatches"] == 0 and rep["hr@10"] == rep["golden_hr@10"]
    assert rep["error_status_ok"] and rep["mixed_error_flags"] == 0
    assert abs(rep["model"]["error"]["first_query_cycles"]) <= 0.05
    assert set(rep["cycles_per_query"]) == {"mean", "p95"}
    assert rep["counters"]["queries"] == 1
    assert rep["model_load"] == "dma" and rep["model_load_cycles"] > 200_000  # 221k AXI words
    assert main(["sim", "--config", "default", "--queries", "0"]) == 2
    assert "--queries must be a positive integer, not 0" in capsys.readouterr().err
    assert main(["sim", "--config", "default", "--pipeline", "small:99,large:10",
                 "--models", str(models_dir)]) == 2
    assert "k of stage 0 must be from 1 to topk_k (32), not 99" in capsys.readouterr().err
    assert main(["sim", "--config", "nope"]) == 2
    assert "config must be one of" in capsys.readouterr().err
