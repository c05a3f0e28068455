"""FPGA resources of a configuration without synthesizing it: a per-block model of Yosys'
ECP5 estimate (LUT4, flip-flops, MULT18X18D multipliers, DP16KD block RAMs), calibrated on
Yosys runs of real configurations.

Synthesis of one design takes minutes to hours (the ``fpga-ecp5`` accelerator: 7.5
minutes on one core; a 16-lane top-k unit alone: 87k LUTs), so a sweep of thousands of
points (`rpaccel.dse`) cannot run Yosys on each.
Instead the accelerator is cut into blocks of its hierarchy, each counted once per
instance, each a non-negative linear function of the sizes it grows with:

========== ============================= ==============================================
block      instances                     sizes
========== ============================= ==============================================
mesh       one                           processing elements (rows x columns)
engine     one per compute engine        a constant, its partition slot's columns (the
                                         output path and its requantizer), interaction
                                         multipliers (pairs a cycle x lanes)
emb_unit   one per embedding unit        a constant, row bits, requantizer lanes
           (stages x ``emb_units``)
cluster    one per stage of G > 1 units  units (response merge, AXI arbiter)
topk       one per stage                 queue: a constant and lanes x k cells per
                                         two banks (``topk_banks``); heap:
                                         lanes x log2(k) levels
stage      one per stage                 a constant (controller, replay, error latch)
top        one                           a constant (CSRs, front end, loader, crossbar)
========== ============================= ==============================================

The coefficients are fitted (`fit`, non-negative least squares) on the per-block counts
of Yosys' hierarchical runs (`rpaccel.scripts.synth.breakdown`) of `calibration_runs`:
the accelerator of `CALIBRATED_FPGA_ECP5` whole and blocks synthesized alone at other
sizes. They are
stored in ``rpaccel/fpga_model.json`` (`coefficients`); the runs, the fit and each run
against the model fitted on the others (leave one out) are in
``docs/reports/fpga-calibration.json`` (``rpaccel fpga calibrate``). The stage and top
constants come from the one whole run, so they are `CALIBRATED_FPGA_ECP5`'s. Block RAMs come from
the RAMs the generator builds (`rpaccel.area.memories`) and the DP16KD shapes: a RAM of at
least ``bram_min_depth`` words (fitted: the power of two that matches Yosys best) takes
the fewest 18-kbit blocks of one shape (512 x 36 .. 16384 x 1), a shallower one goes to
LUT RAM or flip-flops.

It places design points relative to one another and to an ECP5's capacity (`fits`
leaves 20% of the LUTs for routing; LUT RAM cells are counted apart, ``lutram``); it is
an estimate of Yosys' counts before placement, not a placement result. The calibrated
sizes: arrays of 8 and 16, engines of 1 to 4 interaction pairs a cycle, embedding rows of
16 to 64 bytes with 4 or 16 requantizer lanes, queue top-k units of 1 to 16 lanes and 16
or 64 entries, one heap (1 lane, 128 entries); beyond them (the design spaces' 64-lane
requantizers, multi-lane heaps, arrays of 32 and more) it extrapolates linearly.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

from .config import RPAccelConfig

__all__ = ["CALIBRATED_FPGA_ECP5", "DEVICES", "BLOCKS", "RESOURCES", "instances", "brams",
           "coefficients", "estimate", "fits", "fit", "calibration_runs", "block_of",
           "run_estimate", "calibrate", "write_coefficients"]

#: ECP5 devices (LFE5U): LUT4s (and as many flip-flops), 18 x 18 multipliers, 18-kbit
#: block RAMs (DP16KD).
DEVICES = {
    "ecp5-25f": {"lut": 24288, "ff": 24288, "dsp": 28, "bram": 56},
    "ecp5-45f": {"lut": 43848, "ff": 43848, "dsp": 72, "bram": 108},
    "ecp5-85f": {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208},
}

#: The resources the linear model predicts (block RAMs come from the RAM inventory);
#: ``lutram``: TRELLIS_DPR16X4 cells (16 x 4-bit LUT RAMs), on top of ``lut``.
RESOURCES = ("lut", "ff", "dsp", "lutram")

#: Each block's sizes (the features of its linear model), in the order of its coefficients.
BLOCKS = {
    "mesh": ("pe",),
    "engine": ("one", "cols", "pair_mults"),
    "emb_unit": ("one", "row_bits", "requant"),
    "cluster": ("units",),
    "topk": ("q", "q_lane_cells", "h_lane_levels"),
    "stage": ("one",),
    "top": ("one",),
}

#: DP16KD shapes (depth, width).
_BRAM_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))

#: Where the fitted coefficients live (written by ``rpaccel fpga calibrate``; the runs
#: they were fitted on are ``docs/reports/fpga-calibration.json``).
COEFFICIENTS_FILE = Path(__file__).with_name("fpga_model.json")

#: The ``fpga-ecp5`` configuration the calibration runs were made around (its queue top-k
#: with two banks; today's has one): `calibration_runs` keeps it so that the stored runs
#: and the coefficients stay reproducible when the named configuration changes.
CALIBRATED_FPGA_ECP5 = RPAccelConfig(
    name="fpga-ecp5", fclk_mhz=50.0, weight_rows=4096, max_width=128, param_rows=64,
    emb_dim=16, emb_requant_lanes=4, topk_k=16, topk_lanes=1, topk_impl="queue",
    cache_sets=8, mshrs=2, sub_batch=32)


@lru_cache(maxsize=1)
def coefficients() -> dict:
    """The fitted per-block coefficients: ``{resource: {block: [one per feature of
    BLOCKS[block]]}}`` and ``bram_min_depth``."""
    if not COEFFICIENTS_FILE.exists():
        raise RuntimeError(f"{COEFFICIENTS_FILE} is missing: run `rpaccel fpga calibrate`")
    return json.loads(COEFFICIENTS_FILE.read_text())


def instances(cfg: RPAccelConfig, engine_cols: str = "top") -> dict:
    """Every block instance of ``cfg`` with its sizes: ``{block: {instance: {feature:
    value}}}``. Instances are named as `block_of` names them (``engine0``, ``mesh``,
    ``embedding1.unit0`` also for a stage of one unit, ``cluster1``, ``topk0``,
    ``stage1``, ``top``). ``engine_cols``: ``"top"``, every engine one partition wide as
    the top level builds it (`rpaccel.interface.engine_width`); ``"slot"``, each its slot's
    widest partition (`rpaccel.interface.slot_width`), as `ComputeEngine` alone builds it
    and as the top level did in the calibration runs that do not say (before 2026-12-05)."""
    from .interface import engine_widths, lanes

    a = lanes(cfg)
    rq = cfg.emb_requant_lanes or cfg.emb_dim
    out = {"mesh": {"mesh": {"pe": cfg.array_rows * cfg.array_cols}},
           "engine": {}, "emb_unit": {}, "cluster": {}, "topk": {}, "stage": {},
           "top": {"top": {"one": 1}}}
    for e, w in enumerate(engine_widths(cfg, engine_cols)):
        out["engine"][f"engine{e}"] = {"one": 1, "cols": w,
                                       "pair_mults": cfg.inter_pairs * a}
    queue = cfg.topk_impl == "queue"
    for s in range(cfg.stages):
        for g in range(cfg.emb_units):
            out["emb_unit"][f"embedding{s}.unit{g}"] = {"one": 1, "row_bits": 8 * cfg.emb_dim,
                                                        "requant": rq}
        n, k = cfg.topk_lanes, cfg.topk_k
        out["topk"][f"topk{s}"] = {
            # the queue's cells and comparators per bank: one bank is half of the two
            "q": int(queue), "q_lane_cells": queue * n * k * cfg.topk_banks / 2,
            "h_lane_levels": (not queue) * n * max(1, (k - 1).bit_length())}
        out["cluster"][f"cluster{s}"] = {"units": cfg.emb_units if cfg.emb_units > 1 else 0}
        out["stage"][f"stage{s}"] = {"one": 1}
    return out


def block_of(name: str, emb_units: int) -> tuple[str, str]:
    """``(block, instance)`` of a sub-block name of Yosys' hierarchical run
    (`rpaccel.scripts.synth.group_by_block`, depth 2): ``compute.engine1`` -> ``("engine",
    "engine1")``, ``embedding0.unit1`` -> ``("emb_unit", "embedding0.unit1")``,
    ``controller1`` -> ``("stage", "stage1")``."""
    parts = name.split(".")
    head = parts[0]
    if head == "compute" and len(parts) > 1:
        if parts[1] == "mesh":
            return "mesh", "mesh"
        if parts[1].startswith("engine"):
            return "engine", parts[1]
    for prefix in ("topk", "controller", "replay", "qerr", "embedding"):
        if head.startswith(prefix) and head[len(prefix):].isdigit():
            s = int(head[len(prefix):])
            if prefix == "topk":
                return "topk", head
            if prefix == "embedding":
                if emb_units == 1:
                    return "emb_unit", f"embedding{s}.unit0"
                if len(parts) > 1 and parts[1].startswith("unit"):
                    return "emb_unit", f"{head}.{parts[1]}"
                return "cluster", f"cluster{s}"
            return "stage", f"stage{s}"
    return "top", "top"


def brams(cfg: RPAccelConfig, min_depth: int | None = None, engine_cols: str = "top") -> dict:
    """DP16KD block RAMs of ``cfg``'s RAMs: ``{"total": n, "by_block": {top-level block:
    n}}``. Each RAM of at least ``min_depth`` words (default: the calibrated
    ``bram_min_depth``) takes the fewest blocks of one DP16KD shape; shallower RAMs go to
    LUT RAM. ``engine_cols``: as `instances`."""
    from .area import memories

    if min_depth is None:
        min_depth = coefficients()["bram_min_depth"]
    by = {}
    for name, depth, width in memories(cfg, engine_cols):
        if depth < min_depth:
            continue
        n = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM_SHAPES)
        key = name.split("/")[0]
        by[key] = by.get(key, 0) + n
    return {"total": sum(by.values()), "by_block": by}


def _predict(block: str, feats: dict, coef: dict) -> dict:
    return {r: sum(c * feats[f] for c, f in zip(coef[r][block], BLOCKS[block], strict=True))
            for r in RESOURCES}


def _block_sums(items, coef: dict) -> dict:
    """``{block: {resource: n}}``: the model's counts of ``(block, features)`` instances
    summed per block, each block rounded once."""
    acc = {}
    for block, feats in items:
        a = acc.setdefault(block, dict.fromkeys(RESOURCES, 0.0))
        for r, v in _predict(block, feats, coef).items():
            a[r] += v
    return {b: {r: round(v) for r, v in a.items()} for b, a in acc.items()}


def estimate(cfg: RPAccelConfig, coef: dict | None = None, engine_cols: str = "top") -> dict:
    """Modelled ECP5 resources of ``cfg``: ``lut``, ``ff``, ``dsp``, ``lutram``, ``bram``
    (totals, rounded), ``blocks`` (per block: the sum over its instances) and ``fits``
    (per device of `DEVICES`, with 20% of the LUTs left for routing). ``coef``: fitted
    coefficients (default: `coefficients`); ``engine_cols``: as `instances`."""
    coef = coef or coefficients()
    inst = instances(cfg, engine_cols)
    blocks = {b: dict.fromkeys(RESOURCES, 0) for b in inst}  # every block, also with none
    blocks.update(_block_sums(((b, f) for b, fs in inst.items() for f in fs.values()), coef))
    tot = {r: sum(b[r] for b in blocks.values()) for r in RESOURCES}
    tot["bram"] = brams(cfg, coef["bram_min_depth"], engine_cols)["total"]
    return {**tot, "blocks": blocks, "fits": {d: fits(tot, d) for d in DEVICES}}


def fits(resources: dict, device: str = "ecp5-85f", headroom: float = 0.2) -> bool:
    """Whether ``resources`` fit ``device`` with ``headroom`` of its LUTs free (every
    multiplier and block RAM may be used)."""
    cap = DEVICES[device]
    return (resources["lut"] <= (1 - headroom) * cap["lut"] and resources["ff"] <= cap["ff"]
            and resources["dsp"] <= cap["dsp"] and resources["bram"] <= cap["bram"])


def _nnls(x, y):
    from scipy.optimize import nnls

    return nnls(x, y)[0]


#: What a Yosys run of each block measures: the prefix of its sub-block names in the whole
#: accelerator's hierarchy, the model's blocks it informs (instances of stage 0 when the
#: block runs alone) and the top-level block of its RAMs (`brams`).
_RUN_BLOCKS = {
    "rpaccel": ("", None, None),
    "engine": ("compute.", ("mesh", "engine"), "compute"),
    "embedding": ("embedding0.", ("emb_unit", "cluster"), "embedding0"),
    "topk": ("topk0.", ("topk",), "topk0"),
}


def _samples(run: dict):
    """``(block, instance, features, measured)`` of every block instance a calibration
    ``run`` measures (Yosys' counts summed per instance). The cells of a block run alone
    outside its instances (its own glue, a few hundred LUTs at most) are left out; any
    other sub-block the model has no instance for is an error (a renamed hierarchy)."""
    cfg = RPAccelConfig(**run["config"])
    prefix, informs, _ = _RUN_BLOCKS[run["block"]]
    meas = {}
    for name, counts in run["blocks"].items():
        key = block_of(prefix + name, cfg.emb_units)
        acc = meas.setdefault(key, dict.fromkeys(RESOURCES, 0))
        for r in RESOURCES:
            acc[r] += counts[r]
    used = set()
    for block, insts in instances(cfg, run.get("engine_cols", "slot")).items():
        if informs is not None and block not in informs:
            continue
        for inst, f in insts.items():
            if informs is not None and block not in ("mesh", "engine") and \
                    inst not in ("cluster0", "topk0") and not inst.startswith("embedding0."):
                continue  # a block synthesized alone is stage 0's
            used.add((block, inst))
            yield block, inst, f, meas.get((block, inst), dict.fromkeys(RESOURCES, 0))
    for key in set(meas) - used:
        if not (informs is not None and key == ("top", "top")):
            raise ValueError(f"calibration run {run['block']} {run['config_digest']}: "
                             f"sub-block {key} has no instance in the model")


def fit(runs: list) -> dict:
    """Fit the per-block coefficients on calibration ``runs`` (each ``{"block": "rpaccel"
    (the whole accelerator) or "engine" / "embedding" / "topk" (alone), "config":
    cfg.to_dict(), "blocks":
    {sub-block: {"lut", "ff", "dsp", "lutram", ...}}}``, Yosys' hierarchical counts);
    returns ``{resource: {block: [coefficient per feature]}}`` (non-negative least squares,
    4 significant digits). A block no run measures gets zeros."""
    import numpy as np

    out = {r: {} for r in RESOURCES}
    for block, (x, ys) in _design(runs).items():
        for r in RESOURCES:
            c = (_nnls(np.asarray(x, float), np.asarray(ys[r], float)) if x
                 else np.zeros(len(BLOCKS[block])))
            # NNLS leaves round-off (1e-15) where a coefficient is zero
            out[r][block] = [float(f"{v:.4g}") if v > 1e-6 else 0.0 for v in c]
    return out


def _design(runs: list) -> dict:
    """Each block's fit over ``runs``: ``{block: (feature rows, {resource: measured
    counts})}``."""
    rows = {b: ([], {r: [] for r in RESOURCES}) for b in BLOCKS}
    for run in runs:
        for block, _, f, m in _samples(run):
            rows[block][0].append([f[k] for k in BLOCKS[block]])
            for r in RESOURCES:
                rows[block][1][r].append(m[r])
    return rows


def _unmeasured(runs: list) -> list[str]:
    """``block.feature`` of every feature no run varies away from zero: a model fitted on
    ``runs`` knows nothing of it (it gets a zero coefficient)."""
    rows = _design(runs)
    return [f"{b}.{k}" for b, fs in BLOCKS.items() for i, k in enumerate(fs)
            if not any(r[i] for r in rows[b][0])]


def _extrapolated(runs: list, run: dict) -> list[str]:
    """The blocks of ``run`` whose sizes are not a linear combination of sizes the
    ``runs`` measured (outside the row space of the block's design matrix): a model
    fitted on ``runs`` predicts them by extrapolation, not from data."""
    import numpy as np

    rows = _design(runs)
    out = set()
    for block, _, f, _ in _samples(run):
        x = np.array([f[k] for k in BLOCKS[block]], float)
        if not x.any():
            continue
        a = np.array(rows[block][0], float).reshape(-1, len(x))
        if not len(a):
            out.add(block)
            continue
        coef = np.linalg.lstsq(a.T, x, rcond=None)[0]
        if np.linalg.norm(a.T @ coef - x) > 1e-6 * np.linalg.norm(x):
            out.add(block)
    return sorted(out)


def _run_brams(run: dict, min_depth: int) -> int:
    """Block RAMs `brams` counts for the part of the accelerator a run synthesized."""
    b = brams(RPAccelConfig(**run["config"]), min_depth, run.get("engine_cols", "slot"))
    scope = _RUN_BLOCKS[run["block"]][2]
    return b["total"] if scope is None else b["by_block"].get(scope, 0)


def _bram_threshold(runs: list) -> int:
    """The `brams` depth threshold (a power of two) whose block-RAM counts are closest to
    Yosys' over ``runs`` (summed absolute difference; the smaller threshold on a tie)."""
    cands = [1 << b for b in range(3, 10)]
    err = {t: sum(abs(_run_brams(r, t) - r["total"]["bram"]) for r in runs) for t in cands}
    return min(cands, key=lambda t: (err[t], t))


def _coefficients(runs: list) -> dict:
    return {**fit(runs), "bram_min_depth": _bram_threshold(runs)}


def run_estimate(run: dict, coef: dict) -> dict:
    """The model's totals for what a calibration ``run`` synthesized (its block alone, or
    the whole accelerator)."""
    per = _block_sums(((b, f) for b, _, f, _ in _samples(run)), coef)
    out = {r: sum(b[r] for b in per.values()) for r in RESOURCES}
    out["bram"] = _run_brams(run, coef["bram_min_depth"])
    return out


def _breakdown_task(block: str, cfg_dict: dict, out_root: str,
                    timeout_s: float | None) -> dict:
    """Yosys' hierarchical estimate of ``block`` for one configuration, cached per block,
    config digest, RTL sources and tool versions in ``out_root``; a run that fails or
    times out returns ``error``."""
    from .hw import source_digest
    from .scripts.synth import breakdown, tool_versions

    cfg = RPAccelConfig(**cfg_dict)
    head = {"block": block, "name": cfg.name, "config_digest": cfg.digest(),
            "rtl": source_digest(), "config": cfg_dict,
            "engine_cols": "top" if block == "rpaccel" else "slot"}
    out_dir = Path(out_root) / f"{block}-{cfg.name}-{cfg.digest()}"
    cached = out_dir / "calibration.json"
    tools = tool_versions()
    if cached.exists():
        old = json.loads(cached.read_text())
        if (old.get("config_digest") == cfg.digest() and old.get("tools") == tools
                and old.get("rtl") == head["rtl"]):
            return {**old, "cached": True}
    try:
        r = breakdown(block, cfg, out_dir, depth=2, timeout_s=timeout_s)
    except (subprocess.TimeoutExpired, RuntimeError) as e:
        return {**head, "error": f"{type(e).__name__}: {e}"}
    r = {**head, "tools": tools, "date": datetime.date.today().isoformat(),
         **{k: r[k] for k in ("total", "blocks", "yosys_s")}}
    cached.write_text(json.dumps(r, indent=1))
    return r


def calibrate(runs=None, scheduler: str | None = None, workers: int | None = None,
              out_root="build/fpga", timeout_s: float | None = None, log=print,
              progress: bool | None = None) -> dict:
    """Run the Yosys runs of the calibration, fit the model on them and measure it.

    Parameters
    ----------
    runs : list of (str, RPAccelConfig), optional
        ``(block, config)`` pairs: ``"rpaccel"`` (the whole accelerator) or a block
        synthesized alone (``"engine"``, ``"embedding"``, ``"topk"``); default
        `calibration_runs`.
    scheduler, workers
        Dask: a scheduler address, or a local cluster of ``workers`` processes (default
        one per core).
    out_root : path
        Cache of the runs, one folder per block and config digest (a run with the same
        digest and tool versions is not repeated).
    timeout_s : float, optional
        Seconds one Yosys run may take; a run that fails or times out is listed under
        ``failed``.

    Returns
    -------
    dict
        ``coefficients`` (what `write_coefficients` stores), ``runs`` (Yosys' counts),
        ``fitted`` / ``fit_error`` (each run against the model fitted on all runs; the
        largest and mean absolute relative error per resource), ``leave_one_out`` /
        ``error`` (each run against the model fitted on the others; a row whose sizes
        the others do not span has its blocks under ``extrapolated`` and is left out of
        ``error``),
        ``failed``, tool versions, date and host.

    Raises
    ------
    RuntimeError
        When the runs that finished leave a size of the model unmeasured (a block no run
        has, e.g. the whole accelerator's run failed): such a fit would silently count
        that block as zero.
    """
    import time

    from .scripts.synth import tool_versions
    from .sim.regress import map_tasks

    runs = list(runs or calibration_runs())
    log(f"fpga calibrate: {len(runs)} Yosys runs, cached in {out_root}")
    t0 = time.perf_counter()
    results, nworkers = map_tasks(_breakdown_task, [(b, c.to_dict(), str(out_root), timeout_s)
                                                    for b, c in runs],
                                  scheduler, workers, unit="run", desc="yosys",
                                  progress=progress)
    order = {(b, c.digest()): i for i, (b, c) in enumerate(runs)}
    results.sort(key=lambda r: order[(r["block"], r["config_digest"])])
    ok = [r for r in results if "error" not in r]
    failed = [{k: r[k] for k in ("block", "name", "config_digest", "error")}
              for r in results if "error" in r]
    missing = _unmeasured(ok)
    if missing:
        raise RuntimeError(f"the finished Yosys runs leave {missing} unmeasured "
                           f"(failed: {failed})")
    coef = _coefficients(ok)
    keys = (*RESOURCES, "bram")

    def row(r, c, **extra):
        est = run_estimate(r, c)
        return {"block": r["block"], "name": r["name"], "config_digest": r["config_digest"],
                **extra, "yosys": {k: r["total"][k] for k in keys}, "model": est,
                "error": {k: (round(est[k] / r["total"][k] - 1, 4) if r["total"][k]
                              else None) for k in keys}}

    fitted = [row(r, coef) for r in ok]
    loo = []
    for i, r in enumerate(ok):
        rest = ok[:i] + ok[i + 1:]
        loo.append(row(r, _coefficients(rest), extrapolated=_extrapolated(rest, r)))

    def summary(rows):
        out = {}
        for k in keys:
            e = [abs(x["error"][k]) for x in rows
                 if x["error"][k] is not None and not x.get("extrapolated")]
            out[k] = {"max_abs": round(max(e), 4) if e else None,
                      "mean_abs": round(sum(e) / len(e), 4) if e else None}
        return out

    return {"what": "per-block model of Yosys' ECP5 estimate (synth_ecp5 -noflatten)",
            "date": datetime.date.today().isoformat(), "host": platform.node(),
            "tools": tool_versions(), "workers": nworkers,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "blocks": {b: list(f) for b, f in BLOCKS.items()}, "coefficients": coef,
            "fitted": fitted, "fit_error": summary(fitted), "leave_one_out": loo,
            "error": summary(loo), "failed": failed,
            "runs": [{k: r[k] for k in ("block", "name", "config_digest", "config", "total",
                                         "blocks", "yosys_s", "tools", "date")} for r in ok]}


def write_coefficients(report: dict, path: Path = COEFFICIENTS_FILE) -> Path:
    """Store a calibration ``report``'s coefficients where `coefficients` reads them."""
    Path(path).write_text(json.dumps(report["coefficients"], indent=1) + "\n")
    coefficients.cache_clear()
    return Path(path)


def calibration_runs(models_dir=None) -> list[tuple[str, RPAccelConfig]]:
    """The Yosys runs the model is calibrated on, ``(block, config)``: the
    `CALIBRATED_FPGA_ECP5` accelerator whole (the one run that measures the stage and
    top-level logic), and blocks alone around it (each in minutes; a whole design-space
    point takes hours): engines with their array (8 x 8 in two partitions, 8 x 8 in one
    with four pairs a cycle as a design-space point fits it to the ml100k models
    (``models_dir``, default ``$RPACCEL_MODELS`` or ``build/models``), 16 x 16 in two),
    embedding units (one and two units; rows of 16, 32 and 64 bytes; 4 and 16
    requantizer lanes) and top-k units (queues of 1, 4 and 16 lanes and 16 or 64
    entries, a heap of 128)."""
    import os

    from .dse import Point, _fitted

    models_dir = models_dir or os.environ.get("RPACCEL_MODELS", "build/models")
    fpga = CALIBRATED_FPGA_ECP5
    point = _fitted(Point("ml100k", (("small", 10),), 8, 1, None, 32, 64, 16, 4, 4, 1),
                    models_dir)[0]
    return [
        ("rpaccel", fpga),
        ("engine", fpga),
        ("engine", point),
        ("engine", fpga.replace(array_rows=16, array_cols=16, requant_lanes=16,
                                inter_pairs=2)),
        ("embedding", fpga),
        ("embedding", fpga.replace(emb_units=2)),
        ("embedding", fpga.replace(emb_dim=32, emb_requant_lanes=16)),
        ("embedding", fpga.replace(emb_dim=64, line_bytes=64)),
        ("topk", fpga),
        ("topk", fpga.replace(topk_lanes=4, topk_k=64)),
        ("topk", point),
        ("topk", fpga.replace(topk_impl="heap", topk_k=128, topk_id_bits=10, max_items=1024)),
    ]
