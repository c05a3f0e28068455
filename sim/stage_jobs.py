"""Host side of the one-stage testbench: model images, query beats, golden top-k."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..emb_program import EmbeddingImage, batch_bags
from ..golden.pipeline import topk
from ..interface import EngineGeometry, feature_pack, query_beats, slot_width
from ..program import compile_stage

__all__ = ["stage_query_job", "write_stage_job"]


def _query_beats(config, q, batch):
    """The stage's query stream of a sub-batch: the top level's query beats of one stage
    (`rpaccel.interface.query_beats`) without the header and the top-level fields."""
    beats = query_beats(config, [q.quantize_dense(batch.dense)], batch_bags(batch))
    return [{k: v for k, v in b.items() if k not in ("head", "stage", "end")}
            for b in beats[1:]]


def stage_query_job(config, q, profile_batch, queries, k, slot=0, mode=0, static_bytes=1024):
    """Load images for one stage model and, per query (a `Batch` of candidates), the
    sub-batches' query beats and run beats and the golden top-k ``[(id, score)]``."""
    geo = EngineGeometry(config)
    prog = compile_stage(config, slot_width(config, slot), mode, q)
    img = EmbeddingImage.for_stage(config, q, profile_batch, static_bytes)
    out = []
    for batch in queries:
        n = batch.size
        scores = q.forward(batch)
        best = topk(scores, np.arange(n), k)
        subs = []
        for s0 in range(0, n, config.sub_batch):
            s1 = min(n, s0 + config.sub_batch)
            sub = batch.take(np.arange(s0, s1))
            subs.append({"items": s1 - s0, "base": s0, "k": k, "last": int(s1 == n),
                         "beats": _query_beats(config, q, sub)})
        out.append({"subs": subs, "expect": [(int(i), int(scores[i])) for i in best]})
    d = q.float_model.emb_dim
    return {"eload": prog.beats, "mload": img.load_beats(), "dram": img.dram(),
            "mode": mode, "dense_words": -(-prog.dense_dim // geo.lanes),
            "tables": len(q.emb), "dw": -(-d // geo.lanes),
            "fpack": feature_pack(d, geo.lanes), "queries": out}


def write_stage_job(path, job) -> Path:
    path = Path(path)
    path.write_bytes(pickle.dumps(job))
    return path
