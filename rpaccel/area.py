"""Silicon area and power of a configuration: the on-chip memories it generates and an
ASIC model anchored on the RecPipe artifact's GF12 figures.

`memories` lists the RAMs the RTL generator builds for a `RPAccelConfig` (engine weight,
activation, parameter, pair and partial-sum buffers; each embedding unit's static map,
static cache and dynamic cache data; the candidate buffer and the replay id maps; the
top-k units' storage). It follows the same geometry as the hardware (`rpaccel.interface`)
and is checked against the elaborated top level (``tests/test_area.py``).

`asic_area` turns that inventory into mm2 with three constants fitted on the artifact's
published GF12LP figures (ANCHORS.md): a 32 x 32 baseline array is 506,891 um2 (166 mW), the
reconfigurable one 527,807 um2 (171 mW); the TPU-like baseline chip (128 x 128, 4 MB
activation + 4 MB weight + 16 MB embedding SRAM) 26.52 mm2 / 3.65 W and RPAccel 28.55 mm2 /
4.66 W. Hence SRAM (26.52 - 16 x 0.5069) / 24 = 0.767 mm2 per MB and (3.65 - 16 x 0.166) /
24 = 41.4 mW per MB, and RPAccel's remaining 1.69 mm2 / 0.93 W over its three partition
slots beyond the first (top-k unit, controller, embedding unit's logic): 0.565 mm2 and
0.31 W per extra slot. A two-point fit, not a synthesis result: it places designs relative
to the artifact's chips; the clock of the artifact's power figures is not stated, so power
is not scaled with ``fclk_mhz``.
"""

from __future__ import annotations

import math
from functools import lru_cache

from .config import RPAccelConfig

__all__ = ["GF12", "Memory", "memories", "elaborated_memories", "memory_bytes", "asic_area"]

_ARRAY_32_BASE_UM2, _ARRAY_32_RECONF_UM2 = 506_891.0, 527_807.0
_ARRAY_32_BASE_MW, _ARRAY_32_RECONF_MW = 166.0, 171.0
_CHIP_BASE_MM2, _CHIP_RPACCEL_MM2 = 26.52, 28.55
_CHIP_BASE_W, _CHIP_RPACCEL_W = 3.65, 4.66
_CHIP_SRAM_MB = 4 + 4 + 16

#: The fitted constants of the ASIC model (GF12LP, the artifact's figures).
GF12 = {
    "pe_um2": _ARRAY_32_BASE_UM2 / 1024,
    "pe_um2_reconfigurable": _ARRAY_32_RECONF_UM2 / 1024,
    "pe_mw": _ARRAY_32_BASE_MW / 1024,
    "pe_mw_reconfigurable": _ARRAY_32_RECONF_MW / 1024,
    "sram_mm2_per_mb": (_CHIP_BASE_MM2 - 16 * _ARRAY_32_BASE_UM2 / 1e6) / _CHIP_SRAM_MB,
    "sram_mw_per_mb": (_CHIP_BASE_W * 1e3 - 16 * _ARRAY_32_BASE_MW) / _CHIP_SRAM_MB,
    "slot_mm2": (_CHIP_RPACCEL_MM2 - 16 * _ARRAY_32_RECONF_UM2 / 1e6
                 - (_CHIP_BASE_MM2 - 16 * _ARRAY_32_BASE_UM2 / 1e6)) / 3,
    "slot_mw": (_CHIP_RPACCEL_W * 1e3 - 16 * _ARRAY_32_RECONF_MW
                - (_CHIP_BASE_W * 1e3 - 16 * _ARRAY_32_BASE_MW)) / 3,
}


class Memory(tuple):
    """``(name, depth, width_bits)`` of one RAM."""

    __slots__ = ()

    def __new__(cls, name: str, depth: int, width: int):
        return super().__new__(cls, (name, int(depth), int(width)))

    @property
    def bits(self) -> int:
        return self[1] * self[2]


def _bits(n: int) -> int:
    """Bits of ``range(n)`` in Amaranth (at least one)."""
    return max(1, (n - 1).bit_length())


def elaborated_memories(component) -> list[Memory]:
    """The RAMs of an Amaranth component as elaborated (``Fragment.get``), each named by
    its path of submodule names."""
    from amaranth.hdl import Fragment, Shape

    out = []

    def walk(frag, path):
        for sub, name, _ in frag.subfragments:
            walk(sub, (*path, str(name)))
        if type(frag).__name__ == "MemoryInstance":
            out.append(Memory("/".join(path), frag._data.depth,
                              Shape.cast(frag._data.shape).width))

    walk(Fragment.get(component, None), ())
    return out


@lru_cache(maxsize=64)
def _topk_memories(topk_impl: str, topk_lanes: int, topk_k: int, topk_id_bits: int,
                   score_bits: int) -> tuple:
    """The RAMs of one top-k unit, read off the elaborated unit (the heap's levels are too
    irregular for a formula; the queue keeps everything in registers)."""
    from .hw.topk import make_topk

    cfg = RPAccelConfig(topk_impl=topk_impl, topk_lanes=topk_lanes, topk_k=topk_k,
                        topk_id_bits=topk_id_bits, score_bits=score_bits,
                        max_items=1 << topk_id_bits)
    return tuple(elaborated_memories(make_topk(cfg)))


