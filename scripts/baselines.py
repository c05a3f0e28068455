"""Baselines: RecPipe's multi-stage pipelines in PyTorch on CPU and GPU, JSON out.

What a user would pick instead of the accelerator: the DLRM models of RecPipe's Criteo
artifact (RM-small, RM-med, RM-large, ``dot`` interaction, fp32, random weights) chained
into one-, two- and three-stage pipelines, each stage scoring its items and passing its
top-k on. Per pipeline, device and mode this measures the latency of one query at a time
(host to device, pipeline, answer back to host) and the throughput of batches of queries,
with the GPU's board power beside it.

With ``--stages`` it measures single stages instead (`STAGES`: one model scoring ``items``
items per query and keeping ``keep``), the per-stage service times a heterogeneous
scheduler needs to map each stage of a pipeline onto CPU, GPU or accelerator; add
``--pipelines all`` to measure both in one run.

Run ``python -m rpaccel.scripts.baselines --devices cpu,cuda --out baselines.json``
(or ``python scripts/baselines.py ...``: the module needs only numpy and torch).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the "train" extra is optional: macs_per_query needs no torch
    torch = None
    F = None

__all__ = ["MODELS", "PIPELINES", "STAGES", "MODES", "ModelSpec", "Stage", "stage_name",
           "entry_stages", "macs_per_query", "build_models", "make_queries", "run_pipeline",
           "run_baselines", "format_table", "main"]

DENSE = 13
TABLES = 26
FEATURES = TABLES + 1
PAIRS = FEATURES * (FEATURES - 1) // 2  # 351: strictly lower triangle of the 27x27 dots


@dataclass(frozen=True)
class ModelSpec:
    """One DLRM: embedding width and MLP layer widths, inputs and outputs included."""

    emb_dim: int
    bottom: tuple[int, ...]
    top: tuple[int, ...]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: ``model`` scores ``items`` items per query and keeps ``keep``."""

    model: str
    items: int
    keep: int


#: RecPipe's Criteo models (artifact shapes).
MODELS = {
    "small": ModelSpec(4, (13, 64, 4), (355, 64, 1)),
    "med": ModelSpec(16, (13, 64, 16), (367, 64, 1)),
    "large": ModelSpec(32, (13, 512, 256, 128, 64, 32), (383, 96, 1)),
}

#: Pipelines: each stage scores the survivors of the one before.
PIPELINES = {
    "1-stage large": (Stage("large", 4096, 64),),
    "2-stage small->large": (Stage("small", 4096, 512), Stage("large", 512, 64)),
    "3-stage small->med->large": (Stage("small", 4096, 512), Stage("med", 512, 128),
                                  Stage("large", 128, 64)),
}



def stage_name(stage: Stage) -> str:
    """Name of a single-stage entry of `STAGES`.

    Parameters
    ----------
    stage : Stage
        The stage.

    Returns
    -------
    str
        ``"stage <model> <items>-><keep>"``, e.g. ``"stage small 4096->512"``.
    """
    return f"stage {stage.model} {stage.items}->{stage.keep}"


#: Single stages, measured alone like pipelines: every stage of `PIPELINES` and the
#: one-stage pipeline's large model at 4096 items. Keys are `stage_name` of the value.
STAGES = {stage_name(s): s for s in (
    Stage("small", 4096, 512),
    Stage("med", 512, 128),
    Stage("large", 512, 64),
    Stage("large", 128, 64),
    Stage("large", 4096, 64),
)}

#: (mode, dtype) cells measured per device.
MODES = {
    "cpu": (("eager", "fp32"),),
    "cuda": (("eager", "fp32"), ("cuda-graph", "fp32"), ("cuda-graph", "bf16")),
}

