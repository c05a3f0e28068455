"""The long random regression of the top level (``rpaccel regress``, ``make regress``).

Each suite entry is a configuration with its models and query mix; its queries are cut
into tasks of ``chunk`` queries, and every task is one run of the native testbench
(`rpaccel.sim.native`) with its own random stimulus: idle gaps, result backpressure and
DRAM stalls each drawn from 0 to 50%, candidate counts drawn per query, out-of-range ids,
candidates too long for the buffer, headers claiming too many candidates, and in some
tasks a reset in the middle of a query. Every answer is checked bit for bit against the
golden int8 pipeline, every flag and the error status as in `rpaccel.sim.tb_top`.

The tasks run on Dask: a local cluster (one single-threaded worker process per core) by
default, or the scheduler at ``scheduler`` (workers must see this repository and its
models at the same paths; each machine compiles a configuration once, behind a file
lock, for all its workers). The master seed is drawn at run time unless given and is
printed; each task's seed derives from it, so ``--seed S`` repeats a run exactly.
"""

from __future__ import annotations

import datetime
import json
import platform
import random
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["SuiteEntry", "SUITE", "Task", "plan", "run_task", "regress", "map_tasks"]


@dataclass(frozen=True)
class SuiteEntry:
    """One configuration of the regression.

    Attributes
    ----------
    name : str
        Name in the report.
    config : str
        A named configuration (`rpaccel.config.get_config`).
    models : {"movielens", "criteo"}
        Trained MovieLens models (`rpaccel.runtime.DEFAULT_PIPELINES`) or random
        Criteo-shaped ones (`rpaccel.workloads.criteo_shaped`).
    candidates : (int, int)
        Candidate count per query, drawn uniformly from this range.
    big : float
        Share of queries with the configuration's ``max_items`` candidates instead.
    """

    name: str
    config: str
    models: str
    candidates: tuple = (2, 100)
    big: float = 0.0


#: The default suite: every named configuration that simulates in reasonable time, the
#: real MovieLens models and the Criteo-shaped ones, and the 1000-candidate config with
#: some full quality-table queries.
SUITE = (
    SuiteEntry("default", "default", "movielens", (2, 100), 0.05),
    SuiteEntry("default-criteo", "default", "criteo", (1, 128), 0.1),
    SuiteEntry("baseline", "baseline", "movielens", (2, 40), 0.0),
    SuiteEntry("three-stage", "three-stage", "movielens", (2, 100), 0.05),
    SuiteEntry("three-stage-criteo", "three-stage", "criteo", (1, 128), 0.1),
    SuiteEntry("ml1000", "ml1000", "movielens", (2, 100), 0.02),
)


@dataclass(frozen=True)
class Task:
    """``queries`` queries of ``entry`` in one run, drawn from ``seed``."""

    entry: SuiteEntry
    index: int
    queries: int
    seed: int


def plan(suite, queries: int, chunk: int, seed: int) -> list:
    """The tasks: ``queries`` queries per entry in runs of at most ``chunk``."""
    rng = random.Random(seed)
    tasks = []
    for entry in suite:
        left, i = queries, 0
        while left > 0:
            n = min(chunk, left)
            tasks.append(Task(entry, i, n, rng.getrandbits(31)))
            left -= n
            i += 1
    return tasks


@lru_cache(maxsize=8)
def _accelerator(entry: SuiteEntry, models_dir: str):
    from ..config import get_config
    from ..golden.data import load_ml100k
    from ..runtime import Accelerator
    from ..workloads import criteo_shaped

    cfg = get_config(entry.config)
    if entry.models == "criteo":
        return criteo_shaped(cfg, seed=3)
    ml = load_ml100k()
    return Accelerator.from_models(cfg, models_dir, ml=ml), None


