"""Design-space exploration (``rpaccel dse``): which pipeline and which hardware win at each
load and quality target, and at what area.

A design point is a pipeline (stage models and the k each keeps) on a configuration: array
size, partitions and how the stages share the partitions' engines (one engine per stage, or
an engine map that gives a stage several engines: unequal splits), sub-batch, static and
dynamic embedding-cache sizes, DRAM line reads in flight (``mshrs``), interaction pairs per
cycle and clock. Per point:

- **timing** by the calibrated cycle model (`rpaccel.perf`, within 2.2% of Verilator on
  the calibration set): latency of a query alone, cycles between results back to back, each
  stage's service time; from those the p50 / p95 / p99 latency under Poisson load at the
  paper's three loads and the highest load whose p95 stays under a target
  (`rpaccel.perf.queueing`). Cycles do not depend on the clock, so each configuration is
  modelled once and reported at every clock of the sweep;
- **area** (GF12 mm2 and power by `rpaccel.area`, from the RAMs the generator builds);
  weight and parameter buffers and the activation width are sized to the pipeline's
  models (the smallest multiple of 1,024 / 64 rows that holds every engine's program, the
  widest layer or feature region in whole activation words), the static map to the
  tables' rows (a power of two); **FPGA resources** (ECP5 LUT4 / FF / MULT18X18D /
  DP16KD by `rpaccel.fpga`, a per-block model calibrated on Yosys runs) and whether the
  design fits each ECP5;
- **quality**: on ``ml100k``, HR@10 / NDCG@10 of the int8 pipeline on all 943 users'
  held-out queries of 1,000 candidates (golden scores computed once per model, pipelines
  by cascading the golden top-k), with standard errors and the popularity / item-kNN
  baselines beside it; on ``recpipe-criteo`` no quality can be measured here (no Criteo
  data, random weights): points carry the artifact's single-stage NDCG@64 of their last
  model as a label only.

Sweeps sample the space (seeded, without repeats) and run on Dask (a local cluster by
default, ``scheduler`` for a cluster), one task per configuration; every finished task is
appended to a JSONL cache so that an interrupted sweep resumes where it stopped. `pareto`
and `best_per_load` answer the paper's question over the results; `write_plots` draws the
fronts.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ConfigError, RPAccelConfig, get_config, require

__all__ = ["SPACES", "Point", "sample", "evaluate", "QualityTable", "sweep", "pareto",
           "best_per_load", "write_plots", "PAPER_LOADS", "summarize", "heterogeneous"]

#: The paper's loads (queries per second): 15 / 2.5 / 0.5 ms mean Poisson gaps.
PAPER_LOADS = {"low": 1000 / 15, "medium": 1000 / 2.5, "high": 1000 / 0.5}

#: The artifact's single-stage NDCG@64 on Criteo Kaggle at 4,096 items (ANCHORS.md): a
#: label of a Criteo point by its last model, not a measurement of the pipeline.
ARTIFACT_NDCG64 = {"small": 0.9127, "medium": 0.9222, "large": 0.9247}

#: Values of each dimension per workload. ``pipeline``: stage models and k per stage (the
#: last k is the answer). ``side``: array rows = columns. ``engines``: "per-stage" (one
#: engine per stage, ``engines = 0``) or "shared" (one engine per partition, every engine
#: map of `rpaccel.perf.engine_maps` a point of its own).
SPACES = {
    "recpipe-criteo": {
        "base": "paper",
        "candidates": 4096,
        "pipeline": (
            (("large", 64),),
            (("small", 256), ("large", 64)),
            (("small", 512), ("large", 64)),
            (("small", 1024), ("large", 64)),
            (("small", 512), ("medium", 64)),
            (("small", 512), ("medium", 128), ("large", 64)),
            (("small", 1024), ("medium", 256), ("large", 64)),
        ),
        "side": (32, 64, 128, 256),
        "partitions": (1, 2, 4),
        "engines": ("per-stage", "shared"),
        "sub_batch": (64, 128, 256),
        "static_rows": (4096, 16384, 65536),
        "cache_sets": (64, 256, 1024),
        "mshrs": (4, 16),
        "inter_pairs": (4, 16, 64),
        "emb_units": (1, 4, 8),
        "fclk_mhz": (125.0, 250.0),
    },
    "ml100k": {
        "base": "paper",
        "candidates": 1000,
        "pipeline": (
            (("small", 10),),
            (("medium", 10),),
            (("large", 10),),
            (("small", 50), ("large", 10)),
            (("small", 100), ("large", 10)),
            (("small", 200), ("large", 10)),
            (("small", 300), ("large", 10)),
            (("small", 100), ("medium", 10)),
            (("medium", 100), ("large", 10)),
            (("small", 300), ("medium", 100), ("large", 10)),
            (("small", 200), ("medium", 50), ("large", 10)),
        ),
        "side": (8, 16, 32, 64),
        "partitions": (1, 2, 4),
        "engines": ("per-stage", "shared"),
        "sub_batch": (32, 64, 128),
        "static_rows": (64, 256, 1024),
        "cache_sets": (16, 64, 256),
        "mshrs": (4, 16),
        "inter_pairs": (1, 4),
        "emb_units": (1, 2, 4),
        "fclk_mhz": (50.0, 125.0, 250.0),
    },
}

#: The hardware dimensions a configuration is made of (the clock is not one: cycles do
#: not depend on it).
HW_DIMS = ("side", "partitions", "sub_batch", "static_rows", "cache_sets", "mshrs",
           "inter_pairs", "emb_units")


@dataclass(frozen=True)
class Point:
    """One modelled configuration with its pipeline (every clock of the sweep is reported
    from it). ``engine_map``: the stage of each engine (``None``: one engine per stage)."""

    workload: str
    pipeline: tuple
    side: int
    partitions: int
    engine_map: tuple | None
    sub_batch: int
    static_rows: int
    cache_sets: int
    mshrs: int
    inter_pairs: int
    emb_units: int = 1

    @property
    def key(self) -> str:
        """Canonical JSON of the point: its identity in the result cache."""
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def pipeline_name(self) -> str:
        return ",".join(f"{m}:{k}" for m, k in self.pipeline)

    @property
    def split(self) -> str:
        """``"equal"`` (one engine per stage on equal partitions) or ``"unequal"`` (an
        engine map giving some stage more engines than another)."""
        if self.engine_map is None:
            return "equal"
        counts = [self.engine_map.count(s) for s in range(len(self.pipeline))]
        return "equal" if len(set(counts)) == 1 else "unequal"

    def config(self) -> RPAccelConfig:
        """The configuration: the workload's base with this point's fields (weight and
        parameter rows as the base has them; `evaluate` sizes them to the models)."""
        base = get_config(SPACES[self.workload]["base"])
        stages = len(self.pipeline)
        block = min(16, max(4, self.side // 4))
        k_max = max(k for _, k in self.pipeline)
        topk_k = 1 << (k_max - 1).bit_length()
        cand = SPACES[self.workload]["candidates"]
        items = 1 << (cand - 1).bit_length()
        lanes = self.side
        fields = dict(
            name=f"dse-{self.workload}", array_rows=self.side, array_cols=self.side,
            block=block, partitions=self.partitions, stages=stages,
            engines=0 if self.engine_map is None else self.partitions,
            requant_lanes=min(128, self.side), topk_k=topk_k,
            topk_impl="queue" if topk_k <= 64 else "heap",
            max_items=items, topk_id_bits=max(items.bit_length() - 1, 1),
            sub_batch=self.sub_batch, static_rows=self.static_rows,
            cache_sets=self.cache_sets, mshrs=self.mshrs,
            inter_pairs=min(self.inter_pairs, lanes),
            inter_slots=max(1, min(base.inter_slots, lanes // min(self.inter_pairs, lanes))),
            tile_modules=self.side >= 64,
            # the base's DRAM ports, as many as the units can use (one line a cycle each)
            emb_units=self.emb_units, axi_ports=math.gcd(base.axi_ports, self.emb_units))
        return base.replace(**fields)


def _hw_choices(space: dict, stages: int):
    """Every (partitions, engine map) a pipeline of ``stages`` stages can use."""
    from .perf import engine_maps

    out = []
    for p in space["partitions"]:
        if p < stages:
            continue
        if "per-stage" in space["engines"]:
            out.append((p, None))
        if "shared" in space["engines"] and p > stages:
            probe = RPAccelConfig(array_cols=64, block=4, partitions=p, stages=stages,
                                  engines=p)
            out += [(p, em) for em in engine_maps(probe)]
    return out


def sample(workload: str, n: int, seed: int = 0, space: dict | None = None) -> list[Point]:
    """``n`` distinct points of ``workload``'s space (all of it if it holds fewer), drawn
    uniformly from the seed: pipeline, then partitions and engine map, then the rest."""
    space = space or SPACES[workload]
    total = _space_size(space)
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n and len(seen) < total:
        pipe = rng.choice(space["pipeline"])
        parts, emap = rng.choice(_hw_choices(space, len(pipe)))
        pt = Point(workload, pipe, rng.choice(space["side"]), parts, emap,
                   *(rng.choice(space[d]) for d in ("sub_batch", "static_rows", "cache_sets",
                                                     "mshrs", "inter_pairs",
                                                     "emb_units")))
        if pt.key in seen:
            continue
        seen.add(pt.key)
        try:
            pt.config()
        except ConfigError:  # e.g. more partitions than the array has block columns
            continue
        out.append(pt)
    return out


# ---- models, queries and quality ---------------------------------------------------------
@lru_cache(maxsize=2)
def _stage_models(workload: str, models_dir: str | None):
    """``(models by name, profile batch, MovieLens or None)`` of a workload."""
    if workload == "recpipe-criteo":
        from .workloads import WORKLOADS, _criteo_models

        w = WORKLOADS[workload]
        models, profile = _criteo_models(w["rows"], w["tables"])
        return models, profile, None
    from .golden.data import load_ml100k
    from .golden.train import build_models

    require(models_dir is not None, "models_dir", "a model directory for ml100k (make "
            "models)", models_dir)
    from .runtime import movielens_profile

    ml = load_ml100k()
    models = build_models(Path(models_dir), log=lambda s: None)
    return models, movielens_profile(ml), ml


@lru_cache(maxsize=4)
def _queries(workload: str, models_dir: str | None, n: int, seed: int):
    """The sweep's queries: ``n`` of the workload's (the same for every point)."""
    from .workloads import workload_queries

    cand = SPACES[workload]["candidates"]
    if workload == "recpipe-criteo":  # the perf report's queries (no accelerator needed)
        return workload_queries(workload, None, n, seed, candidates=cand)
    ml = _stage_models(workload, models_dir)[2]
    rng = np.random.default_rng(seed)
    users = sorted(int(u) for u in rng.choice(ml.num_users, n, replace=False))
    return [ml.batch(np.full(len(c), u), c) for u, c, _ in ml.queries(cand, seed=seed,
                                                                         users=users)]


class QualityTable:
    """Quality of every pipeline of the MovieLens-100k queries, from golden int8 scores
    computed once per model: a pipeline is a cascade of `rpaccel.golden.pipeline.topk` over
    those scores (each item's score does not depend on the other items of its batch), the
    same ranks `rpaccel.golden.pipeline.evaluate` gives (``tests/test_dse.py``).

    Parameters
    ----------
    models : dict
        ``{name: QuantizedStage}``.
    ml : MovieLens
    candidates : int
        Candidates per query (the positive and ``candidates - 1`` unrated items).
    users : sequence of int, optional
        Users whose held-out items make the queries (all by default).
    """

    def __init__(self, models: dict, ml, candidates: int = 1000, users=None, seed: int = 0):
        from .golden.baselines import evaluate_baseline

        self.ml = ml
        self.queries = ml.queries(candidates, seed=seed, users=users, every_held_out=True)
        self.scores = {}
        for name, q in models.items():
            per = []
            for c in range(0, len(self.queries), 16):
                qs = self.queries[c:c + 16]
                users_ = np.concatenate([np.full(len(cd), u) for u, cd, _ in qs])
                items = np.concatenate([cd for _, cd, _ in qs])
                s = q.forward(ml.batch(users_, items), check=False)
                per += np.split(s, np.cumsum([len(cd) for _, cd, _ in qs])[:-1])
            self.scores[name] = per
        self.baselines = {}
        for b in ("popularity", "item-kNN"):
            r = evaluate_baseline(b, ml, self.queries, seed=seed, ranks=True)
            self.baselines[b] = r

    def ranks(self, pipeline) -> np.ndarray:
        """The positive's rank in each query (-1: filtered out) under ``pipeline``
        (``(("small", 100), ("large", 10))``)."""
        from .golden.pipeline import topk

        out = np.empty(len(self.queries), np.int64)
        for i, (_, cands, pos) in enumerate(self.queries):
            keep = np.arange(len(cands))
            for name, k in pipeline:
                s = self.scores[name][i][keep]
                keep = keep[topk(s, keep, k)]
            hit = np.flatnonzero(keep == pos)
            out[i] = int(hit[0]) if len(hit) else -1
        return out

    def metrics(self, pipeline) -> dict:
        """HR@10, NDCG@10 with standard errors and the paired HR@10 differences against
        popularity and item-kNN on the same queries."""
        from .golden.pipeline import paired_difference, ranked_metrics

        r = self.ranks(pipeline)
        m = ranked_metrics(r, ks=(1, 10))
        out = {k: m[k] for k in ("hr@10", "hr@10_se", "ndcg@10", "ndcg@10_se")}
        for b, ref in (("popularity", "popularity"), ("item-kNN", "item_knn")):
            out[f"hr@10_vs_{ref}"], out[f"hr@10_vs_{ref}_se"] = paired_difference(
                r, self.baselines[b]["ranks"])
        return out

    def baseline_rows(self) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "ranks"} for r in self.baselines.values()]


# ---- one point ---------------------------------------------------------------------------
def _fit_buffers(cfg: RPAccelConfig, acc) -> RPAccelConfig:
    """``cfg`` with weight and parameter buffers just large enough for ``acc``'s programs."""
    progs = [p for p in acc.engine_progs if p is not None]
    w = max(p.weight_rows for p in progs)
    p = max(p.param_rows for p in progs)
    return cfg.replace(weight_rows=max(1024, -(-w // 1024) * 1024),
                       param_rows=max(64, -(-p // 64) * 64))


def _fit_map(cfg: RPAccelConfig, acc) -> RPAccelConfig:
    """``cfg`` with the static map (one row per embedding row of every table) just deep
    enough, in a power of two, for the largest stage's tables (and the static cache)."""
    rows = max(sum(img.rows) for img in acc.images)
    return cfg.replace(emb_map_rows=max(cfg.static_rows, 1 << (rows - 1).bit_length()))


def _fit_width(cfg: RPAccelConfig, stage_models) -> RPAccelConfig:
    """``cfg`` with ``max_width`` just wide enough (in whole activation words) for the
    widest layer and the feature region (features x words per feature) of the models."""
    from .interface import lanes

    a = lanes(cfg)
    need = 1
    for q in stage_models:
        for layer in (*q.bot, *q.top):
            need = max(need, *layer.w.shape)
        need = max(need, q.float_model.num_features * -(-q.float_model.emb_dim // a) * a)
    return cfg.replace(max_width=-(-need // a) * a)


def _fitted(point: Point, models_dir):
    """``(config, accelerator)`` of ``point`` with its activation width, weight and
    parameter buffers and static map fitted to the models (compiled once on oversized
    buffers to measure them)."""
    models = _stage_models(point.workload, models_dir)[0]
    cfg = _fit_width(point.config(), [models[m] for m, _ in point.pipeline])
    big = cfg.replace(weight_rows=1 << 22, param_rows=1 << 16, emb_map_rows=1 << 24)
    acc = _accelerator(point, big, models_dir)
    cfg = _fit_map(_fit_buffers(big, acc), acc)
    return cfg, _accelerator(point, cfg, models_dir)


def _accelerator(point: Point, cfg: RPAccelConfig, models_dir):
    from .runtime import Accelerator

    models, profile, ml = _stage_models(point.workload, models_dir)
    stages = [(models[m], k) for m, k in point.pipeline]
    return Accelerator(cfg, stages, profile, cfg.static_rows * cfg.emb_dim, ml=ml,
                       names=[m for m, _ in point.pipeline], engine_map=point.engine_map)


def evaluate(point: Point, models_dir=None, queries: int = 2, clocks=None,
             p95_target_ms: float = 10.0, n_load: int = 2000) -> dict:
    """Model one point: its configuration (buffers fitted), area, and per clock the latency
    alone, throughput, p50 / p95 / p99 at the paper's loads and the saturation throughput
    at ``p95_target_ms``. A point that does not fit (a model too large for a buffer, a k
    above the top-k unit) is returned with ``"infeasible"``: the refusal's message."""
    from . import perf
    from .area import asic_area
    from .program import ProgramError
    from .runtime import AccelError
    from .scripts.perf_report import saturation_qps

    t0 = time.perf_counter()
    clocks = tuple(clocks or SPACES[point.workload]["fclk_mhz"])
    row = {"key": point.key, "point": asdict(point), "pipeline": point.pipeline_name,
           "stages": len(point.pipeline), "split": point.split,
           "model_digest": model_digest()}
    try:
        cfg, acc = _fitted(point, models_dir)
    except (ConfigError, ProgramError, AccelError, ValueError) as e:
        row["infeasible"] = str(e)
        return row
    batches = _queries(point.workload, models_dir, queries, 0)
    pred = perf.predict(acc, batches, alone=False)
    q0 = pred.queries[0]  # the first query runs on an idle machine: its latency alone
    service = perf.stage_service(pred)
    shares = [q0.stages[s]["done"] - (q0.stages[s - 1]["done"] if s else q0.start)
              for s in range(cfg.stages)]
    row.update(config=cfg.to_dict(), digest=cfg.digest(), area=asic_area(cfg),
               latency_cycles=q0.latency, interval_cycles=float(pred.interval),
               service_cycles=service, stage_latency_cycles=shares,
               bottleneck=pred.bottleneck, engine_map=list(acc.engine_map),
               engines_per_stage=[acc.engine_map.count(s) for s in range(cfg.stages)])
    per_clock = []
    for f in clocks:
        lat = lambda q, f=f: perf.queueing(service, shares, pred.limit, q, f, n=n_load)  # noqa: E731
        loads = {name: lat(q)["p95_ms"] for name, q in PAPER_LOADS.items()}
        per_clock.append({"fclk_mhz": f, "latency_us": round(q0.latency / f, 2),
                          "qps": round(f * 1e6 / pred.interval, 1), "p95_ms": loads,
                          "saturation_qps_p95": saturation_qps(lat, p95_target_ms)})
    row["clocks"] = per_clock
    row["model_seconds"] = round(time.perf_counter() - t0, 2)
    return row


# ---- the sweep ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def model_digest() -> str:
    """Digest of the sources a point's figures come from: every module of the package's
    host side (config, cycle model, area, compiler, runtime, workloads, ...), of the golden
    models and the perf report's queueing helpers. A cached point modelled by other
    sources is modelled again."""
    from . import golden
    from .scripts import perf_report

    # rpaccel.fpga only annotates the report (`_design_rows`), it sizes no modelled figure
    files = [*sorted(f for f in Path(__file__).parent.glob("*.py") if f.name != "fpga.py"),
             *sorted(Path(golden.__file__).parent.glob("*.py")), Path(perf_report.__file__)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _read_cache(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            if r.get("model_digest") == model_digest():
                done[r["key"]] = r
    return done


def sweep(workload: str, points: int = 1000, seed: int = 0, models_dir=None,
          cache=None, scheduler: str | None = None, workers: int | None = None,
          queries: int = 2, p95_target_ms: float = 10.0, log=print,
          progress: bool = True, quality_users=None) -> dict:
    """Model ``points`` sampled points of ``workload`` on Dask and gather the report.

    Points already in ``cache`` (a JSONL file, one modelled point per line) are not
    modelled again; each finished point is appended as it arrives, so an interrupted sweep
    resumes. Returns the report: every row, the quality table (``ml100k``; on the held-out
    queries of ``quality_users``, default all 943 users), the Pareto fronts and the best
    design per load (`summarize`).
    """
    require(workload in SPACES, "workload", f"one of {sorted(SPACES)}", workload)
    require(isinstance(points, int) and points >= 1, "points", "a positive integer", points)
    require(isinstance(queries, int) and queries >= 2, "queries", "an integer of at least 2 "
            "(back to back: the throughput needs two)", queries)
    models_dir = str(Path(models_dir).resolve()) if models_dir else None
    pts = sample(workload, points, seed)
    cache = Path(cache or Path("build") / "dse" / f"{workload}.jsonl")
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = _read_cache(cache)
    todo = [p for p in pts if p.key not in done]
    log(f"dse {workload}: {len(pts)} points ({len(pts) - len(todo)} cached in {cache} "
        f"by model {model_digest()}), "
        f"{len(todo)} to model")
    t0 = time.perf_counter()
    nworkers = 0
    if todo:
        from .sim.regress import map_tasks

        with cache.open("a") as fh:
            def keep(r):
                done[r["key"]] = r
                fh.write(json.dumps(r) + "\n")
                fh.flush()

            _, nworkers = map_tasks(evaluate, [(p, models_dir, queries, None, p95_target_ms)
                                               for p in todo], scheduler, workers,
                                    on_result=keep, unit="point", desc=f"dse {workload}",
                                    progress=progress)
    wall = time.perf_counter() - t0
    rows = [done[p.key] for p in pts]
    quality = None
    if workload == "ml100k":
        quality = _quality(models_dir, sorted({p.pipeline for p in pts}), quality_users)
    rep = {"workload": workload, "date": datetime.date.today().isoformat(),
           "host": platform.node(), "python": platform.python_version(),
           "seed": seed, "points": len(pts), "modelled_now": len(todo),
           "workers": nworkers, "scheduler": scheduler or f"local cluster ({nworkers})",
           "wall_seconds": round(wall, 1), "queries_per_point": queries,
           "p95_target_ms": p95_target_ms, "paper_loads_qps": PAPER_LOADS,
           "space": {k: v for k, v in SPACES[workload].items()}}
    rep.update(summarize(rows, workload, quality, p95_target_ms))
    return rep


def _quality(models_dir, pipelines, users=None) -> dict:
    models, _, ml = _stage_models("ml100k", models_dir)
    table = QualityTable(models, ml, users=users)
    out = {"queries": len(table.queries), "baselines": table.baseline_rows(), "pipelines": {}}
    for p in pipelines:
        out["pipelines"][",".join(f"{m}:{k}" for m, k in p)] = table.metrics(p)
    return out


# ---- answers -----------------------------------------------------------------------------
#: The clock at which designs are compared on an FPGA (the ``fpga-ecp5`` configuration's).
FPGA_CLOCK_MHZ = 50.0


def _fpga_fields(config: dict) -> dict:
    """A design row's modelled ECP5 resources (`rpaccel.fpga.estimate`)."""
    from .fpga import estimate

    est = estimate(RPAccelConfig(**config))
    return {**{f"fpga_{k}": est[k] for k in ("lut", "ff", "dsp", "bram")},
            **{f"fits_{d.replace('-', '_')}": ok for d, ok in est["fits"].items()}}


def _design_rows(rows, workload, quality) -> list[dict]:
    """One flat row per (point, clock) of the feasible points, with its quality and its
    modelled ECP5 resources."""
    out = []
    for r in rows:
        if "infeasible" in r:
            continue
        fpga = _fpga_fields(r["config"])
        q = (quality or {}).get("pipelines", {}).get(r["pipeline"], {})
        last = r["point"]["pipeline"][-1][0]
        for c in r["clocks"]:
            d = {"key": r["key"], "pipeline": r["pipeline"], "stages": r["stages"],
                 "split": r["split"], "side": r["point"]["side"],
                 "partitions": r["point"]["partitions"], "engine_map": r["engine_map"],
                 "sub_batch": r["point"]["sub_batch"],
                 "static_rows": r["point"]["static_rows"],
                 "cache_sets": r["point"]["cache_sets"], "mshrs": r["point"]["mshrs"],
                 "inter_pairs": r["point"]["inter_pairs"],
                 "emb_units": r["point"].get("emb_units", 1), "fclk_mhz": c["fclk_mhz"],
                 "area_mm2": r["area"]["total_mm2"], "power_w": r["area"]["power_w"],
                 "sram_mb": round(r["area"]["sram_bytes"]["total"] / 2**20, 3),
                 "latency_us": c["latency_us"], "qps": c["qps"],
                 "saturation_qps_p95": c["saturation_qps_p95"],
                 **{f"p95_{k}_ms": v for k, v in c["p95_ms"].items()},
                 "bottleneck": r["bottleneck"], **fpga}
            if workload == "ml100k":
                d["hr@10"], d["hr@10_se"] = q.get("hr@10"), q.get("hr@10_se")
                d["ndcg@10"] = q.get("ndcg@10")
            else:
                d["ndcg@64_label"] = ARTIFACT_NDCG64[last]
            out.append(d)
    return out


def pareto(rows, keys) -> list[dict]:
    """The rows no other row beats on every one of ``keys`` (``{"area_mm2": "min",
    "hr@10": "max", ...}``) and strictly on one; rows with a missing value are left out."""
    sign = {k: (1 if d == "min" else -1) for k, d in keys.items()}
    pts = [r for r in rows if all(r.get(k) is not None for k in keys)]
    vals = np.array([[sign[k] * r[k] for k in keys] for r in pts], float).reshape(
        len(pts), len(keys))
    front = []
    for i, v in enumerate(vals):
        dominated = np.any(np.all(vals <= v, axis=1) & np.any(vals < v, axis=1))
        if not dominated:
            front.append(pts[i])
    return front


def _iso_quality(rows, workload, quality) -> tuple[list, dict]:
    """The rows at the quality of the single-stage large model or better: on ml100k HR@10
    at least that of ``large:10`` minus the paired standard error of the difference (a
    smaller loss is "equal"); on Criteo the pipelines ending in RM-large (the artifact's
    iso-quality assumption; not measurable here)."""
    if workload != "ml100k" or not quality:
        keep = [r for r in rows if r["pipeline"].endswith("large:64")]
        return keep, {"rule": "pipelines ending in RM-large (RecPipe's iso-quality assumption; "
                              "quality not measured on Criteo here)"}
    ref = quality["pipelines"].get("large:10")
    if ref is None:
        return rows, {"rule": "no large:10 point: every pipeline"}
    floor = ref["hr@10"] - ref["hr@10_se"]
    keep = [r for r in rows if r["hr@10"] is not None and r["hr@10"] >= floor]
    return keep, {"rule": f"HR@10 >= large:10's {ref['hr@10']:.4f} - 1 SE "
                          f"({ref['hr@10_se']:.4f}) = {floor:.4f}", "floor": floor}


def best_per_load(rows, workload, quality, p95_target_ms: float = 10.0) -> dict:
    """Per paper load: among iso-quality designs, the one of lowest p95 (then smaller
    area) and the smallest one whose p95 meets ``p95_target_ms``; beside them the best
    equal-split and unequal-split designs, so the two are compared at the same load, and
    the best that fits an ECP5-85F (`rpaccel.fpga`, 20% of its LUTs free) at
    `FPGA_CLOCK_MHZ`."""
    iso, rule = _iso_quality(rows, workload, quality)
    out = {"iso_quality": rule}
    for load in PAPER_LOADS:
        k = f"p95_{load}_ms"
        ok = [r for r in iso if r[k] is not None]
        entry = {"qps": round(PAPER_LOADS[load], 1), "sustained": len(ok)}
        if ok:
            entry["lowest_p95"] = min(ok, key=lambda r: (r[k], r["area_mm2"]))
            meet = [r for r in ok if r[k] <= p95_target_ms]
            if meet:
                entry["smallest_meeting_target"] = min(meet, key=lambda r: (r["area_mm2"],
                                                                            r[k]))
            for split in ("equal", "unequal"):
                s = [r for r in ok if r["split"] == split]
                if s:
                    entry[f"lowest_p95_{split}"] = min(s, key=lambda r: (r[k],
                                                                         r["area_mm2"]))
            fpga = [r for r in ok if r["fits_ecp5_85f"] and r["fclk_mhz"] == FPGA_CLOCK_MHZ]
            if fpga:
                entry["lowest_p95_ecp5_85f"] = min(fpga, key=lambda r: (r[k], r["fpga_lut"]))
        out[load] = entry
    return out


def summarize(rows, workload, quality=None, p95_target_ms: float = 10.0) -> dict:
    """The report's answers over modelled ``rows``: flat design rows, the fronts
    (quality / p95 at each load / area; p95 / area per pipeline) and the best per load."""
    designs = _design_rows(rows, workload, quality)
    qkey = "hr@10" if workload == "ml100k" else None
    fronts = {}
    for load in PAPER_LOADS:
        keys = {f"p95_{load}_ms": "min", "area_mm2": "min"}
        if qkey:
            keys[qkey] = "max"
        fronts[load] = [r["key"] + f"@{r['fclk_mhz']:g}" for r in pareto(designs, keys)]
    return {"infeasible": [{"key": r["key"], "why": r["infeasible"]} for r in rows
                           if "infeasible" in r],
            "designs": designs, "quality": quality, "pareto": fronts,
            "best_per_load": best_per_load(designs, workload, quality, p95_target_ms)}


# ---- plots -------------------------------------------------------------------------------
def write_plots(report: dict, out_dir) -> list[str]:
    """PNG figures of a sweep: per paper load, p95 against area (colour: quality on ml100k,
    pipeline on Criteo; equal and unequal splits by marker) with the Pareto front,
    quality against p95 at the medium load (ml100k), and p95 against modelled ECP5 LUTs
    (`_fpga_plot`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wl = report["workload"]
    designs = report["designs"]
    files = []
    ml = wl == "ml100k"
    pipes = sorted({d["pipeline"] for d in designs}, key=lambda p: (p.count(","), p))
    cmap = plt.get_cmap("tab10" if len(pipes) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), sharey=True)
    for ax, load in zip(axes, PAPER_LOADS, strict=True):
        k = f"p95_{load}_ms"
        pts = [d for d in designs if d[k] is not None]
        for split, mk in (("equal", "o"), ("unequal", "^")):
            s = [d for d in pts if d["split"] == split]
            if not s:
                continue
            if ml:
                sc = ax.scatter([d["area_mm2"] for d in s], [d[k] for d in s], marker=mk,
                                c=[d["hr@10"] for d in s], cmap="viridis", s=12, alpha=0.7,
                                vmin=min(d["hr@10"] for d in designs),
                                vmax=max(d["hr@10"] for d in designs),
                                label=f"{split} split")
            else:
                ax.scatter([d["area_mm2"] for d in s], [d[k] for d in s], marker=mk, s=12,
                           alpha=0.6, c=[cmap(pipes.index(d["pipeline"])) for d in s],
                           label=f"{split} split")
        keys = {k: "min", "area_mm2": "min"}
        front = sorted(pareto(pts, keys), key=lambda d: d["area_mm2"])
        ax.step([d["area_mm2"] for d in front], [d[k] for d in front], "k-", where="post",
                lw=1.2, label="Pareto front (p95, area)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("area (mm2, GF12 model)")
        ax.set_title(f"{load} load ({PAPER_LOADS[load]:.0f} QPS): {len(pts)} designs "
                     "sustain it", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("p95 latency (ms, model)")
    if ml:
        fig.colorbar(sc, ax=axes, label="HR@10 (int8 golden)", shrink=0.8)
    else:
        handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(i), label=p)
                   for i, p in enumerate(pipes)]
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(pipes)), fontsize=7)
    fig.suptitle(f"{wl}: p95 latency vs area of {report['points']} modelled points "
                 f"x {len(report['space']['fclk_mhz'])} clocks", fontsize=11)
    f = out_dir / f"dse-{wl}-p95-area.png"
    fig.savefig(f, dpi=100, bbox_inches="tight")
    plt.close(fig)
    files.append(str(f))
    if ml:
        fig, ax = plt.subplots(figsize=(7, 5))
        k = "p95_medium_ms"
        pts = [d for d in designs if d[k] is not None]
        for split, mk in (("equal", "o"), ("unequal", "^")):
            s = [d for d in pts if d["split"] == split]
            ax.scatter([d[k] for d in s], [d["hr@10"] for d in s], marker=mk, s=12,
                       alpha=0.6, label=f"{split} split")
        front = sorted(pareto(pts, {k: "min", "hr@10": "max"}), key=lambda d: d[k])
        ax.step([d[k] for d in front], [d["hr@10"] for d in front], "k-", where="post",
                label="Pareto front")
        for b, c in zip(report["quality"]["baselines"], ("grey", "tab:red"), strict=False):
            ax.axhline(b["hr@10"], ls=":", color=c, label=f"{b['pipeline']} (baseline)")
        ax.set_xscale("log")
        ax.set_xlabel("p95 latency at the medium load (ms, model)")
        ax.set_ylabel("HR@10 (int8 golden, 943 users' held-out queries)")
        ax.legend(fontsize=8)
        ax.set_title("ml100k: quality vs p95 latency (medium load, 400 QPS)")
        f = out_dir / f"dse-{wl}-quality-p95.png"
        fig.savefig(f, dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append(str(f))
    files.append(_fpga_plot(report, out_dir, plt))
    return files


def _fpga_plot(report: dict, out_dir: Path, plt) -> str:
    """p95 at the medium load against modelled ECP5 LUTs at `FPGA_CLOCK_MHZ` (the lowest
    clock of the sweep where it has none), each ECP5's LUTs (80%) marked; designs that
    fit an ECP5-85F (LUTs, multipliers, block RAMs) filled."""
    from .fpga import DEVICES

    wl = report["workload"]
    clock = FPGA_CLOCK_MHZ if FPGA_CLOCK_MHZ in report["space"]["fclk_mhz"] else \
        min(report["space"]["fclk_mhz"])
    k = "p95_medium_ms"
    pts = [d for d in report["designs"] if d[k] is not None and d["fclk_mhz"] == clock]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if not pts:  # nothing to place on log axes
        ax.text(0.5, 0.5, f"no design sustains the medium load at {clock:g} MHz",
                ha="center", va="center", transform=ax.transAxes)
    for fit_, style in ((False, dict(facecolors="none", edgecolors="tab:grey")),
                        (True, dict(color="tab:green"))):
        s = [d for d in pts if d["fits_ecp5_85f"] == fit_]
        ax.scatter([d["fpga_lut"] for d in s], [d[k] for d in s], s=14, alpha=0.7,
                   label=f"{'fits' if fit_ else 'does not fit'} an ECP5-85F ({len(s)})",
                   **style)
    for dev, cap in DEVICES.items():
        ax.axvline(0.8 * cap["lut"], ls=":", color="k", lw=0.8)
        ax.text(0.8 * cap["lut"], ax.get_ylim()[1], f" {dev}", rotation=90, va="top",
                fontsize=7)
    if pts:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("LUT4 (Yosys estimate, per-block model rpaccel.fpga)")
    ax.set_ylabel(f"p95 latency at the medium load (ms, model, {clock:g} MHz)")
    ax.set_title(f"{wl}: FPGA size of {len(pts)} designs that sustain "
                 f"{PAPER_LOADS['medium']:.0f} QPS at {clock:g} MHz", fontsize=10)
    ax.legend(fontsize=8)
    f = out_dir / f"dse-{wl}-fpga.png"
    fig.savefig(f, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(f)


def _space_size(space: dict) -> int:
    return sum(len(_hw_choices(space, len(p))) for p in space["pipeline"]) * int(np.prod(
        [len(space[d]) for d in HW_DIMS if d != "partitions"]))


def space_size(workload: str) -> int:
    """Configurations (with pipeline, before clocks) in ``workload``'s space."""
    return _space_size(SPACES[workload])



# ---- RecPipe's scheduler over heterogeneous platforms ------------------------------------
#: Measured per-stage service times (PyTorch on one H200 and 16 threads of its host's
#: Xeon; `rpaccel.scripts.baselines --stages`).
STAGE_BASELINES = Path(__file__).resolve().parent.parent / "docs" / "reports" / \
    "baselines-h200-stages.json"

#: The Criteo pipelines the scheduler maps: per stage (model, items in, items kept).
SCHED_PIPELINES = {
    "1-stage large": (("large", 4096, 64),),
    "2-stage small->large": (("small", 4096, 512), ("large", 512, 64)),
    "3-stage small->med->large": (("small", 4096, 512), ("medium", 512, 128),
                                  ("large", 128, 64)),
}

#: Which measured row stands for each platform: the CPU in eager fp32, the GPU in its
#: fastest mode (whole stage in one CUDA graph, bf16).
SCHED_PLATFORMS = {"cpu": ("cpu", "eager", "fp32"), "gpu": ("cuda", "cuda-graph", "bf16")}

#: Host <-> device hand-over between platforms (PCIe): a survivor list of a few hundred
#: items' ids and dense features is tens of KB; charged as a fixed latency.
TRANSFER_US = 20.0


def _stage_rows(path=STAGE_BASELINES) -> dict:
    data = json.loads(Path(path).read_text())
    out = {}
    for r in data["rows"]:
        if "model" not in r or "error" in r:
            continue
        name = "medium" if r["model"] == "med" else r["model"]
        out[(r["device"], r["mode"], r["dtype"], name, r["items"], r["keep"])] = r
    return out, data["meta"]


def _batch_fn(rows):
    """Seconds a batch of b queries takes on a CPU / GPU segment (its stages back to back):
    per stage the one-query mean for b = 1 and the measured batched rates above, linear in
    between (`rpaccel.scripts.perf_report._batch_latency`)."""
    from .scripts.perf_report import _batch_latency

    fns = [_batch_latency({"mean_ms": r["mean_ms"], "batched": r.get("batched", [])})
           for r in rows]
    cap = min(b for _, b in fns)
    return (lambda b: sum(f(b) for f, _ in fns)), cap


def _accel_segment(stages, n_queries: int = 2) -> dict:
    """The accelerator (``paper``, its four engines shared by the segment's stages, the
    engine map the model picks) running a segment: service (s) and latency alone (s)."""
    from . import perf
    from .runtime import Accelerator
    from .workloads import design_config, workload_queries

    models, profile, _ = _stage_models("recpipe-criteo", None)
    cfg = design_config("paper", len(stages), {"engines": 4})
    batches = workload_queries("recpipe-criteo", None, n_queries, candidates=stages[0][1])

    def make(em):
        return Accelerator(cfg, [(models[m], k) for m, _, k in stages], profile,
                           cfg.static_rows * cfg.emb_dim, engine_map=em)

    choice = perf.best_engine_map(cfg, make, batches)
    pred = choice.prediction
    f = cfg.fclk_mhz * 1e6
    return {"service_s": max(perf.stage_service(pred)) / f,
            "latency_s": float(np.mean(pred.alone)) / f,
            "engine_map": list(choice.engine_map)}


def _tandem(segments, qps: float, n: int = 3000, seed: int = 0, warmup: float = 0.1,
            max_backlog_s: float = 1.0):
    """p95 (ms) of queries through ``segments`` in order under Poisson load: a CPU / GPU
    segment serves every query waiting for it, up to its largest measured batch, as one
    batch; the accelerator takes one query per service time, each done a latency after it
    starts. None when the load is not sustained."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / qps, n))
    arr0 = t.copy()
    for j, seg in enumerate(segments):
        if j:
            t = t + TRANSFER_US * 1e-6
        out = np.empty(n)
        if seg["kind"] == "accel":
            if seg["service_s"] >= 1.0 / qps:
                return None
            free = 0.0
            for i in range(n):
                start = max(t[i], free)
                free = start + seg["service_s"]
                out[i] = start + seg["latency_s"]
        else:
            f, cap = seg["batch"]
            if f(cap) >= cap / qps:
                return None
            i, clock = 0, 0.0
            while i < n:
                clock = max(clock, t[i])
                k = i + 1
                while k < n and k - i < cap and t[k] <= clock:
                    k += 1
                clock += f(k - i)
                out[i:k] = clock
                i = k
        t = np.maximum.accumulate(out)  # the next segment takes them in order
        if t[-1] - arr0[-1] > max_backlog_s:
            return None
    lat = (t - arr0)[int(warmup * n):]
    return round(float(np.percentile(lat, 95)) * 1000, 4)


def heterogeneous(loads=None, path=STAGE_BASELINES, log=print) -> dict:
    """RecPipe's scheduler: every mapping of each Criteo pipeline's stages onto CPU, GPU
    and RPAccel (a platform serves one run of consecutive stages: a mapping that returns
    to a platform is not considered), p95 at each load by `_tandem`, the best mapping per
    pipeline and load beside all-CPU, all-GPU and all-accelerator."""
    rows, meta = _stage_rows(path)
    loads = loads or PAPER_LOADS
    accel_cache = {}
    out = {"platforms": {**{k: "/".join(v) for k, v in SCHED_PLATFORMS.items()},
                         "rpaccel": "paper (4 engines, engine map by the model), 125 MHz"},
           "measured": {"date": meta.get("date"), "device": meta.get("cuda_device"),
                        "cpu": f"{meta.get('cpu_model')} x{meta.get('threads')}",
                        "torch": meta.get("torch")},
           "transfer_us": TRANSFER_US, "pipelines": {}}
    for pname, stages in SCHED_PIPELINES.items():
        maps = []
        for plats in itertools.product(("cpu", "gpu", "rpaccel"), repeat=len(stages)):
            runs = [p for i, p in enumerate(plats) if i == 0 or plats[i - 1] != p]
            if len(runs) != len(set(runs)):
                continue
            segs, i = [], 0
            while i < len(stages):
                j = i
                while j + 1 < len(stages) and plats[j + 1] == plats[i]:
                    j += 1
                seg = stages[i:j + 1]
                if plats[i] == "rpaccel":
                    if seg not in accel_cache:
                        log(f"heterogeneous: modelling the accelerator on {seg}")
                        accel_cache[seg] = _accel_segment(seg)
                    segs.append({"kind": "accel", **accel_cache[seg]})
                else:
                    dev = SCHED_PLATFORMS[plats[i]]
                    segs.append({"kind": plats[i],
                                 "batch": _batch_fn([rows[(*dev, m, a, k)] for m, a, k in seg])})
                i = j + 1
            p95 = {name: _tandem(segs, q) for name, q in loads.items()}
            maps.append({"mapping": list(plats), "p95_ms": p95})
        best = {}
        for name in loads:
            ok = [m for m in maps if m["p95_ms"][name] is not None]
            best[name] = min(ok, key=lambda m: m["p95_ms"][name]) if ok else None
        homog = {p: next(m for m in maps if set(m["mapping"]) == {p})
                 for p in ("cpu", "gpu", "rpaccel")}
        out["pipelines"][pname] = {"mappings": maps, "best": best, "all_cpu": homog["cpu"],
                                   "all_gpu": homog["gpu"], "all_rpaccel": homog["rpaccel"]}
    out["accelerator_segments"] = {" + ".join(f"{m}@{a}->{k}" for m, a, k in seg): v
                                   for seg, v in accel_cache.items()}
    return out


# ---- RTL spot checks ----------------------------------------------------------------------
def point_of(row: dict) -> Point:
    """The `Point` of a report row (its ``key``)."""
    d = json.loads(row["key"])
    d["pipeline"] = tuple(tuple(x) for x in d["pipeline"])
    d["engine_map"] = None if d["engine_map"] is None else tuple(d["engine_map"])
    return Point(**d)


def spot_check(point: Point, models_dir=None, queries: int = 2, workdir=None) -> dict:
    """Run ``point`` (its fitted configuration) on Verilator (the native testbench, model
    loaded by the loader from DRAM) and compare the cycle model with it: the first query's
    latency alone and the cycles of the whole back-to-back sequence. The answers are checked
    bit for bit against golden."""
    import tempfile

    from . import perf
    from .sim.native import build_native, problems, run_native

    cfg, acc = _fitted(point, models_dir)
    batches = _queries(point.workload, models_dir, queries, 0)
    pred = perf.predict(acc, batches, alone=False)
    t0 = time.perf_counter()
    nb = build_native(cfg)
    job = acc.job(batches)
    mt = run_native(nb, job, Path(workdir or tempfile.mkdtemp(prefix="rpaccel-dse-")))
    wrong = problems(job, mt)
    rows = {"latency": (pred.queries[0].latency, mt["latency"][0]),
            "total": (pred.total_cycles, mt["total_cycles"])}
    return {"key": point.key, "pipeline": point.pipeline_name, "config": cfg.to_dict(),
            "problems": wrong, "rtl_seconds": round(time.perf_counter() - t0, 1),
            **{f"{k}_model": m for k, (m, _) in rows.items()},
            **{f"{k}_rtl": r for k, (_, r) in rows.items()},
            **{f"{k}_error": round(m / r - 1, 5) for k, (m, r) in rows.items()}}
