"""MLP engine on the mesh: host compiler checks and cocotb on Verilator against golden."""

import json
import re

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.program import ProgramError, compile_layers, compile_stage, sub_batch_beats
from rpaccel.sim.engine_jobs import random_layers, random_slots, stage_job, write_jobs

CFG = get_config("default")


def _run(tmp_path, mode, slots, **tb):
    from rpaccel.hw.mlp_engine import ComputeEngine
    from rpaccel.sim.runner import build, run

    sb = build(ComputeEngine, CFG, "engine")
    jobs = write_jobs(tmp_path / "jobs.pkl", mode, slots)
    params = {"jobs": str(jobs), "seed": mode, "idle": 0.3, "backpressure": 0.3} | tb
    return run(sb, "rpaccel.sim.tb_engine", tmp_path, params)


def _random_slots(rng, cfg, mode, runs=2):
    return random_slots(cfg, mode, rng, runs)


def test_program_refuses_what_does_not_fit(qmodels):
    small_buf = CFG.replace(weight_rows=64)
    with pytest.raises(ProgramError, match="weight rows of the model must be at most "
                                           "weight_rows 64, not"):
        compile_stage(small_buf, 8, 0, qmodels["large"])
    with pytest.raises(ProgramError, match="layer input width must be at most max_width 16"):
        compile_layers(CFG.replace(max_width=16), 8, 0, random_layers(np.random.default_rng(0),
                                                                     [17, 4]))
    prog = compile_layers(CFG, 8, 0, random_layers(np.random.default_rng(0), [8, 4]))
    with pytest.raises(ProgramError, match="items of a sub-batch must be from 1 to sub_batch"):
        sub_batch_beats(prog, np.zeros((CFG.sub_batch + 1, 8)))
    with pytest.raises(ProgramError, match="partition width"):
        compile_layers(CFG, 4, 0, random_layers(np.random.default_rng(0), [8, 4]))


def test_program_refuses_more_features_than_the_interaction_holds():
    """Packed pooled vectors need fewer feature-region words, but the interaction unit's
    register file still holds every feature unpacked: 21 features of 2 values fit 6 of the
    8 words a region has, and are refused (21 > 8)."""
    from rpaccel.golden.data import criteo_synthetic
    from rpaccel.golden.quantize import quantize_model
    from rpaccel.golden.zoo import ModelSize, random_model

    rows = (20,) * 20
    model = random_model(ModelSize("t2", 2, (16,), (24,)), 13, rows, "cat", seed=1)
    q = quantize_model(model, criteo_synthetic(200, rows, seed=2))
    cfg = CFG.replace(max_width=64)
    with pytest.raises(ProgramError, match="interaction register-file words .* must be at "
                                           "most 8, not 21"):
        compile_stage(cfg, 8, 0, q)
    compile_stage(CFG.replace(max_width=168), 8, 0, q)  # 21 words: fits


def test_compute_engine_widths_are_validated():
    from rpaccel.hw.mlp_engine import ComputeEngine
    from rpaccel.interface import engine_width

    cfg = get_config("default")  # 8 columns, 2 partitions: slots 8 and 4 wide
    assert ComputeEngine(cfg).widths == [8, 4]
    one = [engine_width(cfg, e) for e in range(2)]
    assert ComputeEngine(cfg, widths=one).widths == [4, 4]
    for bad in ([8, 8], [16, 4], [4], [3, 4]):
        with pytest.raises(ValueError, match=r"widths must give each of the 2 engines"):
            ComputeEngine(cfg, widths=bad)
    with pytest.raises(ValueError, match="engine must be from 0 to 1"):
        engine_width(cfg, 2)