def _stimulus(task: Task, acc) -> tuple:
    """The queries and the stimulus of a task, all drawn from its seed."""
    rng = random.Random(task.seed)
    entry, cfg = task.entry, acc.config
    sizes = [cfg.max_items if rng.random() < entry.big else rng.randint(*entry.candidates)
             for _ in range(task.queries)]
    if entry.models == "movielens":
        sizes = [min(max(2, s), cfg.max_items) for s in sizes]
    faults = {}
    for i in range(task.queries):
        r = rng.random()
        if r < 0.05:
            faults[i] = "id"
        elif r < 0.07 and cfg.stages > 1:
            faults[i] = "beats"
        elif r < 0.09:
            faults[i] = "count"
        elif r < 0.10:
            faults[i] = "short"
        elif r < 0.11:
            faults[i] = "unended"
    knobs = {"idle": rng.choice((0.0, 0.1, 0.3, 0.5)),
             "backpressure": rng.choice((0.0, 0.1, 0.3, 0.5)),
             "dram_stall": rng.choice((0.0, 0.1, 0.3, 0.5)),
             "reset_mid": rng.random() < 0.2, "seed": rng.getrandbits(31)}
    return sizes, faults, knobs


def run_task(task: Task, models_dir: str, work_root: str) -> dict:
    """One task on this machine: its queries through the native testbench; a summary."""
    from ..golden.data import load_ml100k
    from .native import build_native, problems, run_native

    t0 = time.perf_counter()
    acc, criteo_queries = _accelerator(task.entry, models_dir)
    sizes, faults, knobs = _stimulus(task, acc)
    if criteo_queries is not None:
        batches = criteo_queries(sizes, start=task.seed)
    else:
        ml = acc.ml or load_ml100k()
        batches = []
        for i, n in enumerate(sizes):
            (b, _), = acc.movielens_queries(ml, 1, seed=task.seed + i, candidates=n)
            batches.append(b)
    job = acc.job(batches, faults)
    nb = build_native(acc.config)
    run_dir = Path(work_root) / f"{task.entry.name}-{task.index}"
    prep = time.perf_counter() - t0
    mt = run_native(nb, job, run_dir, knobs["idle"], knobs["backpressure"],
                    knobs["dram_stall"], knobs["seed"], knobs["reset_mid"], check=True)
    wrong = problems(job, mt)
    return {"entry": task.entry.name, "index": task.index, "seed": task.seed,
            "queries": task.queries, "answered": len(mt["answers"]),
            "flagged": sum(mt["errors"]), "dropped": sum(f == "count" for f in faults.values()),
            "faults": len(faults), "candidates": sum(sizes), "knobs": knobs,
            "problems": wrong, "cycles": mt["cycles"], "sim_seconds": round(mt["seconds"], 3),
            "prep_seconds": round(prep, 3), "run_dir": str(run_dir)}