_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def _check_tables():
    for name, m in MODELS.items():
        if m.bottom[0] != DENSE or m.bottom[-1] != m.emb_dim or m.top[0] != m.emb_dim + PAIRS:
            raise ValueError(f"model {name}: widths {m} do not chain")
    for name, stages in PIPELINES.items():
        for a, b in zip(stages[:-1], stages[1:], strict=True):
            if b.items != a.keep:
                raise ValueError(f"pipeline {name}: a stage scores {b.items}, not {a.keep}")
    for name, st in STAGES.items():
        if st.model not in MODELS or not 0 < st.keep <= st.items or name in PIPELINES:
            raise ValueError(f"stage entry {name}: {st} is not a valid stage")


_check_tables()


def _model_macs(spec: ModelSpec) -> int:
    mlp = sum(a * b for dims in (spec.bottom, spec.top)
              for a, b in zip(dims[:-1], dims[1:], strict=True))
    return mlp + PAIRS * spec.emb_dim


def entry_stages(name: str) -> tuple[Stage, ...]:
    """The stages of a measured entry: a pipeline or a single-stage entry.

    Parameters
    ----------
    name : str
        A key of `PIPELINES` or of `STAGES`.

    Returns
    -------
    tuple of Stage
        The pipeline's stages, or the one stage of a `STAGES` entry.
    """
    if name in PIPELINES:
        return PIPELINES[name]
    if name in STAGES:
        return (STAGES[name],)
    raise KeyError(f"{name!r} is neither a pipeline nor a stage entry")


def macs_per_query(pipeline_name: str) -> int:
    """Dense multiply-accumulates of one query through a pipeline or a single stage.

    Parameters
    ----------
    pipeline_name : str
        A key of `PIPELINES` or of `STAGES`.

    Returns
    -------
    int
        Sum over stages of items times the model's MACs per item: every MLP layer
        (``in * out``) and the interaction's 351 dot products of ``emb_dim`` each.
        Embedding gathers, bias adds and top-k are not counted.
    """
    return sum(s.items * _model_macs(MODELS[s.model]) for s in entry_stages(pipeline_name))


def _need_torch():
    if torch is None:
        raise RuntimeError("PyTorch is not installed (pip install 'rpaccel[train]')")


class _DLRM:
    """DLRM forward pass over plain tensors, so one instance serves eager and graph modes.

    The 26 tables live in one fused table (row offsets per table), so a lookup is one
    gather rather than 26; each item has one id per table (a bag of one).
    """

    def __init__(self, spec: ModelSpec, rows: int, device, dtype, seed: int):
        g = torch.Generator().manual_seed(seed)

        def mlp(dims):
            layers = []
            for n, m in zip(dims[:-1], dims[1:], strict=True):
                w = torch.randn(m, n, generator=g) * math.sqrt(2 / (m + n))
                b = torch.randn(m, generator=g) * math.sqrt(1 / m)
                layers.append((w.to(device, dtype), b.to(device, dtype)))
            return layers

        self.bot = mlp(spec.bottom)
        self.top = mlp(spec.top)
        emb = (torch.rand(TABLES * rows, spec.emb_dim, generator=g) * 2 - 1) / math.sqrt(rows)
        self.emb = emb.to(device, dtype)
        self.offsets = (torch.arange(TABLES) * rows).to(device)
        li, lj = torch.tril_indices(FEATURES, FEATURES, offset=-1)
        self.tril = (li * FEATURES + lj).to(device)
        self.dtype = dtype

    def __call__(self, dense, ids):
        x = dense.to(self.dtype)
        for w, b in self.bot:
            x = F.relu(F.linear(x, w, b))
        e = F.embedding(ids + self.offsets, self.emb)
        t = torch.cat([x.unsqueeze(1), e], dim=1)
        z = torch.bmm(t, t.transpose(1, 2)).flatten(1).index_select(1, self.tril)
        r = torch.cat([x, z], dim=1)
        for i, (w, b) in enumerate(self.top):
            r = F.linear(r, w, b)
            if i + 1 < len(self.top):
                r = F.relu(r)
        return r.squeeze(1)


