import json

import pytest

torch = pytest.importorskip("torch")

from rpaccel.scripts.baselines import (  # noqa: E402
    MODELS,
    PIPELINES,
    STAGES,
    build_models,
    format_table,
    macs_per_query,
    main,
    make_queries,
    run_baselines,
    run_pipeline,
    stage_name,
)

ROWS = 1000


def test_macs_per_query():
    # RM-large per item: bottom 13*512 + 512*256 + 256*128 + 128*64 + 64*32 = 180736,
    # top 383*96 + 96*1 = 36864, interaction 351*32 = 11232; 228832 * 4096 = 937.3 M
    assert macs_per_query("1-stage large") == 228832 * 4096
    assert macs_per_query("1-stage large") == pytest.approx(937e6, rel=0.01)
    # RM-small per item: 13*64 + 64*4 + 355*64 + 64 + 351*4 = 25276; + 512 large items
    assert macs_per_query("2-stage small->large") == pytest.approx(221e6, rel=0.01)
    # RM-med per item: 13*64 + 64*16 + 367*64 + 64 + 351*16 = 31024
    assert macs_per_query("3-stage small->med->large") == 25276 * 4096 + 31024 * 512 + 228832 * 128


def test_answers_and_survivors():
    models = build_models(ROWS, names=("small", "med", "large"))
    dense, ids = make_queries(2, ROWS, seed=3)
    with torch.inference_mode():
        for name, stages in PIPELINES.items():
            out = run_pipeline(name, models, dense, ids)
            assert len(out) == len(stages)
            for (cand, scores), st in zip(out, stages):
                assert cand.shape == scores.shape == (2, st.keep)
                assert bool((scores[:, :-1] >= scores[:, 1:]).all())  # best first
                assert all(len(set(c.tolist())) == st.keep for c in cand)
            assert out[-1][0].shape[-1] == 64
        first, final = run_pipeline("2-stage small->large", models, dense, ids)
        for q in range(2):
            assert set(final[0][q].tolist()) <= set(first[0][q].tolist())
        # the final stage's scores are the large model's own scores of those candidates
        q_ids = final[0][0]
        direct = models["large"](dense[0, q_ids], ids[0, q_ids])
        torch.testing.assert_close(direct, final[1][0])


def test_run_baselines_cpu(tmp_path):
    # without a GPU, asking for cuda as well checks that it is skipped with a note
    devices = ("cpu",) if torch.cuda.is_available() else ("cpu", "cuda")
    res = run_baselines(devices=devices, queries=3, warmup=1, batch_sizes=(2,), rows=ROWS,
                        threads=1, time_budget_s=2.0, progress=lambda s: None)
    json.loads(json.dumps(res))
    meta = res["meta"]
    for key in ("date", "hostname", "torch", "cpu_model", "cpu_count", "threads", "params"):
        assert key in meta
    assert meta["params"]["rows"] == ROWS and meta["threads"] == 1
    if not torch.cuda.is_available():
        assert any("cuda skipped" in n for n in meta["notes"])
    rows = res["rows"]
    assert [r["pipeline"] for r in rows] == list(PIPELINES)
    for r in rows:
        assert "error" not in r, r
        assert r["device"] == "cpu" and r["mode"] == "eager" and r["dtype"] == "fp32"
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["mean_ms"] > 0
        assert 1 <= r["queries"] <= 3
        assert r["answer_k"] == 64
        assert r["macs_per_query"] == macs_per_query(r["pipeline"])
        (b,) = r["batched"]
        assert b["batch"] == 2 and b["qps"] > 0 and b["batches"] >= 2
    assert "1-stage large" in format_table(res)


def test_stage_entries_add_up_to_pipelines():
    for name, st in STAGES.items():
        assert name == stage_name(st) == f"stage {st.model} {st.items}->{st.keep}"
        assert st.model in MODELS and 0 < st.keep <= st.items
    for name in ("stage small 4096->512", "stage med 512->128", "stage large 512->64",
                 "stage large 128->64", "stage large 4096->64"):
        assert name in STAGES
    # every stage of every pipeline has its own entry, and their MACs add up to the pipeline's
    for name, stages in PIPELINES.items():
        assert macs_per_query(name) == sum(macs_per_query(stage_name(s)) for s in stages)
    assert macs_per_query("2-stage small->large") == (
        macs_per_query("stage small 4096->512") + macs_per_query("stage large 512->64"))
    assert macs_per_query("3-stage small->med->large") == (
        macs_per_query("stage small 4096->512") + macs_per_query("stage med 512->128")
        + macs_per_query("stage large 128->64"))
    assert macs_per_query("stage large 4096->64") == macs_per_query("1-stage large")
    assert macs_per_query("stage large 128->64") == 228832 * 128
    with pytest.raises(KeyError):
        macs_per_query("stage large 4096->4096")


def test_stage_mode_cpu(tmp_path, capsys):
    models = build_models(ROWS, names=("med",))
    dense, ids = make_queries(2, ROWS, items=512, seed=4)
    with torch.inference_mode():
        ((cand, scores),) = run_pipeline("stage med 512->128", models, dense, ids)
        assert cand.shape == scores.shape == (2, 128)
        direct = models["med"](dense[1, cand[1]], ids[1, cand[1]])
        torch.testing.assert_close(direct, scores[1])
    # --stages alone measures the stage entries only, in the pipelines' row format
    names = ["stage large 128->64", "stage med 512->128"]
    out = tmp_path / "stages.json"
    assert main(["--devices", "cpu", "--stages", ",".join(names), "--queries", "3",
                 "--warmup", "1", "--batch-sizes", "2", "--rows", str(ROWS), "--threads", "1",
                 "--time-budget", "2", "--out", str(out)]) == 0
    assert "stage med 512->128" in capsys.readouterr().out
    res = json.loads(out.read_text())
    meta = res["meta"]
    assert meta["pipelines"] == {} and list(meta["stages"]) == names
    assert meta["stages"]["stage med 512->128"] == {"model": "med", "items": 512, "keep": 128}
    assert meta["params"]["rows"] == ROWS and meta["threads"] == 1
    rows = res["rows"]
    assert [r["pipeline"] for r in rows] == names
    for r in rows:
        assert "error" not in r, r
        st = STAGES[r["pipeline"]]
        assert (r["model"], r["items"], r["keep"]) == (st.model, st.items, st.keep)
        assert r["device"] == "cpu" and r["mode"] == "eager" and r["dtype"] == "fp32"
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["mean_ms"] > 0
        assert 1 <= r["queries"] <= 3
        assert r["answer_k"] == st.keep
        assert r["macs_per_query"] == macs_per_query(r["pipeline"])
        (b,) = r["batched"]
        assert b["batch"] == 2 and b["qps"] > 0 and b["batches"] >= 2
