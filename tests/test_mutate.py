"""Mutation testing (`rpaccel.sim.mutate`): sites, application, the verdict cache, the
argued equivalents and a small run end to end on the local Dask cluster."""

import ast
import json
from dataclasses import asdict

from rpaccel.sim.mutate import (
    ARGUED,
    TARGETS,
    _cached,
    _code_line,
    apply,
    argued,
    argued_key,
    mutants,
    mutate,
    verdict_keys,
)
from rpaccel.sim.runner import REPO_ROOT


def test_every_mutant_changes_the_source_and_parses():
    target = TARGETS["requant"]
    src = (REPO_ROOT / target.source).read_text()
    ms = mutants(target)
    assert {m.kind for m in ms} >= {"compare", "operator", "constant", "condition",
                                    "stuck-0", "drop-sync"}
    base = ast.dump(ast.parse(src))
    for m in ms[::7]:
        assert ast.dump(ast.parse(apply(src, m.index))) != base, m
    # widths are declarations, not logic: no mutant inside a Signal(...) call
    assert not any("Signal(" in _code_line(target.source, m.line) and m.kind == "constant"
                   for m in ms)


def test_every_argued_equivalent_names_a_mutant_of_today_s_source():
    """A stale entry (the line, the change or its column no longer exists) fails here."""
    for key, why in ARGUED.items():
        target = TARGETS[key[0]]
        hits = [m for m in mutants(target) if argued_key(asdict(m)) == key]
        assert len(hits) == 1, key
        assert argued(asdict(hits[0])) == why


def test_cache_keeps_verdicts_until_the_source_changes_and_reruns_survivors(tmp_path):
    target = TARGETS["bus"]
    src, tests = verdict_keys(target)
    rows = [{"block": "bus", "index": 1, "status": "killed", "source_key": src,
             "tests_key": "older"},
            {"block": "bus", "index": 2, "status": "survived", "source_key": src,
             "tests_key": "older"},
            {"block": "bus", "index": 3, "status": "survived", "source_key": src,
             "tests_key": tests},
            {"block": "bus", "index": 4, "status": "killed", "source_key": "other",
             "tests_key": tests}]
    cache = tmp_path / "results.jsonl"
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sorted(_cached(cache, {"bus": (src, tests)})) == [("bus", 1), ("bus", 3)]


def test_a_small_run_scores_and_resumes(tmp_path, models_dir):
    logs = []
    kw = dict(per_block=2, spare=0.0, workers=1, models_dir=models_dir,
              work=tmp_path / "work", log=logs.append)
    rep = mutate(["weight_loader"], out=tmp_path / "mutate.json", **kw)
    p = rep["blocks"]["weight_loader"]
    assert rep["broken"] == [] and p["baseline_test_seconds"] >= 0
    assert p["scored"] + p["invalid"] + p["equivalent"] + p["argued"] == 2
    assert p["killed"] + p["survived"] == p["scored"]
    assert {r["status"] for r in p["mutants"]} <= {"killed", "survived", "timeout",
                                                   "invalid", "equivalent", "argued"}
    assert json.loads((tmp_path / "mutate.json").read_text())["blocks"]["weight_loader"]
    # the second run takes every verdict from the cache
    again = mutate(["weight_loader"], **kw)
    assert any("0 mutants of 1 blocks to run, 2 from" in m for m in logs), logs
    assert again["blocks"]["weight_loader"]["killed"] == p["killed"]