def build_models(rows: int = 100_000, device="cpu", dtype: str = "fp32", seed: int = 0,
                 names=None) -> dict:
    """Random-weight models of `MODELS`, seeded.

    Parameters
    ----------
    rows : int
        Rows of each of the 26 embedding tables.
    device : str or torch.device
        Where the weights live.
    dtype : {"fp32", "bf16"}
        Weights and activations.
    seed : int
        Seed of the first model; the others take the next seeds in `MODELS` order.
    names : iterable of str, optional
        Models to build (default: all).

    Returns
    -------
    dict
        Model name to a callable ``(dense [B, 13], ids [B, 26]) -> scores [B]``.
    """
    _need_torch()
    dt = getattr(torch, _DTYPES[dtype])
    names = set(MODELS if names is None else names)
    return {name: _DLRM(spec, rows, device, dt, seed + i)
            for i, (name, spec) in enumerate(MODELS.items()) if name in names}


def make_queries(n_queries: int, rows: int = 100_000, items: int = 4096, seed: int = 0):
    """Random query inputs on the host.

    Parameters
    ----------
    n_queries : int
        Queries, each with its own candidates.
    rows : int
        Ids are drawn from ``[0, rows)`` per table.
    items : int
        Candidates per query.
    seed : int
        Generator seed.

    Returns
    -------
    dense : torch.Tensor
        float32 ``[n_queries, items, 13]``.
    ids : torch.Tensor
        int64 ``[n_queries, items, 26]``.
    """
    _need_torch()
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n_queries, items, DENSE, generator=g)
    ids = torch.randint(0, rows, (n_queries, items, TABLES), generator=g)
    return dense, ids


def run_pipeline(pipeline_name: str, models: dict, dense, ids) -> list:
    """Score a batch of queries through a pipeline (or a single-stage entry).

    Parameters
    ----------
    pipeline_name : str
        A key of `PIPELINES` or of `STAGES`.
    models : dict
        From `build_models`, on the device of ``dense`` and ``ids``.
    dense, ids : torch.Tensor
        ``[Q, items, 13]`` float and ``[Q, items, 26]`` int64, ``items`` that of the
        pipeline's first stage.

    Returns
    -------
    list of (torch.Tensor, torch.Tensor)
        Per stage, the survivors' candidate ids (positions in the query's candidate list,
        int64 ``[Q, keep]``) and scores (``[Q, keep]``, best first). The last is the answer.
    """
    stages = entry_stages(pipeline_name)
    q, n = dense.shape[:2]
    if n != stages[0].items:
        raise ValueError(f"{pipeline_name} takes {stages[0].items} items, got {n}")
    cand = torch.arange(n, device=dense.device).expand(q, n)
    out = []
    for i, st in enumerate(stages):
        scores = models[st.model](dense.flatten(0, 1), ids.flatten(0, 1)).view(q, -1)
        top_s, top_i = torch.topk(scores, st.keep, dim=1)
        cand = torch.gather(cand, 1, top_i)
        out.append((cand, top_s))
        if i + 1 < len(stages):
            dense = torch.gather(dense, 1, top_i.unsqueeze(-1).expand(-1, -1, DENSE))
            ids = torch.gather(ids, 1, top_i.unsqueeze(-1).expand(-1, -1, TABLES))
    return out


def _eager_runner(name, models, device):
    """``fn(host dense, host ids) -> (ids, scores)`` on the host, synchronised."""
    cuda = device.type == "cuda"

    def fn(hd, hi):
        d = hd.to(device, non_blocking=True)
        i = hi.to(device, non_blocking=True)
        ids, scores = run_pipeline(name, models, d, i)[-1]
        ids, scores = ids.cpu(), scores.cpu()
        if cuda:
            torch.cuda.synchronize(device)
        return ids, scores

    return fn


