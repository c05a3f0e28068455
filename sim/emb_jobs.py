"""Host side of the embedding testbench: images, bag traces and golden expectations."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..emb_program import EmbeddingImage

__all__ = ["write_job", "run_embedding", "random_job"]


def write_job(path, image: EmbeddingImage, bags) -> Path:
    """Pickle the load image, DRAM bytes, bags and golden results for `tb_embedding`."""
    vecs, errs, counters, first = image.expected(bags)
    tables = len(image.rows)
    if image.config.emb_units > 1:
        # an embedding cluster answers in table order: whole items, tables 0 .. T - 1
        assert len(bags) % tables == 0 and all(
            t == k % tables for k, (t, _) in enumerate(bags)), "bags must be whole items"
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump({"load": image.load_beats(), "dram": image.dram(), "bags": bags,
                     "tables": tables, "expect": vecs, "errors": errs, "counters": counters,
                     "first_error": first, "port_misses": image.misses_by_port(bags)}, f)
    return path


def random_job(config, path, seed=0, n_bags=200) -> Path:
    """Three tables of 4, 16 and ``emb_dim``-byte rows, a few pinned rows, Zipf bags of 1-4
    ids (with ``emb_units`` > 1 whole items: tables 0, 1, 2 in turn), one bag with an id
    outside its table."""
    rng = np.random.default_rng(seed)
    dims = sorted({4, min(16, config.emb_dim), config.emb_dim})
    tables = [rng.integers(-127, 128, (r, d)) for r, d in zip((50, 300, 200), dims,
                                                              strict=False)]
    pinned = {0: {1, 2, 3}, 1: {0, 5, 7}}
    image = EmbeddingImage(config, tables, pinned, rng.integers(1 << 14, 1 << 15, len(tables)),
                           rng.integers(15, 18, len(tables)))
    bags = []
    if config.emb_units > 1:
        n_bags -= n_bags % len(tables)
    for k in range(n_bags):
        # an embedding cluster answers in table order: its bags come as whole items
        t = k % len(tables) if config.emb_units > 1 else int(rng.integers(0, len(tables)))
        ids = (rng.zipf(1.3, int(rng.integers(1, 5))) - 1) % image.rows[t]
        bags.append((t, [int(v) for v in ids]))
    bad = n_bags // 3
    t = bags[bad][0] if config.emb_units > 1 else 0
    bags[bad] = (t, [1, image.rows[t] + 5])
    return write_job(path, image, bags)


def run_embedding(config, image, bags, run_dir, seed=0, idle=0.3, backpressure=0.3,
                  dram_stall=0.3, metrics=None, job=None, fpack=0):
    """Build (once per config) and run the embedding testbench; ``(tests, failures)``.
    ``job`` runs an existing job file instead of writing one from ``image`` and ``bags``;
    ``fpack``: a cluster's `rpaccel.interface.feature_pack` (vectors a response beat)."""
    from ..hw.emb_cluster import EmbeddingCluster
    from ..hw.embedding import EmbeddingUnit
    from .runner import build, run

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = job or write_job(run_dir / "jobs.pkl", image, bags)
    sb = build(EmbeddingUnit if config.emb_units == 1 else EmbeddingCluster, config,
               "embedding")
    params = {"jobs": str(job), "seed": seed, "idle": idle, "backpressure": backpressure,
              "dram_stall": dram_stall, "fpack": fpack}
    if metrics:
        params["metrics"] = str(metrics)
    return run(sb, "rpaccel.sim.tb_embedding", run_dir, params)
