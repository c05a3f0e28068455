"""Workloads of the performance report: RecPipe's Criteo pipelines at the paper's scale and
MovieLens-100k's quality-table queries, as `rpaccel.runtime.Accelerator` objects and query
batches.

RecPipe's models (ANCHORS.md, the artifact's ``configs/model_configs``): 13 dense
features, 26 tables, ``dot`` interaction of 27 features (351 pairs); RM-small (dim 4,
bottom 13-64-4, top 355-64-1), RM-med (dim 16, 13-64-16, 367-64-1), RM-large (dim 32,
13-512-256-128-64-32, 383-96-1). Weights are random (timing does not depend on their
values), quantized to int8 on synthetic Criteo-shaped data; ids are Zipf-distributed
(`rpaccel.golden.data.criteo_synthetic`), the static caches pinned from a profile of
other items of the same distribution.
"""

from __future__ import annotations

from functools import lru_cache

from .config import RPAccelConfig, get_config

__all__ = ["WORKLOADS", "PIPELINES", "design_config", "workload_accelerator",
           "workload_queries", "DESIGNS", "criteo_shaped", "CRITEO_SHAPED_ROWS",
           "recpipe_shapes"]

#: Stage model and k per stage of each pipeline, per workload (the last k is the answer).
PIPELINES = {
    "recpipe-criteo": {
        "1-stage large": (("large", 64),),
        "2-stage small->large": (("small", 512), ("large", 64)),
        "3-stage small->med->large": (("small", 512), ("medium", 128), ("large", 64)),
    },
    "ml100k": {
        "1-stage large": (("large", 10),),
        "2-stage small->large": (("small", 100), ("large", 10)),
        "3-stage small->med->large": (("small", 300), ("medium", 100), ("large", 10)),
    },
}

#: Candidates per query and the embedding-table rows of each workload.
WORKLOADS = {
    "recpipe-criteo": {"candidates": 4096, "rows": 100_000, "tables": 26},
    "ml100k": {"candidates": 1000},
}

#: Designs the report compares: the accelerator and the artifact's TPU-like baseline.
DESIGNS = ("paper", "paper-baseline")


def design_config(design: str, stages: int, overrides=None) -> RPAccelConfig:
    """The config a design runs an ``stages``-stage pipeline on: ``paper`` with one array
    partition per stage (the partition count rounded up to 1, 2 or 4; with ``engines``
    set, its partitions and engines as they are, shared by the stages through the engine
    map), or ``paper-baseline`` (one stage only); ``overrides`` (field -> value) change
    the named config first (validated like any config)."""
    cfg = get_config(design)
    if design == "paper-baseline" and overrides:
        # one partition: one engine, whatever the design under test shares
        overrides = {k: v for k, v in overrides.items() if k != "engines"}
    if overrides:
        cfg = cfg.replace(**overrides)
    if design == "paper-baseline":
        if stages != 1:
            raise ValueError(f"stages must be 1 on paper-baseline, not {stages!r}")
        return cfg
    if cfg.engines:
        # engines set: the partitions stay, the stages share the engines (engine map)
        return cfg.replace(name=f"{cfg.name}-{stages}stage", stages=stages)
    parts = 1 if stages == 1 else (2 if stages == 2 else 4)
    return cfg.replace(name=f"{cfg.name}-{stages}stage", stages=stages, partitions=parts)


@lru_cache(maxsize=4)
def _criteo_models(rows: int, tables: int, seed: int = 0):
    from .golden.data import criteo_synthetic
    from .golden.quantize import quantize_model
    from .golden.zoo import SIZES, random_model

    table_rows = [rows] * tables
    calib = criteo_synthetic(2000, table_rows, seed=seed + 1, hot_seed=7)
    out = {}
    for i, name in enumerate(("small", "medium", "large")):
        model = random_model(SIZES[name], 13, table_rows, "dot", seed=seed + 10 + i)
        out[name] = quantize_model(model, calib)
    profile = criteo_synthetic(20_000, table_rows, seed=seed + 2, hot_seed=7)
    return out, profile


def workload_accelerator(workload: str, design: str, pipeline: str, models_dir=None,
                         rows: int | None = None, overrides=None, engine_map=None):
    """An `Accelerator` of ``design`` loaded with ``pipeline`` of ``workload``.

    ``rows`` overrides the Criteo table rows (tests use small tables). The static caches
    get the whole ``static_rows`` budget, except on ``paper-baseline`` (no embedding
    cache: nothing pinned, a one-line dynamic cache). ``engine_map``: the stage of each
    engine (`rpaccel.runtime.Accelerator`).
    """
    from .runtime import Accelerator

    spec = PIPELINES[workload][pipeline]
    cfg = design_config(design, len(spec), overrides)
    static_bytes = 0 if design == "paper-baseline" else cfg.static_rows * cfg.emb_dim
    if workload == "recpipe-criteo":
        w = WORKLOADS[workload]
        models, profile = _criteo_models(rows or w["rows"], w["tables"])
        return Accelerator(cfg, [(models[m], k) for m, k in spec], profile, static_bytes,
                           engine_map=engine_map)
    if models_dir is None:
        raise ValueError("models_dir is needed for the ml100k workload (make models)")
    return Accelerator.from_models(cfg, models_dir, pipeline=spec, static_bytes=static_bytes,
                                   engine_map=engine_map)