def _graph_runner(name, models, device, q, host_dense):
    """The whole pipeline, top-k and gathers included, captured as one CUDA graph for
    batches of ``q`` queries; inputs go through static buffers."""
    items = entry_stages(name)[0].items
    s_dense = torch.empty(q, items, DENSE, device=device)
    s_ids = torch.zeros(q, items, TABLES, dtype=torch.int64, device=device)
    s_dense.copy_(host_dense[:q])
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # capture needs the kernels' lazy setup done first
        for _ in range(3):
            run_pipeline(name, models, s_dense, s_ids)
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        s_out_ids, s_out_scores = run_pipeline(name, models, s_dense, s_ids)[-1]
    h_ids = torch.empty(s_out_ids.shape, dtype=s_out_ids.dtype, pin_memory=True)
    h_scores = torch.empty(s_out_scores.shape, dtype=s_out_scores.dtype, pin_memory=True)

    def fn(hd, hi):
        s_dense.copy_(hd, non_blocking=True)
        s_ids.copy_(hi, non_blocking=True)
        graph.replay()
        h_ids.copy_(s_out_ids, non_blocking=True)
        h_scores.copy_(s_out_scores, non_blocking=True)
        torch.cuda.synchronize(device)
        return h_ids, h_scores

    fn.graph = graph  # keeps the graph, and its memory pool, alive with the runner
    return fn


class _PowerSampler:
    """Board power from ``nvidia-smi -lms 100`` read in a background thread."""

    def __init__(self, gpu_id: str | None, period_ms: int = 100):
        self.samples: list[float] = []
        self._lock = threading.Lock()
        cmd = ["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
               f"--loop-ms={period_ms}"]
        if gpu_id:
            cmd.append(f"--id={gpu_id}")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self._proc.stdout:
            try:
                w = float(line.strip().split(",")[0])
            except ValueError:  # "[N/A]" on boards that do not report power
                continue
            with self._lock:
                self.samples.append(w)

    def window(self):
        """Mark the start of a window; `mean_since` averages the samples after it."""
        with self._lock:
            return len(self.samples)

    def mean_since(self, mark: int) -> float | None:
        with self._lock:
            s = self.samples[mark:]
        return round(sum(s) / len(s), 1) if s else None

    def close(self):
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=5)


def _gpu_id(device) -> str | None:
    try:
        u = str(torch.cuda.get_device_properties(device).uuid)
    except (AttributeError, RuntimeError):
        return None
    return u if u.startswith("GPU-") else f"GPU-{u}"


def _open_sampler(device):
    if shutil.which("nvidia-smi") is None:
        return None, "nvidia-smi not found: no power readings"
    try:
        sampler = _PowerSampler(_gpu_id(device))
    except OSError as e:
        return None, f"nvidia-smi failed: {e}"
    time.sleep(1.0)
    if not sampler.samples:  # a bad --id makes nvidia-smi exit at once
        sampler.close()
        try:
            sampler = _PowerSampler(None)
        except OSError as e:
            return None, f"nvidia-smi failed: {e}"
        time.sleep(1.0)
    if not sampler.samples:
        sampler.close()
        return None, "nvidia-smi gave no power.draw readings"
    return sampler, None


def _latency(fn, pool, queries, warmup, budget_s):
    """Per-query latencies (ms) cycling through ``pool``; the last answer."""
    dense, ids = pool
    n = dense.shape[0]
    t_end = time.perf_counter() + budget_s
    for j in range(warmup):
        answer = fn(dense[j % n:j % n + 1], ids[j % n:j % n + 1])
        if time.perf_counter() > t_end:
            break
    lat = []
    t_end = time.perf_counter() + budget_s
    for j in range(queries):
        hd, hi = dense[j % n:j % n + 1], ids[j % n:j % n + 1]
        t0 = time.perf_counter()
        answer = fn(hd, hi)
        t1 = time.perf_counter()
        lat.append((t1 - t0) * 1e3)
        if t1 > t_end:
            break
    return lat, answer


