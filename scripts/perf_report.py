"""The performance model at work: calibration against Verilator (``rpaccel bench perf``),
the paper-scale report (``rpaccel perf``), load curves and plots.

Everything here reads `rpaccel.perf`'s model of an `rpaccel.runtime.Accelerator`; the
RTL side runs the generated top level through `Accelerator.simulate`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import perf
from ..config import get_config

__all__ = ["CalCase", "CALIBRATION", "criteo_accelerator", "case_accelerator", "bench_perf",
           "config_tradeoffs",
           "perf_rows", "report", "write_plots", "TOLERANCE"]

#: Largest relative model error the calibration accepts (latency and throughput).
TOLERANCE = 0.05


@dataclass(frozen=True)
class CalCase:
    """One calibration point: a config, a model set and the queries run back to back.

    ``kind`` "ml": trained MovieLens models (``pipeline`` "small:16,large:10", ``sizes``
    ignored: ``queries`` users of 100 candidates); "criteo": random Criteo-shaped models
    with ``tables`` tables, one interaction per stage from ``inter`` (cycled), bags of
    ``bag`` ids, k per stage ``ks`` (default by stages) and queries of ``sizes``
    candidates. ``engine_map``: the stage of each engine (default: the config's).
    """

    config: str
    kind: str
    pipeline: str = ""
    queries: int = 2
    tables: int = 3
    inter: str = "dot"
    bag: int = 1
    sizes: tuple = (64, 100)
    ks: tuple = ()
    seed: int = 0
    candidates: int = 100
    engine_map: tuple = ()

    @property
    def name(self) -> str:
        emap = (" map " + ",".join("-" if s is None else str(s) for s in self.engine_map)
                if self.engine_map else "")
        if self.kind == "ml":
            return (f"ml100k {self.pipeline or 'default'} x{self.queries}"
                    + (f" of {self.candidates}" if self.candidates != 100 else "") + emap)
        return (f"criteo {self.tables}t {self.inter} bag{self.bag} "
                f"{'/'.join(map(str, self.sizes))}" + (f" k{'/'.join(map(str, self.ks))}"
                                                       if self.ks else "") + emap)


#: The calibration set of ``rpaccel bench perf``: seven configs, trained and random models,
#: 2 to 8 tables, ``dot`` and ``cat``, 40 to 128 candidates, the quality table's
#: 1,000-candidate MovieLens queries, and stages sharing engines (two-engine,
#: shared-engines).
CALIBRATION = (
    CalCase("default", "ml", "small:16,large:10", queries=3),
    CalCase("default", "ml", "small:32,large:10", queries=2),
    CalCase("default", "criteo", tables=2, inter="dot", bag=1, sizes=(64, 100, 40)),
    CalCase("default", "criteo", tables=3, inter="dot,cat", bag=2, sizes=(40, 128, 70)),
    CalCase("default", "criteo", tables=5, inter="cat", bag=2, sizes=(100, 77, 128)),
    CalCase("default", "criteo", tables=8, inter="dot", bag=1, sizes=(128, 50, 90)),
    CalCase("baseline", "ml", "large:10", queries=2),
    CalCase("baseline", "criteo", tables=4, inter="dot", bag=2, sizes=(128, 60, 100)),
    CalCase("baseline", "criteo", tables=8, inter="cat", bag=1, sizes=(90, 128)),
    CalCase("three-stage", "ml", "", queries=2),
    CalCase("three-stage", "criteo", tables=3, inter="dot,cat", bag=2, sizes=(128, 100, 50)),
    CalCase("three-stage", "criteo", tables=6, inter="dot", bag=2, sizes=(128, 64)),
    CalCase("fpga-ecp5", "ml", "small:16,medium:10", queries=3),
    CalCase("fpga-ecp5", "criteo", tables=4, inter="cat,dot", bag=2, sizes=(64, 128)),
    CalCase("ml1000", "ml", "small:32,large:10", queries=2, candidates=1000),
    CalCase("two-engine", "ml", "large:10", queries=2),
    CalCase("shared-engines", "ml", "small:32,large:10", queries=2, engine_map=(0, 0, 1, 1)),
    CalCase("shared-engines", "criteo", tables=3, inter="dot,cat", bag=2, sizes=(128, 100, 70)),
)


def criteo_accelerator(cfg, tables: int, inter: str = "dot", bag: int = 1, ks=(),
                       seed: int = 0, engine_map=None, dims=(8, 16, 16)):
    """An `Accelerator` of random Criteo-shaped stage models (13 dense features,
    ``tables`` Zipf tables of 30-400 rows, bottom 13-16-d, top 24 wide, d = ``dims`` per
    stage, interactions from ``inter`` cycled; ``engine_map`` as the runtime's) and a
    query maker ``sizes -> batches``."""
    from ..golden.data import criteo_synthetic
    from ..golden.quantize import quantize_model
    from ..golden.zoo import ModelSize, random_model
    from ..runtime import Accelerator

    rows = [int(r) for r in np.random.default_rng(seed + tables).integers(30, 400, tables)]
    ks = tuple(ks) or {1: (10,), 2: (16, 10), 3: (16, 12, 10)}[cfg.stages]
    inters = inter.split(",")
    stages = []
    for s, k in enumerate(ks):
        d = dims[s]
        model = random_model(ModelSize(f"c{s}", d, (16,), (24,)), 13, rows,
                             inters[s % len(inters)], seed=seed + s)
        calib = criteo_synthetic(300, rows, seed=seed + 10 + s, bag_size=bag)
        stages.append((quantize_model(model, calib), k))
    prof = criteo_synthetic(300, rows, seed=seed + 20, bag_size=bag)
    acc = Accelerator(cfg, stages, prof, static_bytes=256, engine_map=engine_map)

    def queries(sizes):
        return [criteo_synthetic(n, rows, seed=seed + 30 + i, bag_size=bag)
                for i, n in enumerate(sizes)]

    return acc, queries


def case_accelerator(case: CalCase, models_dir=None, ml=None, config=None):
    """``(accelerator, batches)`` of a calibration case (on ``config`` when given, else on
    the case's)."""
    from ..runtime import Accelerator, parse_stages

    cfg = config or get_config(case.config)
    if case.kind == "ml":
        from ..golden.data import load_ml100k

        ml = ml or load_ml100k()
        pipe = parse_stages(case.pipeline) if case.pipeline else None
        acc = Accelerator.from_models(cfg, models_dir, pipeline=pipe, ml=ml,
                                      engine_map=case.engine_map or None)
        return acc, [b for b, _ in acc.movielens_queries(ml, case.queries, seed=case.seed + 1,
                                                         candidates=case.candidates)]
    acc, queries = criteo_accelerator(cfg, case.tables, case.inter, case.bag, case.ks,
                                      case.seed, engine_map=case.engine_map or None)
    return acc, queries(case.sizes)


def compare(case_name: str, config: str, pred: perf.Prediction, run) -> list[dict]:
    """Rows model vs RTL: a query alone (the first, on an idle machine) and back to back
    (cycles per query from the first header to the last result beat)."""
    n = len(pred.queries)
    pairs = (("latency", pred.queries[0].latency, run.latency[0]),
             ("throughput", pred.total_cycles / n, run.total_cycles / n))
    rows = []
    for metric, model, rtl in pairs:
        rows.append({"config": config, "case": case_name, "metric": metric,
                     "model_cycles": round(float(model), 1), "rtl_cycles": round(float(rtl), 1),
                     "error": round((model - rtl) / rtl, 5)})
    return rows


def bench_perf(cases=CALIBRATION, models_dir=None, workdir=None, log=print) -> dict:
    """Model against Verilator on ``cases`` (no idle gaps, backpressure or DRAM stalls:
    the conditions the model describes). Returns ``{"rows", "within", "max_error"}``."""
    import tempfile

    from ..golden.data import load_ml100k

    ml = load_ml100k() if any(c.kind == "ml" for c in cases) else None
    rows = []
    workdir = Path(workdir or tempfile.mkdtemp(prefix="rpaccel-perf-"))
    for i, case in enumerate(cases):
        t0 = time.time()
        acc, batches = case_accelerator(case, models_dir, ml)
        pred = perf.predict(acc, batches, alone=False)
        t1 = time.time()
        run, (tests, failed) = acc.simulate(batches, workdir=workdir / f"case{i}",
                                            load="stream")
        if (tests, failed) != (1, 0) or run.mismatches:
            raise RuntimeError(f"{case.name} on {case.config}: the RTL run failed "
                               f"({failed} failures, {run.mismatches} mismatches)")
        new = compare(case.name, case.config, pred, run)
        for r in new:
            r.update(model_s=round(t1 - t0, 2), rtl_s=round(time.time() - t1, 1))
            log(json.dumps(r))
        rows += new
    worst = max(abs(r["error"]) for r in rows)
    return {"bench": "perf", "rows": rows, "max_error": worst,
            "within": worst <= TOLERANCE, "tolerance": TOLERANCE,
            "configs": sorted({r["config"] for r in rows})}


def config_tradeoffs(config: str = "fpga-ecp5", against: str = "default", cases=None,
                     models_dir=None, log=print) -> dict:
    """What each field in which ``config`` differs from ``against`` costs in cycles, by the
    performance model: ``against``, then ``against`` with each such field changed alone,
    then ``config``, on ``cases`` (default: ``config``'s calibration cases). Each row:
    the change, per case the latency of the first query and cycles per query back to back,
    and their change against ``against`` in percent."""
    import dataclasses

    from ..golden.data import load_ml100k

    cfg, ref = get_config(config), get_config(against)
    cases = cases or [c for c in CALIBRATION if c.config == config]
    changed = [f.name for f in dataclasses.fields(cfg)
               if f.name != "name" and getattr(cfg, f.name) != getattr(ref, f.name)]
    variants = [(against, ref)]
    for f in changed:
        try:
            variants.append((f"{f}={getattr(cfg, f)}", ref.replace(**{f: getattr(cfg, f)})))
        except ValueError as e:  # a field valid only with another change (say so)
            log(f"config tradeoffs: {f} alone is not a valid config ({e})")
    variants.append((config, cfg))
    ml = load_ml100k() if any(c.kind == "ml" for c in cases) else None
    rows = []
    for label, vcfg in variants:
        row = {"change": label, "cases": {}}
        for case in cases:
            acc, batches = case_accelerator(case, models_dir, ml, config=vcfg)
            pred = perf.predict(acc, batches, alone=False)
            row["cases"][case.name] = {
                "latency": int(pred.queries[0].latency),
                "cycles_per_query": round(pred.total_cycles / len(pred.queries), 1)}
        rows.append(row)
        log(json.dumps(row))
    base = rows[0]["cases"]
    for row in rows:
        for name, v in row["cases"].items():
            for k in ("latency", "cycles_per_query"):
                v[f"{k}_change_pct"] = round(100 * (v[k] / base[name][k] - 1), 2)
    return {"bench": "fit", "config": config, "against": against, "fields": changed,
            "cases": [c.name for c in cases], "rows": rows,
            "note": "performance model cycles (rpaccel.perf), the calibration cases of "
                    f"{config}; fields with no cycle cost (buffer depths, top-k capacity, "
                    "the clock) show 0"}


# ---- the paper-scale report --------------------------------------------------------------
def _macs(acc, pred: perf.Prediction) -> float:
    """Useful MACs per query (MLP layers and the interaction's products)."""
    total = 0
    for q in pred.queries:
        for st, (m, _k) in zip(q.stages, acc.stages, strict=True):
            total += st["items"] * m.macs_per_item()
    return total / len(pred.queries)


def perf_rows(workload: str, designs=None, n_queries: int = 4, models_dir=None,
              rows: int | None = None, progress=None, candidates: int | None = None,
              overrides=None) -> list[dict]:
    """Model figures of every pipeline of ``workload`` on every design: latency of a
    query alone, throughput back to back, the compute limit (MACs / (R x C) cycles),
    the bottleneck and the per-unit breakdown."""
    from ..workloads import DESIGNS, PIPELINES, workload_accelerator, workload_queries

    out = []
    for design in designs or DESIGNS:
        for pipe, spec in PIPELINES[workload].items():
            if design == "paper-baseline" and len(spec) != 1:
                continue
            acc = workload_accelerator(workload, design, pipe, models_dir, rows=rows,
                                       overrides=overrides)
            batches = workload_queries(workload, acc, n_queries, rows=rows,
                                       candidates=candidates)
            tried = None
            if acc.config.engine_count > acc.config.stages:
                # more engines than stages: the model picks the engine map

                def make(em, design=design, pipe=pipe):
                    return workload_accelerator(workload, design, pipe, models_dir, rows=rows,
                                                overrides=overrides, engine_map=em)

                choice = perf.best_engine_map(acc.config, make, batches)
                acc, pred, tried = choice.acc, choice.prediction, choice.table
            else:
                pred = perf.predict(acc, batches)
            out.append(_row(workload, design, pipe, acc, pred))
            if tried:
                out[-1]["engine_maps_tried"] = tried
            if progress:
                progress(out[-1])
    return out


def _row(workload, design, pipe, acc, pred) -> dict:
    cfg = acc.config
    f = cfg.fclk_mhz
    macs = _macs(acc, pred)
    alone = float(np.mean(pred.alone))
    n = len(pred.queries)
    stages = []
    for s, (m, k) in enumerate(acc.stages):
        per = [q.stages[s] for q in pred.queries]
        eng = {f"engine_{k_}": float(np.mean([p["engine"][k_] for p in per]))
               for k_ in ("cycles", "mlp", "interaction", "reload", "fixed")}
        emb = {k_: float(np.mean([p["emb"][k_] for p in per])) for k_ in per[0]["emb"]}
        stages.append({"stage": s, "model": m.name, "keep": k,
                       "items": float(np.mean([p["items"] for p in per])),
                       "gather_cycles": float(np.mean([p["gather"] for p in per])),
                       **eng, "topk_drain": float(np.mean([p["topk_drain"] for p in per])),
                       "embedding": emb,
                       "partition_cols": cfg.array_cols >> (cfg.partitions.bit_length() - 1),
                       "engines": acc.engine_map.count(s)})
    util = pred.utilization()
    return {"workload": workload, "design": design, "config": cfg.name, "pipeline": pipe,
            "engine_map": ["-" if x is None else x for x in acc.engine_map],
            "queries": n, "fclk_mhz": f,
            "latency_cycles": alone, "latency_us": round(alone / f, 2),
            "cycles_per_query": pred.cycles_per_query, "interval_cycles": pred.interval,
            "qps": round(f * 1e6 / pred.interval, 1),
            "macs_per_query": macs,
            "compute_limit_us": round(macs / (cfg.array_rows * cfg.array_cols) / f, 2),
            "bottleneck": pred.bottleneck, "utilization": util, "stages": stages,
            "service_cycles": perf.stage_service(pred),
            "stage_latency_cycles": perf.stage_latency(pred), "limit": pred.limit}


# ---- plots ------------------------------------------------------------------------------
def write_plots(report: dict, out_dir) -> list[str]:
    """PNG figures of a report (``rpaccel perf`` JSON): the latency breakdown per unit, p95
    latency against offered load per design, and (with calibration rows) model vs RTL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    rows = report.get("rows", [])
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.6))
        parts = ("engine_mlp", "engine_interaction", "engine_reload", "engine_fixed")
        labels = ("array (MLP tiles)", "interaction unit", "weight reload",
                  "fixed (drains, start)")
        colors = ("#4c72b0", "#dd8452", "#c44e52", "#8c8c8c")
        names = [f"{r['design']}: {r['pipeline']}" for r in rows]
        for i, r in enumerate(rows):
            left = 0.0
            for s in r["stages"]:
                for p, c in zip(parts, colors, strict=True):
                    w = s[p] / r["fclk_mhz"]
                    ax.barh(i, w, left=left, color=c, edgecolor="white", linewidth=0.5)
                    left += w
            ax.plot([r["compute_limit_us"]], [i], "k|", markersize=14)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
        ax.legend(handles + [plt.Line2D([], [], color="k", marker="|", ls="", ms=12)],
                  list(labels) + ["compute limit"], loc="lower right", fontsize=8)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.set_xlabel("engine time per query, all stages (us at the config's clock)")
        ax.set_title(f"{report.get('workload', '')}: where a query's time goes (model)")
        fig.tight_layout()
        f = out_dir / f"perf-breakdown-{report.get('workload', 'x')}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(str(f))
    curves = [c for c in report.get("load", []) if c.get("plot", True)]
    if curves:
        pipes = list(dict.fromkeys(c["pipeline"] for c in curves))
        fig, axes = plt.subplots(1, len(pipes), figsize=(4.6 * len(pipes), 4.4), sharey=True,
                                 squeeze=False)
        for ax, pipe in zip(axes[0], pipes, strict=True):
            for c in (c for c in curves if c["pipeline"] == pipe):
                pts = [p for p in c["points"] if p["p95_ms"] is not None]
                if pts:
                    ax.plot([p["qps"] for p in pts], [p["p95_ms"] for p in pts],
                            ls="-" if c["kind"].startswith("accel") else "--", marker="o",
                            ms=2.5, label=c["label"].split(": ")[0])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(pipe, fontsize=10)
            ax.set_xlabel("offered load (QPS, Poisson)")
            ax.axhline(10, color="grey", ls=":", lw=1)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("p95 latency (ms)")
        fig.suptitle(f"{report.get('workload', '')}: p95 latency vs load (accelerator: model; "
                     "CPU / GPU: measured service times)", fontsize=10)
        fig.tight_layout()
        f = out_dir / f"perf-load-{report.get('workload', 'x')}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(str(f))
    cal = report.get("calibration", [])
    if cal:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for metric, mk in (("latency", "o"), ("throughput", "s")):
            pts = [r for r in cal if r["metric"] == metric]
            ax.scatter([r["rtl_cycles"] for r in pts], [r["model_cycles"] for r in pts],
                       marker=mk, s=18, label=metric)
        lo = min(r["rtl_cycles"] for r in cal) * 0.8
        hi = max(r["rtl_cycles"] for r in cal) * 1.2
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="grey",
                        alpha=0.2, label="+-5%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("RTL cycles (Verilator)")
        ax.set_ylabel("model cycles")
        ax.legend(fontsize=8)
        ax.set_title("performance model vs RTL")
        fig.tight_layout()
        f = out_dir / "perf-calibration.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(str(f))
    return files


# ---- the whole report -------------------------------------------------------------------
#: The RecPipe artifact's own figures (ANCHORS.md): its analytic model's latency of a query
#: alone and the p95 latency of its example logs at the paper's three loads (ms; None: not
#: reached).
ARTIFACT = {
    "1-stage large": {"model_latency_ms": 2.09, "units": "one 128x128 unit",
                      "p95_ms": {"low": 2.5, "medium": 13.95, "high": None}},
    "2-stage small->large": {"model_latency_ms": 1.39, "units": "two 64x64 units",
                             "p95_ms": {"low": 1.91, "medium": 2.88, "high": 6.33}},
    "3-stage small->med->large": {"model_latency_ms": None, "units": "",
                                  "p95_ms": {"low": 2.17, "medium": 3.41, "high": 6.32}},
}

#: The paper's loads: mean gaps of 15 / 2.5 / 0.5 ms between Poisson arrivals.
PAPER_LOADS = {"low": 1000 / 15, "medium": 1000 / 2.5, "high": 1000 / 0.5}

#: PyTorch baselines measured by `rpaccel.scripts.baselines` (one H200 and its host's CPU).
BASELINES_JSON = Path(__file__).resolve().parent.parent / "docs" / "reports" / \
    "baselines-h200.json"


def alternatives(path=BASELINES_JSON) -> list[dict]:
    """The measured CPU / GPU rows: one query at a time (p50 / p95) and batched QPS with
    the GPU's board power."""
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    out = []
    for r in data["rows"]:
        if "error" in r:
            continue
        best = max(r.get("batched", []), key=lambda b: b["qps"], default={})
        out.append({"pipeline": r["pipeline"], "device": r["device"], "mode": r["mode"],
                    "dtype": r["dtype"], "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"],
                    "mean_ms": r["mean_ms"], "batched": r.get("batched", []),
                    "best_qps": best.get("qps"), "best_batch": best.get("batch"),
                    "power_w": best.get("power_w"), "qps_per_w": best.get("qps_per_w"),
                    "host": f"{data['meta'].get('cuda_device') or ''} / "
                            f"{data['meta'].get('cpu_model')} x{data['meta'].get('threads')}",
                    "date": data["meta"]["date"], "torch": data["meta"]["torch"]})
    return out


def _batch_latency(alt: dict):
    """Seconds a batch of b queries takes: the one-query mean for b = 1, the measured
    batched rates above, linear in between (and flat beyond the largest batch)."""
    pts = [(1, alt["mean_ms"] / 1000)] + [(b["batch"], b["batch"] / b["qps"])
                                          for b in alt["batched"]]
    xs, ys = zip(*sorted(pts), strict=True)

    def f(b):
        if b >= xs[-1]:
            return ys[-1] * b / xs[-1]
        return float(np.interp(b, xs, ys))

    return f, xs[-1]


def saturation_qps(latency_at, target_ms: float = 10.0, lo: float = 1.0,
                   hi: float = 1e6) -> float:
    """The highest offered load whose p95 stays under ``target_ms`` (bisection on a log
    scale over ``latency_at(qps) -> {"p95_ms": ...}``)."""
    ok = lambda q: (lambda r: r["p95_ms"] is not None and r["p95_ms"] <= target_ms)(  # noqa: E731
        latency_at(q))
    if not ok(lo):
        return 0.0
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        if hi / lo < 1.01:
            break
    return round(lo, 1)


def _load_grid(max_qps: float) -> list[float]:
    return [round(float(q), 1) for q in np.geomspace(5, max_qps, 24)]


#: Issue 16's targets on RecPipe's workload: the 2-stage pipeline on ``paper`` (model).
TARGETS = {"pipeline": "2-stage small->large", "latency_us": 150.0, "qps": 6000.0,
           "latency_x_baseline": 4.0, "qps_x_baseline": 8.0, "qps_per_w_x_gpu": 20.0,
           "chip_w": 4.66, "pair_growth": 0.25}

#: Interaction units of `pair_growth`: (label, inter_pairs, inter_slots, inter_banks).
GROWTH_UNITS = (("default's unit: 1 product, 2 memories", 1, 1, 2),
                ("4 products x 2 slots, 4 memories", 4, 2, 4),
                ("2 products x 4 slots, 4 memories", 2, 4, 4))


def pair_growth(tables=(2, 8, 26), items: int = 64, units=GROWTH_UNITS) -> dict:
    """Cycles per item of an RM-small-shaped stage (rows of 4, bottom 13-64-4, top
    (4 + pairs)-64-1, ``dot``) on an 8x8 one-stage, one-partition build, by the engine
    model (exact against the engine on Verilator), against its MAC limit (its MLPs' MACs
    / 64: the array's share; the pairs' products are the interaction unit's),
    for each table count and interaction unit; ``per_pair``: the cycles beyond the limit
    added per ``dot`` pair from the first table count to the second."""
    from ..golden.data import criteo_synthetic
    from ..golden.quantize import quantize_model
    from ..golden.zoo import ModelSize, random_model
    from ..interface import lanes, slot_width
    from ..program import compile_stage

    base = get_config("default").replace(name="pair-growth", stages=1, partitions=1,
                                         engines=0, max_pairs=512,
                                         emb_tables=max(tables))
    rows = {}
    for n in tables:
        sizes = [100] * n
        model = random_model(ModelSize("rm-small", 4, (64,), (64,)), 13, sizes, "dot", seed=n)
        rows[n] = quantize_model(model, criteo_synthetic(200, sizes, seed=n + 1))
    out = {"items": items, "array": "8x8", "tables": list(tables), "units": []}
    for label, p, q, b in units:
        cfg = base.replace(inter_pairs=p, inter_slots=q, inter_banks=b)
        eng = perf.EngineTiming(cfg.array_rows, cfg.array_cols, p, lanes(cfg), q, b)
        per_item, limit, pairs = [], [], []
        for n in tables:
            steps = compile_stage(cfg, slot_width(cfg, 0), 0, rows[n]).steps
            per_item.append(eng.run(steps, items)["cycles"] / items)
            fm = rows[n].float_model
            macs = sum(w.size for w, _ in fm.bot) + sum(w.size for w, _ in fm.top)
            limit.append(macs / (cfg.array_rows * cfg.array_cols))
            pairs.append((n + 1) * n // 2)
        slope = ((per_item[1] - limit[1]) - (per_item[0] - limit[0])) / (pairs[1] - pairs[0])
        out["units"].append({"unit": label, "inter_pairs": p, "inter_slots": q,
                             "inter_banks": b, "cycles_per_item": per_item,
                             "mac_limit": limit, "per_pair": round(slope, 3)})
    return out


def targets(rep: dict) -> dict | None:
    """Issue 16's targets measured in ``rep`` (`report` on ``recpipe-criteo``, the design
    and its baseline): the 2-stage pipeline's latency alone and throughput; both against
    the baseline's 1-stage pipeline (iso-quality as RecPipe takes it, not measured here);
    p95 under Poisson load against the H200's fastest mode (CUDA graphs, bf16, one query
    at a time and batched) at every load of the sweep the accelerator sustains; queries
    per second per watt at the artifact's GF12 chip power against the GPU's measured
    board power. ``met`` per target; None without the rows it needs."""
    t = TARGETS
    rows = {(r["design"], r["pipeline"]): r for r in rep["rows"]}
    designs = list(dict.fromkeys(r["design"] for r in rep["rows"]))
    if len(designs) < 2 or (designs[0], t["pipeline"]) not in rows:
        return None
    acc = rows[(designs[0], t["pipeline"])]
    base = next((r for r in rep["rows"] if r["design"] == designs[1]), None)
    gpu = [a for a in rep["alternatives"] if a["device"] == "cuda" and
           a["pipeline"] == t["pipeline"]]
    out = {"pipeline": t["pipeline"], "design": designs[0],
           "latency_us": {"value": acc["latency_us"], "goal": f"<= {t['latency_us']:g}",
                          "met": acc["latency_us"] <= t["latency_us"]},
           "qps": {"value": acc["qps"], "goal": f">= {t['qps']:g}",
                   "met": acc["qps"] >= t["qps"]}}
    if base:
        lx, qx = base["latency_us"] / acc["latency_us"], acc["qps"] / base["qps"]
        out["latency_x_baseline"] = {"value": round(lx, 2), "against": base["design"],
                                     "goal": f">= {t['latency_x_baseline']:g}",
                                     "met": lx >= t["latency_x_baseline"]}
        out["qps_x_baseline"] = {"value": round(qx, 2), "against": base["design"],
                                 "goal": f">= {t['qps_x_baseline']:g}",
                                 "met": qx >= t["qps_x_baseline"]}
    if gpu:
        best = max(gpu, key=lambda a: a["qps_per_w"] or 0)
        ratio = acc["qps"] / t["chip_w"] / best["qps_per_w"]
        out["qps_per_w_x_gpu"] = {"value": round(ratio, 2), "goal": f">= "
                                  f"{t['qps_per_w_x_gpu']:g}",
                                  "accelerator_qps_per_w": round(acc["qps"] / t["chip_w"], 1),
                                  "gpu": f"{best['mode']} {best['dtype']}",
                                  "gpu_qps_per_w": best["qps_per_w"],
                                  "met": ratio >= t["qps_per_w_x_gpu"]}
        curves = {c["label"]: c["points"] for c in rep["load"]}
        mine = curves.get(f"{designs[0]}: {t['pipeline']}", [])
        worse = []
        for label in (f"cuda cuda-graph bf16: {t['pipeline']}",
                      f"cuda cuda-graph bf16 batched: {t['pipeline']}"):
            theirs = {p["qps"]: p["p95_ms"] for p in curves.get(label, [])}
            worse += [{"qps": p["qps"], "p95_ms": p["p95_ms"], "gpu": label,
                       "gpu_p95_ms": theirs.get(p["qps"])}
                      for p in mine if not p["saturated"] and theirs.get(p["qps"]) is not None
                      and p["p95_ms"] >= theirs[p["qps"]]]
        loads = {w["qps"] for w in worse}
        sustained = sum(not p["saturated"] for p in mine)
        out["p95_below_gpu"] = {"value": f"not below at {len(loads)} of {sustained} "
                                         "sustained loads",
                                "goal": "below the H200 (CUDA graphs, bf16) at every load "
                                        "the accelerator sustains",
                                "first_not_below": worse[:2], "met": not worse}
    growth = pair_growth()
    best = min(growth["units"], key=lambda u: u["per_pair"])
    out["pair_growth_8x8"] = {"value": best["per_pair"], "unit": best["unit"],
                              "goal": f"<= {t['pair_growth']:g} cycles per pair",
                              "units": {u["unit"]: u["per_pair"] for u in growth["units"]},
                              "met": best["per_pair"] <= t["pair_growth"]}
    return out


def report(workload: str = "recpipe-criteo", design: str = "paper",
           baseline: str | None = "paper-baseline", n_queries: int = 4, models_dir=None,
           rows: int | None = None, target_ms: float = 10.0, n_load: int = 3000,
           progress=None, candidates: int | None = None, overrides=None) -> dict:
    """Everything ``rpaccel perf`` prints: model rows per design and pipeline, the CPU /
    GPU measurements and the artifact's figures beside them, p50 / p95 / p99 under Poisson
    load per design and pipeline (the paper's three loads and a sweep), the saturation
    throughput at a p95 target."""
    import datetime
    import platform

    designs = [design] + ([baseline] if baseline else [])
    acc_rows = perf_rows(workload, designs, n_queries, models_dir, rows, progress, candidates,
                         overrides)
    alts = alternatives() if workload == "recpipe-criteo" else []
    curves, paper_loads = [], []
    top = max([r["qps"] for r in acc_rows] + [a["best_qps"] or 0 for a in alts]) * 3
    grid = _load_grid(top)
    for r in acc_rows:
        lat = lambda q, r=r: perf.queueing(r["service_cycles"], r["stage_latency_cycles"],  # noqa: E731
                                           r["limit"], q, r["fclk_mhz"], n=n_load)
        label = f"{r['design']}: {r['pipeline']}"
        curves.append({"label": label, "kind": "accelerator (model)",
                       "pipeline": r["pipeline"],
                       "points": [{"qps": q, **lat(q)} for q in grid]})
        r["saturation_qps_p95"] = saturation_qps(lat, target_ms)
        paper_loads.append({"system": label, **{k: lat(q)["p95_ms"]
                                                 for k, q in PAPER_LOADS.items()}})
    for a in alts:
        f, bmax = _batch_latency(a)
        for batched in (False, True):
            if batched and not a["batched"]:
                continue
            mb = bmax if batched else 1
            lat = lambda q, f=f, mb=mb: perf.batch_queueing(f, mb, q, n=n_load)  # noqa: E731
            label = (f"{a['device']} {a['mode']} {a['dtype']}"
                     f"{' batched' if batched else ''}: {a['pipeline']}")
            # the plot keeps the CPU batched, the GPU eager one at a time and the fastest
            # GPU mode batched; every curve is in the JSON
            shown = (a["device"] == "cpu" and batched) or (
                a["device"] == "cuda" and ((a["mode"] == "eager" and not batched) or
                                           (a["mode"] == "cuda-graph" and a["dtype"] == "bf16"
                                            and batched)))
            curves.append({"label": label, "kind": "measured service times",
                           "pipeline": a["pipeline"], "plot": shown,
                           "points": [{"qps": q, **lat(q)} for q in grid]})
            a[f"saturation_qps_p95{'_batched' if batched else ''}"] = saturation_qps(
                lat, target_ms)
            paper_loads.append({"system": label, **{k: lat(q)["p95_ms"]
                                                     for k, q in PAPER_LOADS.items()}})
    if workload == "recpipe-criteo":
        for pipe, art in ARTIFACT.items():
            paper_loads.append({"system": f"RecPipe artifact logs: {pipe}", **art["p95_ms"]})
    rep = {"workload": workload, "date": datetime.date.today().isoformat(),
           "host": platform.node(), "python": platform.python_version(),
           "model": "rpaccel.perf event model, calibrated against Verilator "
                    "(rpaccel bench perf)",
           "p95_target_ms": target_ms, "overrides": overrides or {}, "rows": acc_rows,
           "alternatives": alts,
           "artifact": ARTIFACT if workload == "recpipe-criteo" else {},
           "paper_loads_qps": PAPER_LOADS, "paper_loads_p95_ms": paper_loads,
           "load": curves}
    if workload == "recpipe-criteo":
        rep["targets"] = targets(rep)
    return rep