def workload_queries(workload: str, acc, n: int, seed: int = 0, rows: int | None = None,
                     candidates: int | None = None):
    """``n`` query batches of ``workload`` for ``acc`` (``candidates`` per query, default
    the workload's)."""
    from .golden.data import criteo_synthetic, load_ml100k

    if workload == "recpipe-criteo":
        w = WORKLOADS[workload]
        table_rows = [rows or w["rows"]] * w["tables"]
        return [criteo_synthetic(candidates or w["candidates"], table_rows, seed=100 + seed + i,
                                 hot_seed=7) for i in range(n)]
    ml = acc.ml or load_ml100k()
    return [b for b, _ in acc.movielens_queries(
        ml, n, seed=seed, candidates=candidates or WORKLOADS[workload]["candidates"])]


#: Table rows of `criteo_shaped`'s models.
CRITEO_SHAPED_ROWS = (50, 80, 30)


def criteo_shaped(config: RPAccelConfig, seed: int = 0, ks=None):
    """Small random Criteo-shaped stage models on ``config`` (13 dense features, 3 tables
    of `CRITEO_SHAPED_ROWS` rows, bags of 2; ``dot``, ``cat`` and ``dot`` interactions by
    stage), quantized on synthetic data: the simulatable stand-in for RecPipe's models.

    Returns
    -------
    acc : Accelerator
    queries : callable
        ``sizes -> [Batch]``: one Criteo-shaped query per size (its candidate count);
        ``queries(sizes, start)`` draws them from seeds ``start, start + 1, ...``.
    """
    from .golden.data import criteo_synthetic
    from .golden.quantize import quantize_model
    from .golden.zoo import ModelSize, random_model
    from .runtime import Accelerator

    rows = CRITEO_SHAPED_ROWS
    ks = ks or {1: (10,), 2: (16, 10), 3: (16, 12, 10)}[config.stages]
    stages = []
    for s, k in enumerate(ks):
        inter, d = (("dot", 8), ("cat", 16), ("dot", 16))[s]
        model = random_model(ModelSize(f"c{s}", d, (16,), (24,)), 13, rows, inter,
                             seed=seed + s)
        calib = criteo_synthetic(500, rows, seed=seed + 10 + s, bag_size=2)
        stages.append((quantize_model(model, calib), k))
    prof = criteo_synthetic(300, rows, seed=seed + 20, bag_size=2)
    acc = Accelerator(config, stages, prof, static_bytes=256)

    def queries(sizes, start: int | None = None):
        first = seed + 30 if start is None else start
        return [criteo_synthetic(n, rows, seed=first + i, bag_size=2)
                for i, n in enumerate(sizes)]

    return acc, queries


def recpipe_shapes(config: RPAccelConfig, rows: int = 2000, ks=None):
    """RecPipe's models of the ``config.stages``-stage pipeline of `PIPELINES` (26 tables of
    ``rows`` rows, 351 ``dot`` pairs), keeping ``ks`` (default 128 / 32 / 16, or 128 / 16,
    or 16) on ``config``, the static caches given the whole ``static_rows`` budget: the
    paper's model shapes at a size that simulates (`mid`).

    Returns
    -------
    acc : Accelerator
    queries : callable
        ``(sizes, start=0) -> [Batch]``: one Criteo-shaped query per size (its candidate
        count), drawn as `workload_queries` draws them.
    """
    from .runtime import Accelerator

    models, profile = _criteo_models(rows, WORKLOADS["recpipe-criteo"]["tables"])
    spec = next(p for p in PIPELINES["recpipe-criteo"].values() if len(p) == config.stages)
    ks = ks or {1: (16,), 2: (128, 16), 3: (128, 32, 16)}[config.stages]
    acc = Accelerator(config, [(models[m], k) for (m, _), k in zip(spec, ks, strict=True)],
                      profile, config.static_rows * config.emb_dim)

    def queries(sizes, start: int = 0):
        return [workload_queries("recpipe-criteo", acc, 1, seed=start + i, rows=rows,
                                 candidates=n)[0] for i, n in enumerate(sizes)]

    return acc, queries