def _throughput(fn, batches, q, warmup, min_queries, min_s, max_s, sampler):
    """Queries per second over back-to-back batches of ``q`` and mean power meanwhile."""
    for j in range(max(1, min(warmup, 3))):
        fn(*batches[j % len(batches)])
    mark = sampler.window() if sampler else None
    n, t0 = 0, time.perf_counter()
    while True:
        fn(*batches[n % len(batches)])
        n += 1
        dt = time.perf_counter() - t0
        if dt >= max_s or (n >= 2 and n * q >= min_queries and dt >= min_s):
            break
    row = {"batch": q, "qps": round(q * n / dt, 1), "batches": n, "seconds": round(dt, 3)}
    if sampler:
        row["power_w"] = sampler.mean_since(mark)
        row["qps_per_w"] = round(row["qps"] / row["power_w"], 2) if row["power_w"] else None
    return row


def _host_batches(q, rows, items, pinned, seed, count):
    out = []
    for c in range(count):
        d, i = make_queries(q, rows, items, seed=seed + c)
        out.append((d.pin_memory(), i.pin_memory()) if pinned else (d, i))
    return out


def _cell(name, device, mode, dtype, models, pool, batch_sizes, queries, warmup, rows,
          budget_s, sampler, progress):
    """One (pipeline or stage entry, device, mode, dtype) row: latency, then throughput per
    batch size."""
    items = entry_stages(name)[0].items
    cuda = device.type == "cuda"
    row = {**_row_head(name, device.type, mode, dtype), "macs_per_query": macs_per_query(name)}
    if mode == "cuda-graph":
        fn = _graph_runner(name, models, device, 1, pool[0])
    else:
        fn = _eager_runner(name, models, device)
    lat, (ans_ids, _) = _latency(fn, pool, queries, warmup, budget_s / 2)
    del fn
    row.update(p50_ms=round(float(np.percentile(lat, 50)), 4),
               p95_ms=round(float(np.percentile(lat, 95)), 4),
               mean_ms=round(float(np.mean(lat)), 4), queries=len(lat),
               stopped_early=len(lat) < queries, answer_k=int(ans_ids.shape[-1]))
    if sampler:
        torch.cuda.synchronize(device)
        time.sleep(1.0)
        mark = sampler.window()
        time.sleep(1.0)
        row["idle_power_w"] = sampler.mean_since(mark)
    row["batched"] = []
    per_batch_s = budget_s / 2 / max(1, len(batch_sizes))
    for q in batch_sizes:
        batches = _host_batches(q, rows, items, cuda, seed=1000 + q, count=2)
        if mode == "cuda-graph":
            fn = _graph_runner(name, models, device, q, batches[0][0])
        else:
            fn = _eager_runner(name, models, device)
        # power needs a run long enough for the 100 ms samples to settle
        min_s = min(2.0, per_batch_s) if sampler else 0.0
        row["batched"].append(_throughput(fn, batches, q, warmup, queries, min_s,
                                          per_batch_s, sampler))
        del fn, batches
        if cuda:
            torch.cuda.empty_cache()
    progress(_table_line(row))
    return row