def _client(scheduler: str | None, workers: int | None):
    import os

    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def map_tasks(fn, tasks, scheduler: str | None = None, workers: int | None = None,
              on_result=None, unit: str = "task", size=None, desc: str | None = None,
              progress: bool | None = None) -> tuple:
    """Run ``fn(*args)`` for every ``args`` of ``tasks`` on Dask: a local cluster of
    ``workers`` single-threaded processes (one per core by default), or the scheduler at
    ``scheduler``. ``on_result(result)`` sees each result as it arrives; a progress bar
    (``progress``, by default when stderr is a terminal) counts ``size(result)`` per
    result (default 1) in ``unit``. Returns
    ``(results in completion order, number of workers)``. The runner of the regression,
    the formal proofs, the mutation runs and the design-space sweep."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    tasks = list(tasks)
    if not tasks:
        return [], 0
    client, cluster = _client(scheduler, workers)
    nworkers = len(client.scheduler_info()["workers"])
    results = []
    try:
        futures = [client.submit(fn, *args, pure=False) for args in tasks]
        total = None if size is not None else len(futures)
        bar = tqdm(total=total, unit=unit, file=sys.stderr, desc=desc,
                   disable=not (sys.stderr.isatty() if progress is None else progress))
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            bar.update(size(r) if size is not None else 1)
            if on_result is not None:
                on_result(r)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results, nworkers


def regress(suite=SUITE, queries: int = 1000, chunk: int = 25, seed: int | None = None,
            scheduler: str | None = None, workers: int | None = None, models_dir=None,
            work_root=None, out=None, log=print) -> dict:
    """Run the regression; returns (and with ``out`` writes) the JSON report.

    Parameters
    ----------
    suite : sequence of SuiteEntry
    queries : int
        Queries per entry.
    chunk : int
        Queries per task (one testbench run: the model is loaded once per task).
    seed : int, optional
        Master seed; drawn at run time when None (it is printed and in the report).
    scheduler : str, optional
        Address of a Dask scheduler; a local cluster of ``workers`` processes without.
    """
    from ..config import get_config
    from .native import build_native
    from .runner import BUILD_ROOT

    if queries < 1 or chunk < 1:
        raise ValueError(f"queries and chunk must be positive, not {queries}, {chunk}")
    seed = secrets.randbits(31) if seed is None else seed
    models_dir = str(Path(models_dir or BUILD_ROOT / "models").resolve())
    work_root = str(Path(work_root or BUILD_ROOT / "regress").resolve())
    log(f"regress: seed {seed} ({len(suite)} configurations x {queries} queries, "
        f"{chunk} per run); repeat with --seed {seed}")
    t0 = time.perf_counter()
    for cfg_name in dict.fromkeys(e.config for e in suite):
        t = time.perf_counter()
        build_native(get_config(cfg_name))
        log(f"regress: native testbench of {cfg_name} ready ({time.perf_counter() - t:.0f} s)")
    build_s = time.perf_counter() - t0
    tasks = plan(suite, queries, chunk, seed)
    t1 = time.perf_counter()

    def check(r):
        if r["problems"]:
            log(f"regress: {r['entry']} run {r['index']} (task seed {r['seed']}): "
                + "\n  ".join(r["problems"]))

    results, nworkers = map_tasks(run_task, [(t, models_dir, work_root) for t in tasks],
                                  scheduler, workers, on_result=check, unit="query",
                                  size=lambda r: r["queries"])
    wall = time.perf_counter() - t1
    results.sort(key=lambda r: (r["entry"], r["index"]))
    per = {}
    for e in suite:
        rs = [r for r in results if r["entry"] == e.name]
        cyc, secs = sum(r["cycles"] for r in rs), sum(r["sim_seconds"] for r in rs)
        per[e.name] = {
            "config": e.config, "models": e.models, "candidates": list(e.candidates),
            "big": e.big, "runs": len(rs), "queries": sum(r["queries"] for r in rs),
            "answered": sum(r["answered"] for r in rs),
            "flagged": sum(r["flagged"] for r in rs), "faults": sum(r["faults"] for r in rs),
            "dropped": sum(r["dropped"] for r in rs),
            "candidates_total": sum(r["candidates"] for r in rs),
            "resets_mid_query": sum(r["knobs"]["reset_mid"] for r in rs),
            "failed_runs": sum(bool(r["problems"]) for r in rs),
            "simulated_cycles": cyc, "sim_seconds": round(secs, 1),
            "cycles_per_second": round(cyc / secs) if secs else 0}
    report = {
        "date": datetime.date.today().isoformat(), "seed": seed,
        "scheduler": scheduler or f"local cluster, {nworkers} workers", "workers": nworkers,
        "host": platform.node(), "python": platform.python_version(),
        "queries": sum(p["queries"] for p in per.values()),
        "failed_runs": sum(p["failed_runs"] for p in per.values()),
        "mismatch_free": all(not r["problems"] for r in results),
        "wall_seconds": round(wall, 1), "build_seconds": round(build_s, 1),
        "simulated_cycles": sum(p["simulated_cycles"] for p in per.values()),
        "configs": per, "suite": [asdict(e) for e in suite], "runs": results,
    }
    log(f"regress: {report['queries']} queries in {wall:.0f} s on {nworkers} workers, "
        f"{report['failed_runs']} failed runs; seed {seed}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report