def memories(config: RPAccelConfig, engine_cols: str = "top") -> list[Memory]:
    """The RAMs of the whole accelerator for ``config``, named by their place in the top
    level (``compute/engine0/w_mem``, ``embedding1/static_mem``, ``cbuf``, ``topk0/...``);
    ``engine_cols`` ``"slot"``: the engines as wide as their slots' widest partition (as
    `rpaccel.hw.mlp_engine.ComputeEngine` alone builds them), not one partition."""
    from .interface import (
        EngineGeometry,
        cache_state_bits,
        engine_layouts,
        engine_widths,
        pair_layout,
        pair_row_len,
        query_slots,
        top_layouts,
    )

    cfg = config
    geo = EngineGeometry(cfg)
    lane_bits = cfg.acc_bits + cfg.mult_bits + cfg.shift_bits
    out = []
    for e, w in enumerate(engine_widths(cfg, engine_cols)):
        p = f"compute/engine{e}/"
        out += [Memory(p + "output/psum_mem", cfg.sub_batch, 32 * w),
                Memory(p + "act_mem", geo.act_depth, 8 * geo.lanes),
                Memory(p + "w_mem", cfg.weight_rows, 8 * w),
                Memory(p + "p_mem", cfg.param_rows, lane_bits * w),
                Memory(p + "pair_mem", -(-cfg.max_pairs // pair_row_len(cfg)),
                       pair_layout(cfg).size),
                Memory(p + "prog_mem", cfg.max_steps, engine_layouts(cfg, w).desc.size)]
        # the interaction unit's register files: inter_banks memories (word w in memory w
        # mod inter_banks) of both register files per read operand (two per product
        # computed per cycle), with inter_slots > 1 one per slot of the word
        half = 1 << (-(-geo.words // cfg.inter_banks) - 1).bit_length()
        q = cfg.inter_slots
        out += [Memory(p + f"interaction/freg{r}_{k}" + (f"s{s}" if q > 1 else ""),
                       2 * half, 8 * geo.lanes // q)
                for r in range(2 * cfg.inter_pairs) for k in range(cfg.inter_banks)
                for s in range(q)]
    for s in range(cfg.stages):
        # every unit of a cluster holds the whole image: its own map and caches
        for g in range(cfg.emb_units):
            p = f"embedding{s}/" + (f"unit{g}/" if cfg.emb_units > 1 else "")
            out += [Memory(p + "map_mem", cfg.emb_map_rows, 1 + _bits(cfg.static_rows)),
                    Memory(p + "static_mem", cfg.static_rows, 8 * cfg.emb_dim),
                    Memory(p + "data_mem", cfg.cache_sets * cfg.cache_ways,
                           8 * cfg.line_bytes)]
            # the dynamic cache's tags and LRU ages: a memory per way of each
            out += [Memory(p + f"{kind}{w}", cfg.cache_sets, bits)
                    for kind, bits in zip(("tags", "ages"), cache_state_bits(cfg), strict=True)
                    for w in range(cfg.cache_ways)]
    if cfg.stages > 1:
        slots = query_slots(cfg)
        item_bits = int(math.log2(cfg.max_items))
        beat_bits = int(math.log2(cfg.cand_beats))
        k_bits = max(0, (cfg.topk_k - 1).bit_length())
        out += [Memory("cbuf", slots << (item_bits + beat_bits), top_layouts(cfg)[0].size),
                Memory("clen", slots << item_bits, _bits(cfg.cand_beats + 1))]
        out += [Memory(f"replay{s}/idmap", slots << k_bits, cfg.topk_id_bits)
                for s in range(1, cfg.stages)]
    tk = _topk_memories(cfg.topk_impl, cfg.topk_lanes, cfg.topk_k, cfg.topk_id_bits,
                        cfg.score_bits)
    for s in range(cfg.stages):
        out += [Memory(f"topk{s}/{m[0]}", m[1], m[2]) for m in tk]
    return out


def memory_bytes(config: RPAccelConfig) -> dict:
    """On-chip RAM bytes by kind: ``weights``, ``activations`` (activation, partial-sum,
    parameter, pair and program buffers), ``embedding`` (static maps, static and dynamic caches),
    ``candidates`` (candidate buffer, lengths, replay id maps), ``topk`` and ``total``."""
    kinds = {"weights": 0, "activations": 0, "embedding": 0, "candidates": 0, "topk": 0}
    for m in memories(config):
        name = m[0]
        kind = ("weights" if name.endswith("w_mem") else
                "activations" if name.startswith("compute/") else
                "embedding" if name.startswith("embedding") else
                "topk" if name.startswith("topk") else "candidates")
        kinds[kind] += m.bits
    out = {k: v // 8 for k, v in kinds.items()}
    out["total"] = sum(out.values())
    return out


def asic_area(config: RPAccelConfig) -> dict:
    """GF12 area (mm2) and power (W) of ``config`` by the artifact-anchored model: the
    array (reconfigurable PEs when partitioned), every RAM of `memories` at the fitted
    SRAM density, and the fitted logic of each partition slot beyond the first.

    Returns ``{"array_mm2", "sram_mm2", "logic_mm2", "total_mm2", "power_w",
    "sram_bytes"}``.
    """
    cfg = config
    pes = cfg.array_rows * cfg.array_cols
    reconf = cfg.partitions > 1
    g = GF12
    mem = memory_bytes(cfg)
    mb = mem["total"] / 2**20
    slots = cfg.engine_count - 1
    array = pes * g["pe_um2_reconfigurable" if reconf else "pe_um2"] / 1e6
    sram = mb * g["sram_mm2_per_mb"]
    logic = slots * g["slot_mm2"]
    power = (pes * g["pe_mw_reconfigurable" if reconf else "pe_mw"] + mb * g["sram_mw_per_mb"]
             + slots * g["slot_mw"]) / 1e3
    return {"array_mm2": round(array, 4), "sram_mm2": round(sram, 4),
            "logic_mm2": round(logic, 4), "total_mm2": round(array + sram + logic, 4),
            "power_w": round(power, 4), "sram_bytes": mem}