def _row_head(name, dev, mode, dtype) -> dict:
    """A row's first fields; a stage entry's also name its model, items and keep."""
    row = {"pipeline": name, "device": dev, "mode": mode, "dtype": dtype}
    if name in STAGES:
        row.update(asdict(STAGES[name]))
    return row


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_baselines(devices=("cpu", "cuda"), queries: int = 200, warmup: int = 20,
                  batch_sizes=(16, 64, 256), rows: int = 100_000, threads: int | None = None,
                  progress=print, time_budget_s: float = 30.0, cpu_max_batch: int = 64,
                  pipelines=None, stages=()) -> dict:
    """Measure the pipelines of `PIPELINES` (and single stages of `STAGES`) on each device in
    each mode of `MODES`.

    Parameters
    ----------
    devices : iterable of {"cpu", "cuda"}
        Devices to measure; ``cuda`` is skipped, with a note, when no GPU is visible.
    queries : int
        Timed single queries per cell (fewer if the time budget runs out), and the least
        queries each batched run processes.
    warmup : int
        Untimed queries before timing (batched runs use at most 3 untimed batches).
    batch_sizes : iterable of int
        Queries per batch for the throughput runs.
    rows : int
        Rows of each embedding table.
    threads : int, optional
        CPU threads for PyTorch (default ``os.cpu_count()``); restored afterwards.
    progress : callable
        Gets a line of text per finished cell.
    time_budget_s : float
        Measuring time per cell, about: half for single queries, half shared by the
        batch sizes.
    cpu_max_batch : int
        Batch sizes on the CPU are clipped to this, as large batches there run for
        seconds each.
    pipelines : iterable of str, optional
        Keys of `PIPELINES` (default: all; pass ``()`` to measure stage entries alone).
    stages : iterable of str, optional
        Keys of `STAGES`, measured after the pipelines in the same way (default: none;
        ``list(STAGES)`` for all).

    Returns
    -------
    dict
        ``{"meta": {...}, "rows": [...]}``: one row per pipeline or stage entry, device,
        mode and dtype with ``p50_ms``, ``p95_ms``, ``mean_ms`` (one query, host to host),
        ``queries`` (how many were timed), ``batched`` (``batch``, ``qps``, ``power_w``,
        ``qps_per_w``, ``batches``, ``seconds``) and ``macs_per_query``; a row whose run
        failed has ``error`` instead. The entry's name is in ``pipeline``; a stage entry's
        row also has ``model``, ``items`` and ``keep``, and ``meta`` then has ``stages``
        beside ``pipelines``.
    """
    _need_torch()
    threads = threads or os.cpu_count() or 1
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    pipelines = list(PIPELINES if pipelines is None else pipelines)
    stages = list(stages or ())
    for name in pipelines:
        if name not in PIPELINES:
            raise ValueError(f"unknown pipeline {name!r} (one of {'; '.join(PIPELINES)})")
    for name in stages:
        if name not in STAGES:
            raise ValueError(f"unknown stage entry {name!r} (one of {'; '.join(STAGES)})")
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_device": None,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "params": {"queries": queries, "warmup": warmup, "batch_sizes": list(batch_sizes),
                   "rows": rows, "time_budget_s": time_budget_s,
                   "cpu_max_batch": cpu_max_batch, "devices": list(devices)},
        "models": {k: asdict(v) for k, v in MODELS.items()},
        "pipelines": {k: [asdict(s) for s in PIPELINES[k]] for k in pipelines},
        "notes": [],
    }
    if stages:
        meta["stages"] = {k: asdict(STAGES[k]) for k in stages}
    rows_out = []
    try:
        with torch.inference_mode():
            for dev in devices:
                rows_out += _run_device(dev, meta, pipelines + stages, queries, warmup,
                                        batch_sizes, rows, time_budget_s, cpu_max_batch,
                                        progress)
    finally:
        torch.set_num_threads(old_threads)
    return {"meta": meta, "rows": rows_out}


