"""Host side of the embedding unit: model-load image, DRAM image and golden expectations.

The DRAM layout is the golden cache model's (`rpaccel.golden.cache.table_bases`): table t
from a line-aligned base, row r at ``base[t] + r * row_bytes[t]``, int8 rows packed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import RPAccelConfig, require
from .golden.cache import CacheModel, batch_hot_order, pin_hot_rows, table_bases
from .golden.numerics import requantize
from .program import pack_lanes

__all__ = ["EmbeddingImage", "EmbError", "batch_bags"]


class EmbError(ValueError):
    """Tables that do not fit the embedding unit; the message names limit and value."""


def batch_bags(batch, tables=None):
    """Bags ``(table, ids)`` of a `Batch` in item order (every table of every item)."""
    bags = []
    tables = range(len(batch.indices)) if tables is None else tables
    ends = [np.append(o[1:], len(i)) for i, o in zip(batch.indices, batch.offsets, strict=True)]
    for item in range(batch.size):
        for t in tables:
            ids = batch.indices[t][batch.offsets[t][item]:ends[t][item]]
            bags.append((t, [int(v) for v in ids]))
    return bags


def _check(ok, what, rule, value):
    require(ok, what, rule, value, EmbError)


@dataclass
class EmbeddingImage:
    """Int8 tables, pinned rows and pooling scales, laid out for one `RPAccelConfig`.

    Parameters
    ----------
    config : RPAccelConfig
    tables : list of numpy.ndarray
        int8 tables ``[rows, d]``, ``d`` a power of two up to ``emb_dim``.
    static_rows : dict of int to set of int
        Rows pinned in the static cache (`rpaccel.golden.cache.profile_hot_rows`).
    pool_mult, pool_shift : array_like of int
        Per-table requantization of the pooled sums.
    dram_base : int
        Byte address of the first table (line-aligned), so that several units' tables
        share one DRAM.
    """

    config: RPAccelConfig
    tables: list
    static_rows: dict
    pool_mult: np.ndarray
    pool_shift: np.ndarray
    dram_base: int = 0

    def __post_init__(self):
        cfg = self.config
        _check(1 <= len(self.tables) <= cfg.emb_tables, "number of tables",
               f"from 1 to emb_tables {cfg.emb_tables}", len(self.tables))
        for t, e in enumerate(self.tables):
            d = e.shape[1]
            _check(d <= cfg.emb_dim and d & (d - 1) == 0, f"row bytes of table {t}",
                   f"a power of two up to emb_dim {cfg.emb_dim}", d)
        self.rows = [int(e.shape[0]) for e in self.tables]
        self.row_bytes = [int(e.shape[1]) for e in self.tables]
        _check(sum(self.rows) <= cfg.emb_map_rows, "rows of all tables",
               f"at most emb_map_rows {cfg.emb_map_rows}", sum(self.rows))
        n_static = sum(len(r) for r in self.static_rows.values())
        _check(n_static <= cfg.static_rows, "pinned rows", f"at most static_rows "
               f"{cfg.static_rows}", n_static)
        _check(self.dram_base % cfg.line_bytes == 0 and self.dram_base >= 0, "dram_base",
               f"a non-negative multiple of line_bytes {cfg.line_bytes}", self.dram_base)
        self.bases = [b + self.dram_base for b in
                      table_bases(self.rows, self.row_bytes, cfg.line_bytes)]
        self.map_bases = np.concatenate([[0], np.cumsum(self.rows)[:-1]]).astype(int).tolist()
        end = self.bases[-1] + -(-self.rows[-1] * self.row_bytes[-1] // cfg.line_bytes) \
            * cfg.line_bytes
        _check(end <= 1 << cfg.axi_addr_bits, "DRAM bytes of the tables",
               "at most 2**axi_addr_bits", end)
        self.dram_size = end

    @classmethod
    def for_stage(cls, config: RPAccelConfig, q, profile=None, static_bytes: int = 0,
                  dram_base: int = 0) -> EmbeddingImage:
        """The image of a `QuantizedStage`'s tables, its static cache pinned with the rows
        a frequency profile of ``profile`` (a `Batch`) ranks hottest, within
        ``static_bytes`` and the static cache's slots (none without a profile)."""
        row_bytes = [int(e.shape[1]) for e in q.emb]
        pinned = {}
        if profile is not None and static_bytes:
            budget = min(static_bytes, config.static_rows * min(row_bytes))
            pinned = pin_hot_rows(batch_hot_order(profile), row_bytes, budget)
        return cls(config, [np.asarray(e) for e in q.emb], pinned, np.asarray(q.pool_mult),
                   np.asarray(q.pool_shift), dram_base=dram_base)

    def dram(self) -> bytes:
        """The DRAM bytes from address 0 to the end of the last table (zeros below
        ``dram_base``)."""
        img = bytearray(self.dram_size)
        for e, base in zip(self.tables, self.bases, strict=True):
            raw = np.asarray(e, np.int64).astype(np.int8).tobytes()
            img[base:base + len(raw)] = raw
        return bytes(img)

    def load_beat_count(self) -> int:
        """Beats of `load_beats` (without making them)."""
        return len(self.tables) + sum(self.rows) + \
            sum(len(r) for r in self.static_rows.values())

    def load_beats(self) -> list:
        """``(target, addr, data)`` beats of the unit's ``load`` stream."""
        from .hw.embedding import EmbTarget, emb_layouts

        table_l, map_l, _, _, _ = emb_layouts(self.config)
        beats = []
        for t in range(len(self.tables)):
            beats.append((EmbTarget.TABLE, t, table_l.const({
                "rows": self.rows[t], "base": self.bases[t],
                "row_shift": self.row_bytes[t].bit_length() - 1, "map_base": self.map_bases[t],
                "mult": int(self.pool_mult[t]), "shift": int(self.pool_shift[t])})
                .as_value().value))
        slot = 0
        for t, e in enumerate(self.tables):
            pinned = self.static_rows.get(t, set())
            for r in range(self.rows[t]):
                if r in pinned:
                    beats.append((EmbTarget.STATIC, slot, pack_lanes(e[r], 8)))
                    entry = {"static": 1, "slot": slot}
                    slot += 1
                else:
                    entry = {"static": 0, "slot": 0}
                beats.append((EmbTarget.MAP, self.map_bases[t] + r,
                              map_l.const(entry).as_value().value))
        return beats

    def cache_model(self) -> CacheModel:
        cfg = self.config
        return CacheModel(self.rows, self.row_bytes, {t: set(r) for t, r in
                                                        self.static_rows.items()},
                          cfg.cache_sets, cfg.cache_ways, cfg.line_bytes)

    def _unit_models(self, bags) -> list:
        """One golden cache model per embedding unit, fed the in-range ids of ``bags``
        whose table is the unit's (t mod ``emb_units``)."""
        G = self.config.emb_units
        models = [self.cache_model() for _ in range(G)]
        for t, ids in bags:
            for i in ids:
                if 0 <= i < self.rows[t]:
                    models[t % G].lookup(t, int(i))
        return models

    def misses_by_port(self, bags) -> list[int]:
        """Golden DRAM line reads of ``bags`` per AXI port: unit g's cache model (tables t
        with t mod ``emb_units`` = g) on port g mod ``axi_ports``."""
        P = self.config.axi_ports
        models = self._unit_models(bags)
        return [sum(m.stats.misses for g, m in enumerate(models) if g % P == p)
                for p in range(P)]

    def expected(self, bags):
        """Golden results of ``bags`` (list of ``(table, ids)``): ``(vectors, errors,
        counters, first_error)``; a bag with an id outside its table gives zeros and an
        error, and its ids are not looked up. With ``emb_units`` G > 1 each unit has its
        own cache model, fed the lookups of tables t with t mod G its index; the counters
        are summed (and ``first_error`` is then the first bad id of the lowest unit)."""
        cfg = self.config
        G = cfg.emb_units
        models = self._unit_models(bags)
        vecs, errs, first = [], [], None
        firsts = [None] * G
        bad_ids = 0
        for t, ids in bags:
            ok = all(0 <= i < self.rows[t] for i in ids)
            vec = np.zeros(cfg.emb_dim, np.int64)
            for i in ids:
                if not 0 <= i < self.rows[t]:
                    bad_ids += 1
                    firsts[t % G] = firsts[t % G] or (t, int(i))
            if ok:
                s = np.asarray(self.tables[t], np.int64)[list(ids)].sum(axis=0)
                vec[:self.row_bytes[t]] = requantize(s, 0, self.pool_mult[t], self.pool_shift[t])
            vecs.append(vec.tolist())
            errs.append(int(not ok))
        first = next((f for f in firsts if f is not None), None)
        counters = {k: sum(getattr(m.stats, k) for m in models)
                    for k in ("lookups", "static_hits", "dynamic_hits", "misses", "dram_bytes")}
        counters.update(bags=len(bags), err_count=bad_ids)
        return vecs, errs, counters, first
