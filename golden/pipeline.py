"""Multi-stage recommendation pipelines, exact top-k, and quality metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import MovieLens
from .model import Batch, StageModel
from .quantize import QuantizedStage

__all__ = [
    "topk",
    "ApproxWindow",
    "approx_bins",
    "approx_topk",
    "calibrate_window",
    "Stage",
    "Pipeline",
    "parse_pipeline",
    "hit_rate",
    "paired_difference",
    "rank_of",
    "ndcg",
    "evaluate",
]


def topk(scores, positions, k: int) -> np.ndarray:
    """Indices of the ``k`` best items, best first: higher score wins, ties go to the lower
    candidate position (the item's index in the original query)."""
    scores = np.asarray(scores)
    order = np.lexsort((np.asarray(positions), -scores))
    return order[:k]


@dataclass(frozen=True)
class ApproxWindow:
    """Score window of the approximate filter: ``bin = clamp((score - offset) >> shift, 0,
    bins - 1)``."""

    offset: int
    shift: int
    bins: int = 16


def approx_bins(scores, window: ApproxWindow) -> np.ndarray:
    """Histogram bin of every integer score (higher bin = better)."""
    s = np.asarray(scores, dtype=np.int64)
    return np.clip((s - window.offset) >> window.shift, 0, window.bins - 1)


def approx_topk(scores, k: int, window: ApproxWindow) -> np.ndarray:
    """The RPAccel artifact's histogram/threshold filter (``filtering.v``), made exact in
    count: scores are counted into bins; walking down from the top bin, the threshold bin t
    is the first where the running count reaches ``k``. Every item of a bin above t is kept,
    then items of bin t in arrival order until ``k`` are kept. Returns indices in arrival
    order (not ranked)."""
    b = approx_bins(scores, window)
    counts = np.bincount(b, minlength=window.bins)
    above = np.cumsum(counts[::-1])[::-1]  # items in bins >= t
    hit = np.flatnonzero(above >= k)
    if len(hit) == 0:
        return np.arange(len(b))
    t = int(hit[-1])
    keep_above = b > t
    room = k - int(keep_above.sum())
    in_t = np.flatnonzero(b == t)[:room]
    sel = keep_above.copy()
    sel[in_t] = True
    return np.flatnonzero(sel)


def calibrate_window(scores, bins: int = 16, lo_q: float = 0.1, hi_q: float = 99.9):
    """Window covering the central range of typical integer scores with ``bins`` bins."""
    lo, hi = np.percentile(np.asarray(scores, dtype=np.float64), [lo_q, hi_q])
    span = max(1.0, (hi - lo) / bins)
    return ApproxWindow(int(np.floor(lo)), int(np.ceil(np.log2(span))), bins)


@dataclass
class Stage:
    """A pipeline stage: a model, how many items it keeps, and how it filters them
    (``window`` set: the approximate histogram filter; else exact top-k)."""

    model: StageModel | QuantizedStage
    keep: int
    window: ApproxWindow | None = None

    def score(self, batch: Batch) -> np.ndarray:
        return self.model.forward(batch, check=False)

    def select(self, scores, positions) -> np.ndarray:
        if self.window is None:
            return topk(scores, positions, self.keep)
        return approx_topk(scores, self.keep, self.window)


@dataclass
class Pipeline:
    """Stages run in order; each ranks the survivors of the previous one and keeps its top
    ``keep``. The last stage's survivors, in rank order, are the answer."""

    stages: list[Stage]
    name: str = ""

    def __post_init__(self):
        if not 1 <= len(self.stages) <= 3:
            raise ValueError(f"a pipeline has 1 to 3 stages, not {len(self.stages)}")
        for s, st in enumerate(self.stages):
            if st.keep < 1:
                raise ValueError(f"stage {s} keep must be positive, not {st.keep}")
        if self.stages[-1].window is not None:
            raise ValueError("the last stage must filter exactly: its survivors, in rank "
                             "order, are the answer")

    @property
    def precision(self) -> str:
        return "int8" if isinstance(self.stages[0].model, QuantizedStage) else "float"

    @property
    def filtering(self) -> str:
        return "approx" if any(st.window is not None for st in self.stages) else "exact"

    def rank(self, batch: Batch, check: bool = True):
        """Run one query (all its candidates in ``batch``).

        Returns
        -------
        positions : numpy.ndarray
            Candidate positions of the final survivors, best first.
        scores : numpy.ndarray
            Their last-stage scores.
        items_per_stage : list of int
        """
        if check:
            self.stages[0].model.check_batch(batch)
        pos = np.arange(batch.size)
        counts, scores = [], np.zeros(0)
        for st in self.stages:
            counts.append(len(pos))
            s = st.score(batch.take(pos))
            keep = st.select(s, pos)
            pos, scores = pos[keep], s[keep]
        return pos, scores, counts

    def rank_many(self, ml: MovieLens, queries, chunk: int = 4):
        """Rank MovieLens queries in chunks (one batched model call per stage per chunk).

        Returns
        -------
        list of (positions best first, items per stage) per query.
        """
        out = []
        for c in range(0, len(queries), chunk):
            qs = queries[c:c + chunk]
            survivors = [np.arange(len(cands)) for _, cands, _ in qs]
            counts = [[] for _ in qs]
            for st in self.stages:
                users = np.concatenate([np.full(len(p), u) for (u, _, _), p in zip(qs, survivors,
                                                                                   strict=True)])
                items = np.concatenate([cands[p] for (_, cands, _), p in zip(qs, survivors,
                                                                             strict=True)])
                scores = st.score(ml.batch(users, items))
                splits = np.split(scores, np.cumsum([len(p) for p in survivors])[:-1])
                for q, (p, s) in enumerate(zip(survivors, splits, strict=True)):
                    counts[q].append(len(p))
                    survivors[q] = p[st.select(s, p)]
            out.extend(zip(survivors, counts, strict=True))
        return out


def parse_pipeline(spec: str, models: dict) -> Pipeline:
    """``"small:200,large:10"`` -> a two-stage pipeline of the named models."""
    stages = []
    for part in spec.split(","):
        name, _, keep = part.partition(":")
        if name not in models:
            raise ValueError(f"pipeline stage model must be one of {sorted(models)}, not "
                             f"{name!r}")
        if not keep.isdigit():
            raise ValueError(f"pipeline stage {part!r} must be MODEL:KEEP with KEEP a positive "
                             f"integer")
        stages.append(Stage(models[name], int(keep)))
    return Pipeline(stages, name=spec)


def rank_of(scores, pos: int) -> int:
    """Rank (0 = first) of candidate ``pos`` when all of ``scores`` are ranked by `topk`'s
    rule (higher score first, ties by lower position)."""
    scores = np.asarray(scores)
    return int(np.sum(scores > scores[pos]) + np.sum(scores[:pos] == scores[pos]))


def _hits(rank, k: int) -> np.ndarray:
    """Per query: the positive ranked within the top ``k`` (rank 0 = first, -1 = filtered
    out)."""
    rank = np.asarray(rank)
    return (rank >= 0) & (rank < k)


def hit_rate(rank: np.ndarray, k: int) -> float:
    """Fraction of queries whose positive is ranked within the top ``k`` (rank 0 = first,
    -1 = filtered out)."""
    return float(np.mean(_hits(rank, k)))


def _gains(rank: np.ndarray, k: int) -> np.ndarray:
    """Per-query DCG@k with one relevant item: 1 / log2(rank + 2) within the top k, else 0."""
    hit = _hits(rank, k)
    return np.where(hit, 1.0 / np.log2(np.where(hit, rank, 0) + 2), 0.0)


def ndcg(rank: np.ndarray, k: int, recpipe: bool = False) -> float:
    """NDCG@k with one relevant item per query (IDCG = 1).

    With ``recpipe=True``, RecPipe's variant: DCG divided by the DCG of ``k`` relevant items.
    """
    gains = _gains(rank, k)
    if recpipe:
        gains = gains / np.sum(1.0 / np.log2(np.arange(k) + 2))
    return float(np.mean(gains))


def ranked_metrics(rank: np.ndarray, ks=(1, 5, 10)) -> dict:
    """HR@k, NDCG@k (standard and RecPipe's) of the positives' ranks, with the standard
    error of the mean beside HR@k and NDCG@k (``hr@10_se``, ...)."""
    n = len(rank)
    res = {}
    for k in ks:
        hit = _hits(rank, k)
        res[f"hr@{k}"] = round(float(hit.mean()), 4)
        res[f"hr@{k}_se"] = round(float(hit.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0, 4)
    for k in ks[1:]:
        gains = _gains(rank, k)
        res[f"ndcg@{k}"] = round(ndcg(rank, k), 4)
        res[f"ndcg@{k}_se"] = round(float(gains.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
                                    4)
    for k in ks[1:]:
        res[f"ndcg@{k}_recpipe"] = round(ndcg(rank, k, recpipe=True), 4)
    return res


def paired_difference(rank_a, rank_b, k: int = 10,
                      digits: int | None = 4) -> tuple[float, float]:
    """HR@k of ranker a minus ranker b on the same queries, with the standard error of the
    paired difference (per-query hit of a minus hit of b), rounded to ``digits`` (``None``:
    unrounded)."""
    d = _hits(rank_a, k).astype(float) - _hits(rank_b, k)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    if digits is None:
        return mean, se
    return round(mean, digits), round(se, digits)


def evaluate(pipeline: Pipeline, ml: MovieLens, queries, ks=(1, 5, 10),
             ranks: bool = False) -> dict:
    """Quality and cost of a pipeline on MovieLens queries (with ``ranks``, also the
    positive's rank in every query under ``"ranks"``, -1 where it was filtered out)."""
    ranked = pipeline.rank_many(ml, queries)
    rank = np.array([int(np.flatnonzero(p == pos)[0]) if np.any(p == pos) else -1
                     for (p, _), (_, _, pos) in zip(ranked, queries, strict=True)])
    macs = np.mean([sum(n * st.model.macs_per_item() for n, st in zip(c, pipeline.stages,
                                                                       strict=True))
                    for _, c in ranked])
    res = {"pipeline": pipeline.name, "precision": pipeline.precision,
           "filter": pipeline.filtering,
           "stages": [st.model.name for st in pipeline.stages],
           "keep": [st.keep for st in pipeline.stages], "queries": len(queries)}
    res.update(ranked_metrics(rank, ks))
    res["macs_per_query"] = int(round(macs))
    if ranks:
        res["ranks"] = rank
    return res