def _run_device(dev, meta, entries, queries, warmup, batch_sizes, rows, budget_s,
                cpu_max_batch, progress):
    if dev not in MODES:
        raise ValueError(f"unknown device {dev!r} (one of {', '.join(MODES)})")
    if dev == "cuda" and not torch.cuda.is_available():
        meta["notes"].append("cuda skipped: torch.cuda.is_available() is False")
        progress("cuda skipped: torch.cuda.is_available() is False")
        return []
    device = torch.device(dev, 0) if dev == "cuda" else torch.device("cpu")
    sampler = None
    if dev == "cuda":
        meta["cuda_device"] = torch.cuda.get_device_name(device)
        meta["cuda_tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        sampler, note = _open_sampler(device)
        if note:
            meta["notes"].append(note)
        sizes = list(batch_sizes)
    else:
        sizes = sorted({min(b, cpu_max_batch) for b in batch_sizes})
    meta.setdefault("batch_sizes_used", {})[dev] = sizes
    # single-query inputs, one pool per number of items (the pipelines' is the same as ever)
    pools = {}
    for name in entries:
        items = entry_stages(name)[0].items
        if items not in pools:
            pools[items] = _host_batches(8, rows, items, dev == "cuda", seed=1, count=1)[0]
    out = []
    try:
        for mode, dtype in MODES[dev]:
            models = build_models(rows, device, dtype)
            for name in entries:
                pool = pools[entry_stages(name)[0].items]
                try:
                    out.append(_cell(name, device, mode, dtype, models, pool, sizes, queries,
                                     warmup, rows, budget_s, sampler, progress))
                except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                    # keep going: one failed cell (memory, capture) should not lose the rest
                    out.append({**_row_head(name, dev, mode, dtype),
                                "error": f"{type(e).__name__}: {str(e)[:300]}"})
                    progress(f"{name} {dev} {mode} {dtype}: {out[-1]['error']}")
            del models
            if dev == "cuda":
                torch.cuda.empty_cache()
    finally:
        if sampler:
            sampler.close()
    return out


def _table_line(r) -> str:
    if "error" in r:
        return f"{r['pipeline']:<27} {r['device']:<4} {r['mode']:<10} {r['dtype']:<4} ERROR"
    qps = "  ".join(f"b{b['batch']}:{b['qps']:.0f}"
                    + (f"@{b['power_w']:.0f}W" if b.get("power_w") else "")
                    for b in r["batched"])
    return (f"{r['pipeline']:<27} {r['device']:<4} {r['mode']:<10} {r['dtype']:<4} "
            f"{r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} {r['mean_ms']:>9.3f} {r['queries']:>5}  "
            f"{qps}")


def format_table(result: dict) -> str:
    """A short human-readable table of `run_baselines`' result.

    Parameters
    ----------
    result : dict
        As returned by `run_baselines`.

    Returns
    -------
    str
        One line per row: latency percentiles in ms, queries timed, QPS per batch size.
    """
    head = (f"{'pipeline':<27} {'dev':<4} {'mode':<10} {'type':<4} {'p50 ms':>9} "
            f"{'p95 ms':>9} {'mean ms':>9} {'n':>5}  QPS per batch size")
    lines = [head] + [_table_line(r) for r in result["rows"]]
    lines += [f"note: {n}" for n in result["meta"]["notes"]]
    return "\n".join(lines)


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(",") if x)


def _names(s: str | None, table: dict) -> list[str] | None:
    """Comma-separated keys of ``table``; ``"all"`` for every key, None stays None."""
    if s is None:
        return None
    if s.strip() == "all":
        return list(table)
    return [x.strip() for x in s.split(",") if x.strip()]


def main(argv=None) -> int:
    """Command line: measure the baselines, print a table, optionally write JSON.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    p = argparse.ArgumentParser(prog="python -m rpaccel.scripts.baselines",
                                description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu,cuda")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-sizes", type=_ints, default=(16, 64, 256))
    p.add_argument("--rows", type=int, default=100_000, help="rows per embedding table")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--time-budget", type=float, default=30.0,
                   help="seconds of measuring per pipeline, device and mode, about")
    p.add_argument("--cpu-max-batch", type=int, default=64)
    p.add_argument("--pipelines", default=None,
                   help=f"comma-separated subset of: {'; '.join(PIPELINES)}; or 'all' "
                        "(default: all, unless --stages is given)")
    p.add_argument("--stages", nargs="?", const="all", default=None,
                   help="measure single-stage entries instead of the pipelines (as well, "
                        "with --pipelines): comma-separated subset of: "
                        f"{'; '.join(STAGES)} (default: all)")
    p.add_argument("--out", default=None, help="write the JSON here")
    a = p.parse_args(argv)
    stages = _names(a.stages, STAGES)
    pipelines = _names(a.pipelines, PIPELINES)
    if stages is not None and pipelines is None:
        pipelines = []
    result = run_baselines(devices=tuple(d for d in a.devices.split(",") if d),
                           queries=a.queries, warmup=a.warmup, batch_sizes=a.batch_sizes,
                           rows=a.rows, threads=a.threads, time_budget_s=a.time_budget,
                           cpu_max_batch=a.cpu_max_batch, pipelines=pipelines,
                           stages=stages or (),
                           progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
