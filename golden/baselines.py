"""Non-learned rankers every quality table shows beside the stage models, on the same
queries: random, popularity (training-set rating counts) and item-kNN (cosine item-item
similarity of the training ratings, summed over the user's most recent rated items)."""

from __future__ import annotations

import numpy as np

from .pipeline import rank_of, ranked_metrics

__all__ = ["BASELINES", "baseline_scores", "evaluate_baseline", "item_similarity"]

#: Baseline names and the history length item-kNN sums over.
BASELINES = ("random", "popularity", "item-kNN")
KNN_HISTORY = 20


def item_similarity(ml) -> np.ndarray:
    """Cosine similarity of items over the training ratings (binary user x item matrix),
    zero on the diagonal."""
    x = np.zeros((ml.num_users, ml.num_items), np.float32)
    x[ml.train_users, ml.train_items] = 1.0
    co = x.T @ x
    norm = np.sqrt(np.diag(co))
    sim = co / np.maximum(np.outer(norm, norm), 1e-12)
    np.fill_diagonal(sim, 0.0)
    return sim


def baseline_scores(name: str, ml, user: int, cands, rng=None, sim=None) -> np.ndarray:
    """Scores of ``cands`` for ``user`` under baseline ``name`` (higher ranks first)."""
    if name == "random":
        return (rng or np.random.default_rng(0)).random(len(cands))
    if name == "popularity":
        return ml.item_popularity[cands].astype(np.float64)
    if name == "item-kNN":
        hist = ml.history(user, KNN_HISTORY)
        sim = item_similarity(ml) if sim is None else sim
        return sim[np.ix_(hist, cands)].sum(axis=0).astype(np.float64)
    raise ValueError(f"baseline must be one of {list(BASELINES)}, not {name!r}")


def evaluate_baseline(name: str, ml, queries, ks=(1, 5, 10), seed: int = 0,
                      ranks: bool = False) -> dict:
    """The quality row of a baseline on ``queries`` (same keys as
    `rpaccel.golden.pipeline.evaluate`; no MACs)."""
    rng = np.random.default_rng(seed)
    sim = item_similarity(ml) if name == "item-kNN" else None
    positions = [rank_of(baseline_scores(name, ml, user, cands, rng, sim), pos)
                 for user, cands, pos in queries]
    res = {"pipeline": name if name != "item-kNN" else f"item-kNN (last {KNN_HISTORY})",
           "precision": "-", "filter": "-", "stages": [], "keep": [], "queries": len(queries)}
    res.update(ranked_metrics(np.array(positions), ks))
    res["macs_per_query"] = 0
    if ranks:
        res["ranks"] = np.array(positions)
    return res