def test_program_tiles_weights_for_the_partition(qmodels):
    # the large model: 4-512-256-128-64-32 bottom, 60-96-1 top (32 + 28 pairs of 8
    # features), on an 8 x 4 partition
    prog = compile_stage(CFG, 4, 1, qmodels["large"])
    dims = [(4, 512), (512, 256), (256, 128), (128, 64), (64, 32), (60, 96), (96, 1)]
    tiles = sum(-(-k // 8) * -(-n // 4) for k, n in dims)
    assert prog.weight_rows == 8 * tiles
    assert prog.param_rows == sum(-(-n // 4) for _, n in dims)
    assert [s["kind"] for s in prog.steps] == [1] * 5 + [2] + [1] * 2 + [0]


@pytest.mark.parametrize("mode", [0, 1])
def test_verilator_engine_random_layers(tmp_path, mode):
    """Random layer shapes (multi-tile in K and N, widths not multiples of the partition),
    both partitions running different MLPs at once in mode 1, idle gaps, backpressure."""
    rng = np.random.default_rng(100 + mode)
    metrics = tmp_path / "metrics.json"
    tests, failed = _run(tmp_path, mode, _random_slots(rng, CFG, mode), metrics=str(metrics))
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
    # the next sub-batch's activations are taken while the engine computes
    runs = json.loads(metrics.read_text())
    prefetched = sum(r["prefetched"] for r in runs)
    left = sum(r["prefetch_left"] for r in runs)
    assert prefetched > 0 and left < prefetched / 4, runs


def test_verilator_engine_reports_a_wrong_result(tmp_path):
    """The bench can fail: one expected value off by one must be reported."""
    rng = np.random.default_rng(7)
    slots = _random_slots(rng, CFG, 0, runs=1)
    wrong = slots[0]["runs"][0]["expect"][0]
    wrong[0] += 1
    tests, failed = _run(tmp_path, 0, slots)
    assert (tests, failed) == (1, 1)
    log = (tmp_path / "sim.log").read_text()
    right = [wrong[0] - 1] + wrong[1:]
    pattern = (rf"item 0 mismatch at cycle \d+\s+expected {re.escape(repr(wrong))}\s+"
               rf"actual\s+{re.escape(repr(right))}")
    assert re.search(pattern, log), log[-3000:]


def test_verilator_stage_models_two_partitions(tmp_path, qmodels, ml):
    """The three trained stage models (bottom MLP, dot interaction, top MLP) bit-exact on
    real MovieLens-100k candidates: the small then the medium model on partition 0 while
    the large one runs on partition 1."""
    user, cands, _ = ml.queries(1000, seed=3, users=[42])[0]

    def batches(n, count, start=0):
        return [ml.batch(np.full(n, user), cands[start + i * n:start + (i + 1) * n])
                for i in range(count)]

    slots = {0: {"programs": [stage_job(CFG, 0, 1, qmodels["small"], batches(16, 2)),
                              stage_job(CFG, 0, 1, qmodels["medium"], batches(13, 1, 100))]},
             1: stage_job(CFG, 1, 1, qmodels["large"], batches(8, 1, 200))}
    tests, failed = _run(tmp_path, 1, slots)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


def test_verilator_stage_cat_and_dot_criteo_shaped(tmp_path):
    """Random Criteo-shaped stages with bags of 2: a ``cat`` interaction with d = 3 (pooled
    vectors two to an 8-lane word) and a
    ``dot`` one with d = 12 (features spanning two words, the second one partly masked),
    one per partition at once."""
    from rpaccel.golden.data import criteo_synthetic
    from rpaccel.golden.quantize import quantize_model
    from rpaccel.golden.zoo import ModelSize, random_model

    rows = (50, 80, 30)
    slots = {}
    for p, (inter, d) in enumerate((("cat", 3), ("dot", 12))):
        model = random_model(ModelSize(f"t{d}", d, (16,), (24,)), 13, rows, inter, seed=p)
        q = quantize_model(model, criteo_synthetic(500, rows, seed=10 + p, bag_size=2))
        batches = [criteo_synthetic(n, rows, seed=20 + p + n, bag_size=2) for n in (11, 5)]
        slots[p] = stage_job(CFG, p, 1, q, batches, name=f"{inter} d={d}")
    tests, failed = _run(tmp_path, 1, slots)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


@pytest.mark.parametrize("mode", [0, 2])
def test_verilator_engine_four_partitions(tmp_path, mode):
    """4 x 8 array of 2 x 2 blocks in 4 column groups: activation words of lcm(4, 8) = 8
    lanes, wider than a k-tile; one 8-column partition, or four 2-column partitions
    running four different MLPs at once."""
    from rpaccel.hw.mlp_engine import ComputeEngine
    from rpaccel.sim.runner import build, run

    cfg = CFG.replace(name="four-partitions", array_rows=4, array_cols=8, block=2,
                      partitions=4)
    rng = np.random.default_rng(200 + mode)
    sb = build(ComputeEngine, cfg, "engine")
    jobs = write_jobs(tmp_path / "jobs.pkl", mode, random_slots(cfg, mode, rng))
    tests, failed = run(sb, "rpaccel.sim.tb_engine", tmp_path,
                        {"jobs": str(jobs), "seed": mode, "idle": 0.3, "backpressure": 0.3})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
