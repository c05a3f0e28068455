"""Stimulus for the top-k unit: queries of (id, score) packed into lane beats."""

from __future__ import annotations

import numpy as np

from ..golden.pipeline import topk

__all__ = ["pack_query", "expected_output", "expected_approx", "query_patterns"]


def pack_query(ids, scores, lanes: int, k: int, hole_prob: float = 0.0, rng=None):
    """Beats (dicts for `topk_layouts`) carrying one query; lanes are filled in order,
    with random empty lanes when ``hole_prob`` > 0; the last beat has ``last`` set."""
    rng = rng or np.random.default_rng(0)
    items = list(zip(ids, scores, strict=True))
    beats, cur = [], []
    empty = {"valid": 0, "id": 0, "score": 0}
    while items:
        if hole_prob and rng.random() < hole_prob:
            cur.append(empty)
        else:
            i, s = items.pop(0)
            cur.append({"valid": 1, "id": int(i), "score": int(s)})
        if len(cur) == lanes:
            beats.append(cur)
            cur = []
    if cur or not beats:
        beats.append(cur + [empty] * (lanes - len(cur)))
    out = [{"lanes": b, "k": 0, "last": 0} for b in beats]
    out[-1]["k"], out[-1]["last"] = k, 1
    return out


def expected_output(ids, scores, k: int):
    """Golden survivors ``[(id, score, last)]`` best first."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    sel = topk(scores, ids, k) if len(ids) else np.zeros(0, int)
    return [(int(ids[j]), int(scores[j]), int(n == len(sel) - 1)) for n, j in enumerate(sel)]


def query_patterns(n: int, score_bits: int, rng):
    """Named score patterns of length ``n``: random, all equal, ascending, descending, few
    distinct values (many ties), extremes."""
    lo, hi = -(1 << (score_bits - 1)), (1 << (score_bits - 1)) - 1
    return {
        "random": rng.integers(lo, hi, n, endpoint=True),
        "equal": np.full(n, int(rng.integers(lo, hi))),
        "ascending": np.sort(rng.integers(lo, hi, n)),
        "descending": np.sort(rng.integers(lo, hi, n))[::-1],
        "ties": rng.integers(-2, 3, n),
        "extremes": rng.choice([lo, hi, 0, -1], n),
    }


def expected_approx(ids, scores, k: int, window):
    """Golden output of the approximate filter ``[(id, score, last)]`` in arrival order."""
    from ..golden.pipeline import approx_topk

    ids, scores = np.asarray(ids), np.asarray(scores)
    sel = approx_topk(scores, k, window) if len(ids) else np.zeros(0, int)
    return [(int(ids[j]), int(scores[j]), int(n == len(sel) - 1)) for n, j in enumerate(sel)]
