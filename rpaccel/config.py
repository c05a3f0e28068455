"""The one configuration object of the kit.

`RPAccelConfig` is the single source of truth for the RTL generator, the golden model,
the testbenches and the synthesis flow. It is frozen; named variants are made with
`dataclasses.replace` and validated on construction, before any Verilog is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

__all__ = ["ConfigError", "RPAccelConfig", "CONFIGS", "get_config", "require"]


class ConfigError(ValueError):
    """An invalid configuration value: the message names the parameter, rule and value."""


def require(ok: bool, param: str, rule: str, value, error: type = None) -> None:
    """Raise ``error`` (default `ConfigError`) saying ``"<param> must be <rule>, not
    <value>"`` unless ``ok``: the one message format of every refusal in the kit."""
    if not ok:
        raise (error or ConfigError)(f"{param} must be {rule}, not {value!r}")


def _require(ok: bool, param: str, rule: str, value) -> None:
    require(ok, param, rule, value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class RPAccelConfig:
    """Parameters of one RPAccel instance.

    Parameters
    ----------
    name : str
        Name of the configuration (used for build directories and reports).
    array_rows, array_cols : int
        Systolic array size R x C in processing elements.
    block : int
        Reconfiguration granularity B: the array is built of B x B blocks.
    partitions : int
        Number of array partitions (1, 2 or 4); one partition is the monolithic array.
    stages : int
        Number of pipeline stages the accelerator runs (1 to 3).
    engines : int
        MLP engines, one per partition slot: ``0`` for one per stage, else from
        ``stages`` to ``partitions``. Which stage each engine serves is set at run time
        (the ``ENGINE_MAP`` CSR, `rpaccel.runtime.Accelerator`'s ``engine_map``); a stage
        with several engines runs its sub-batches on them in turn.
    act_bits : int
        Width of activations and weights (int8 in RPAccel).
    acc_bits : int
        Width of the signed accumulator and of the bias.
    mult_bits : int
        Width of the unsigned requantization multiplier.
    shift_bits : int
        Width of the requantization right-shift amount.
    score_bits : int
        Width of the signed integer logit that ranks candidates.
    requant_lanes : int
        Number of values the requantize unit takes per cycle.
    topk_lanes : int
        (id, score) pairs a top-k unit takes per cycle.
    topk_k : int
        Capacity of a top-k unit: the largest k a stage may keep.
    topk_id_bits : int
        Width of candidate ids (positions): queries of up to ``2**topk_id_bits`` items.
    topk_impl : str
        Top-k structure: ``"queue"`` (register insertion queues, `rpaccel.hw.topk.TopK`,
        k + 1 cycles after ``last``; for k up to ~64) or ``"heap"`` (pipelined heaps in
        LUT / block RAM, `rpaccel.hw.topk_heap.TopKHeap`, ~3k cycles after ``last``; for large k).
    topk_banks : int
        Banks of the queue top-k: 2 (one fills with the next query while the other
        drains) or 1 (half the cells and comparators; the next query's scores wait for
        the drain, ``min(k, N) + 1`` cycles unless its output is held back, which a
        stage's engine run between two queries' scores outlasts; the performance model
        charges nothing for it). The heap always has 2.
    tile_modules : bool
        Write the ``block x block`` tile once as its own Verilog module
        (``rpaccel_tile<b>x<b>``, appended to the generated file) and instantiate it,
        instead of writing every tile's logic out (Amaranth emits every instance
        separately): needed to generate a 128 x 128 array within the tools' memory.
    fclk_mhz : float
        Clock used to convert cycles into time in reports.
    sub_batch : int
        Largest number of items the MLP engine runs through a stage at once (its
        activation buffers hold this many items).
    max_width : int
        Widest layer input or output (and widest interaction output) the activation
        buffers hold.
    weight_rows : int
        Depth of each MLP engine's weight buffer, in rows of one weight tile.
    param_rows : int
        Depth of each MLP engine's bias / requantization parameter buffer (one row per
        output tile).
    max_steps : int
        Length of the MLP engine's program (layers plus the interaction step).
    max_pairs : int
        Largest number of feature pairs of a ``dot`` interaction.
    inter_pairs : int
        ``dot`` pairs the interaction unit computes per cycle (each an int8 dot product of
        ``lcm(array_rows, array_cols)`` lanes per cycle); at most that many lanes.
    inter_slots : int
        ``dot`` pairs each of those products computes at once when a step's features fit a
        slot of ``lanes / inter_slots`` values (a power of two): up to ``inter_pairs *
        inter_slots`` pairs per cycle, each one requantizer; wider features one pair per
        product as with ``1``.
    inter_banks : int
        Memories of each interaction register file (a power of two, at least 2): feature
        words land up to that many per cycle when the pooled vectors are packed
        ``2**pack`` to an activation word (``min(inter_banks, 2**pack)`` per cycle, unpacked
        2).
    emb_tables : int
        Embedding tables the embedding unit serves.
    emb_dim : int
        Widest embedding row in bytes (int8 values); rows are powers of two up to this.
    emb_requant_lanes : int
        Pooled values the embedding unit requantizes per cycle: ``0`` for all ``emb_dim``
        (one bag per cycle), else a power of two below it (one bag per
        ``emb_dim / emb_requant_lanes`` cycles, that many times fewer multipliers).
    emb_units : int
        Embedding units per stage (1 to 8, at most ``emb_tables``): table ``t`` is looked up
        by unit ``t mod emb_units``, and a sparse query-stream beat carries one id per unit
        (``keep`` marks the lanes in use), so a stage takes that many lookups per cycle.
        Every unit holds the whole embedding image (its own static and dynamic caches).
    emb_map_rows : int
        Rows of all tables together that the static-cache map covers.
    static_rows : int
        Rows the static cache holds (all tables together).
    cache_sets, cache_ways, line_bytes : int
        Dynamic cache geometry (``cache_sets`` and ``line_bytes`` powers of two).
    mshrs : int
        Miss-status registers: DRAM line reads in flight at once.
    axi_data_bits, axi_addr_bits : int
        Width of the AXI4 read port's data and address.
    axi_ports : int
        AXI4 read ports to DRAM (a divisor of ``emb_units``): unit ``g`` of every stage
        reads its lines through port ``g mod axi_ports``, the model loader through port 0;
        every port sees the whole address space (HBM pseudo-channels behind a switch, or
        DDR channels behind an interconnect). Each port is one R beat a cycle.
    max_items : int
        Candidates per query the top level's candidate buffer holds (a power of two, at
        most ``2**topk_id_bits``).
    cand_beats : int
        Query-stream beats the candidate buffer keeps per candidate (the dense words of
        the later stages and every sparse id); a power of two.

    Raises
    ------
    ConfigError
        When a parameter breaks its rule; the message names parameter, rule and value.
    """

    name: str = "default"
    array_rows: int = 8
    array_cols: int = 8
    block: int = 4
    partitions: int = 2
    stages: int = 2
    engines: int = 0
    act_bits: int = 8
    acc_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    score_bits: int = 32
    requant_lanes: int = 4
    topk_lanes: int = 2
    topk_k: int = 32
    topk_id_bits: int = 12
    topk_impl: str = "queue"
    topk_banks: int = 2
    tile_modules: bool = False
    fclk_mhz: float = 100.0
    sub_batch: int = 64
    max_width: int = 512
    weight_rows: int = 65536
    param_rows: int = 1024
    max_steps: int = 16
    max_pairs: int = 64
    inter_pairs: int = 1
    inter_slots: int = 1
    inter_banks: int = 2
    emb_tables: int = 8
    emb_dim: int = 32
    emb_requant_lanes: int = 0
    emb_units: int = 1
    emb_map_rows: int = 8192
    static_rows: int = 128
    cache_sets: int = 16
    cache_ways: int = 4
    line_bytes: int = 32
    mshrs: int = 4
    axi_data_bits: int = 64
    axi_addr_bits: int = 32
    axi_ports: int = 1
    max_items: int = 128
    cand_beats: int = 32

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name != "", "name", "a non-empty string",
                 self.name)
        for p in ("array_rows", "array_cols", "block", "requant_lanes"):
            v = getattr(self, p)
            _require(_is_int(v) and v > 0, p, "a positive integer", v)
        _require(self.array_rows % self.block == 0, "array_rows",
                 f"a multiple of block ({self.block})", self.array_rows)
        _require(self.array_cols % self.block == 0, "array_cols",
                 f"a multiple of block ({self.block})", self.array_cols)
        _require(self.partitions in (1, 2, 4), "partitions", "1, 2 or 4", self.partitions)
        _require(_is_int(self.stages) and 1 <= self.stages <= 3, "stages",
                 "an integer from 1 to 3", self.stages)
        _require(self.stages <= self.partitions, "stages",
                 f"at most partitions ({self.partitions}): each stage runs on its own "
                 "partition", self.stages)
        _require(_is_int(self.engines) and
                 (self.engines == 0 or self.stages <= self.engines <= self.partitions),
                 "engines", f"0 (one per stage) or an integer from stages ({self.stages}) to "
                 f"partitions ({self.partitions})", self.engines)
        blocks_cols = self.array_cols // self.block
        _require(blocks_cols % self.partitions == 0, "partitions",
                 f"a divisor of the number of block columns ({blocks_cols})", self.partitions)
        _require(self.act_bits == 8, "act_bits", "8 (RPAccel is an int8 design)", self.act_bits)
        _require(_is_int(self.acc_bits) and 2 * self.act_bits + 1 <= self.acc_bits <= 32,
                 "acc_bits", f"an integer from {2 * self.act_bits + 1} to 32", self.acc_bits)
        _require(_is_int(self.mult_bits) and 2 <= self.mult_bits <= 16, "mult_bits",
                 "an integer from 2 to 16", self.mult_bits)
        _require(_is_int(self.shift_bits) and 1 <= self.shift_bits <= 6, "shift_bits",
                 "an integer from 1 to 6", self.shift_bits)
        _require(_is_int(self.score_bits) and 16 <= self.score_bits <= 32, "score_bits",
                 "an integer from 16 to 32", self.score_bits)
        _require(_is_int(self.topk_lanes) and 1 <= self.topk_lanes <= 16, "topk_lanes",
                 "an integer from 1 to 16", self.topk_lanes)
        _require(isinstance(self.tile_modules, bool), "tile_modules", "True or False",
                 self.tile_modules)
        _require(self.topk_impl in ("queue", "heap"), "topk_impl", "'queue' or 'heap'",
                 self.topk_impl)
        _require(_is_int(self.topk_banks) and self.topk_banks in (1, 2), "topk_banks",
                 "1 or 2", self.topk_banks)
        _require(self.topk_banks == 2 or self.topk_impl == "queue", "topk_banks",
                 "2 with topk_impl 'heap'", self.topk_banks)
        _require(_is_int(self.topk_id_bits) and 1 <= self.topk_id_bits <= 16, "topk_id_bits",
                 "an integer from 1 to 16", self.topk_id_bits)
        _require(_is_int(self.topk_k) and 1 <= self.topk_k <= min(1024, 1 << self.topk_id_bits),
                 "topk_k", f"an integer from 1 to {min(1024, 1 << self.topk_id_bits)}",
                 self.topk_k)
        _require(isinstance(self.fclk_mhz, (int, float)) and self.fclk_mhz > 0, "fclk_mhz",
                 "a positive number", self.fclk_mhz)
        for p, lo, hi in (("sub_batch", 1, 4096), ("max_width", 1, 65536),
                          ("weight_rows", 1, 1 << 24), ("param_rows", 1, 1 << 20),
                          ("max_steps", 2, 256), ("max_pairs", 1, 4096)):
            v = getattr(self, p)
            _require(_is_int(v) and lo <= v <= hi, p, f"an integer from {lo} to {hi}", v)
        lanes = math.lcm(self.array_rows, self.array_cols)
        _require(_is_int(self.inter_pairs) and 1 <= self.inter_pairs <= min(64, lanes),
                 "inter_pairs", f"an integer from 1 to {min(64, lanes)} (at most the "
                 "activation word's lanes, lcm(array_rows, array_cols))", self.inter_pairs)
        _require(_is_int(self.inter_slots) and self.inter_slots >= 1
                 and self.inter_slots & (self.inter_slots - 1) == 0
                 and lanes % self.inter_slots == 0
                 and self.inter_pairs * self.inter_slots <= min(256, lanes), "inter_slots",
                 f"a power of two dividing the activation word's lanes ({lanes}) with "
                 f"inter_pairs x inter_slots at most {min(256, lanes)} (pairs leave a byte "
                 f"each per cycle; inter_pairs {self.inter_pairs})", self.inter_slots)
        _require(_is_int(self.inter_banks) and 2 <= self.inter_banks <= 64
                 and self.inter_banks & (self.inter_banks - 1) == 0, "inter_banks",
                 "a power of two from 2 to 64", self.inter_banks)
        for p, lo, hi in (("emb_tables", 1, 64), ("emb_dim", 1, 256),
                          ("emb_map_rows", 1, 1 << 24), ("static_rows", 1, 1 << 20),
                          ("cache_sets", 1, 1 << 16), ("cache_ways", 1, 8),
                          ("line_bytes", 1, 256), ("mshrs", 1, 16),
                          ("axi_data_bits", 8, 1024), ("axi_addr_bits", 12, 64)):
            v = getattr(self, p)
            _require(_is_int(v) and lo <= v <= hi, p, f"an integer from {lo} to {hi}", v)
        for p in ("emb_dim", "cache_sets", "line_bytes", "axi_data_bits"):
            v = getattr(self, p)
            _require(v & (v - 1) == 0, p, "a power of two", v)
        _require(_is_int(self.emb_requant_lanes) and (
            self.emb_requant_lanes == 0 or (0 < self.emb_requant_lanes <= self.emb_dim and
                                            self.emb_requant_lanes & (self.emb_requant_lanes - 1)
                                            == 0)),
                 "emb_requant_lanes", f"0 (all emb_dim) or a power of two up to emb_dim "
                 f"({self.emb_dim})", self.emb_requant_lanes)
        _require(_is_int(self.emb_units) and 1 <= self.emb_units <= min(8, self.emb_tables),
                 "emb_units", f"an integer from 1 to min(8, emb_tables) "
                 f"({min(8, self.emb_tables)})", self.emb_units)
        _require(_is_int(self.axi_ports) and 1 <= self.axi_ports <= self.emb_units and
                 self.emb_units % self.axi_ports == 0, "axi_ports",
                 f"a divisor of emb_units ({self.emb_units})", self.axi_ports)
        _require(self.line_bytes * 8 >= self.axi_data_bits, "line_bytes",
                 f"at least one AXI beat ({self.axi_data_bits // 8} bytes)", self.line_bytes)
        for p, hi in (("max_items", 1 << 16), ("cand_beats", 256)):
            v = getattr(self, p)
            _require(_is_int(v) and 1 <= v <= hi and v & (v - 1) == 0, p,
                     f"a power of two from 1 to {hi}", v)
        _require(self.max_items <= 1 << self.topk_id_bits, "max_items",
                 f"at most 2**topk_id_bits ({1 << self.topk_id_bits})", self.max_items)
        _require(self.topk_k <= self.max_items, "topk_k",
                 f"at most max_items ({self.max_items}): a stage cannot keep more items "
                 "than a query has", self.topk_k)
        _require(self.static_rows <= self.emb_map_rows, "static_rows",
                 f"at most emb_map_rows ({self.emb_map_rows}): the static cache cannot be "
                 "larger than the tables it maps", self.static_rows)
        _require(self.emb_dim <= self.line_bytes, "emb_dim",
                 f"at most line_bytes ({self.line_bytes}): a row is read from one line",
                 self.emb_dim)

    @property
    def engine_count(self) -> int:
        """MLP engines generated (``engines``, or one per stage when it is 0)."""
        return self.engines or self.stages

    @property
    def max_shift(self) -> int:
        """Largest right shift the requantize unit accepts."""
        return (1 << self.shift_bits) - 1

    @property
    def max_mult(self) -> int:
        """Largest requantization multiplier."""
        return (1 << self.mult_bits) - 1

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Return the configuration as canonical JSON (sorted keys)."""
        return _canonical_json(self.to_dict())

    def digest(self) -> str:
        """Short hash of the configuration, used to name per-config build directories and
        to key cached runs (with `rpaccel.hw.source_digest` where a run depends on the
        RTL's sources too). A field added later (`_LATER_FIELDS`) counts only when it
        differs from the behaviour before it existed, so configurations that ask for
        what they asked for before keep their digests (and their recorded runs)."""
        d = self.to_dict()
        for name, old in _LATER_FIELDS.items():
            if d[name] == old:
                del d[name]
        return hashlib.sha256(_canonical_json(d).encode()).hexdigest()[:10]

    def replace(self, **changes) -> RPAccelConfig:
        """Return a validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _canonical_json(d: dict) -> str:
    return json.dumps(d, sort_keys=True, indent=2)


#: Fields added after digests were first recorded, with the value that builds what was
#: built before they existed.
_LATER_FIELDS = {"topk_banks": 2, "inter_slots": 1, "inter_banks": 2, "axi_ports": 1}

_DEFAULT = RPAccelConfig()

#: Named configurations. Each is the default with a few fields changed.
CONFIGS: dict[str, RPAccelConfig] = {
    "default": _DEFAULT,
    "three-stage": _DEFAULT.replace(name="three-stage", array_cols=16, partitions=4, stages=3),
    "baseline": _DEFAULT.replace(name="baseline", partitions=1, stages=1),
    # one stage on both partitions' engines, sub-batches in turn (the engine map's test bed)
    "two-engine": _DEFAULT.replace(name="two-engine", stages=1, engines=2),
    # two stages sharing four 4-column partitions' engines (after reset: 1 + 3)
    "shared-engines": _DEFAULT.replace(name="shared-engines", array_cols=16, partitions=4,
                                       engines=4),
    # the default array with two embedding units per stage: two ids per query beat
    "wide-lookup": _DEFAULT.replace(name="wide-lookup", emb_units=2),
    # the default array with room for the quality table's 1,000-candidate queries
    "ml1000": _DEFAULT.replace(name="ml1000", max_items=1024),
    # sized for the ECP5-85F (docs/architecture.md, "FPGA"): the small and medium models
    # (rows up to 16 bytes, layers up to 128 wide), bags requantized 4 values per cycle, a
    # one-bank queue top-k of 16 on one lane, 8 x 4-way dynamic caches with 2 MSHRs,
    # sub-batches of 32
    "fpga-ecp5": _DEFAULT.replace(name="fpga-ecp5", fclk_mhz=50.0, weight_rows=4096,
                                  max_width=128, param_rows=64, emb_dim=16,
                                  emb_requant_lanes=4, topk_k=16, topk_lanes=1, topk_banks=1,
                                  cache_sets=8, mshrs=2, sub_batch=32),
    # RecPipe's Criteo models at a size that simulates: RM-small / med / large shapes (26
    # tables, 351 `dot` pairs, rows of 4 / 16 / 32) on a 32 x 32 array of four 8-column
    # partitions whose engines three stages share, up to 1,024 candidates a query
    "mid": _DEFAULT.replace(name="mid", array_rows=32, array_cols=32, block=8, partitions=4,
                            stages=3, engines=4, requant_lanes=32, topk_lanes=2, topk_k=128,
                            topk_impl="heap", tile_modules=True, max_items=1024,
                            max_width=1024, max_pairs=512, inter_pairs=4, inter_slots=4,
                            inter_banks=8, emb_tables=26, emb_dim=32, emb_requant_lanes=8,
                            emb_units=2, emb_map_rows=1 << 17, static_rows=1024,
                            cache_sets=32, axi_data_bits=256),
    # RecPipe's Criteo models: 26 tables, 351 `dot` pairs, 27 feature words of 128 lanes
    # (max_width 4096), 4,096 candidates, stage 0 keeping 512; the interaction unit 128
    # pairs a cycle on rows up to 32 values (RM-small / med / large), features landed up to
    # 8 a cycle; four engines the stages share (the engine map), eight embedding units per
    # stage (eight ids a query beat), sub-batches of 256 (the fixed cycles of a run spread
    # over twice the items: +15% QPS on the 2-stage pipeline for +4% GF12 area), four
    # 512-bit AXI ports (32 GB/s at 125 MHz, the artifact's DRAM bandwidth for a 128 x 128
    # array: stage 0's misses no longer queue on one port, +12% QPS on the 2-stage
    # pipeline)
    "paper": _DEFAULT.replace(name="paper", array_rows=128, array_cols=128, block=16,
                              partitions=4, stages=3, engines=4, requant_lanes=128,
                              topk_lanes=16, topk_k=512, topk_impl="heap", tile_modules=True,
                              fclk_mhz=125.0, max_items=4096, cand_beats=32, max_width=4096,
                              max_pairs=512, sub_batch=256, emb_units=8,
                              inter_pairs=32, inter_slots=4, inter_banks=8,
                              emb_tables=26, static_rows=16384, emb_map_rows=1 << 22,
                              cache_sets=64, cache_ways=8, line_bytes=64, emb_dim=64,
                              axi_data_bits=512, axi_ports=4),
}


#: The artifact's TPU-like baseline at the paper's size: one monolithic 128 x 128 partition,
#: one stage, one engine, one lookup per cycle, no embedding cache (one pinned row, a
#: one-line dynamic cache) and so one AXI port (a line a cycle is all one unit asks);
#: `paper`'s interaction unit and sub-batch.
CONFIGS["paper-baseline"] = CONFIGS["paper"].replace(
    name="paper-baseline", partitions=1, stages=1, engines=0, emb_units=1, static_rows=1,
    cache_sets=1, cache_ways=1, axi_ports=1)


def get_config(name: str) -> RPAccelConfig:
    """Return the named configuration.

    Raises
    ------
    ConfigError
        If no configuration has that name.
    """
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"config must be one of {sorted(CONFIGS)}, not {name!r}") from None
