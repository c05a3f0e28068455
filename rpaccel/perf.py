"""Cycle model of the RPAccel top level (`rpaccel.hw.top.RPAccel`).

The model reads what the RTL reads: the `RPAccelConfig`, the compiled engine programs
(`rpaccel.program.StageProgram.steps`), the embedding images (static rows, table layout,
cache geometry) and the query beats of an `rpaccel.runtime.Accelerator`; it has no second
description of the design. It replays a sequence of queries through the units of the
top level as events, one sub-batch (and, in the embedding unit, one lookup) at a time:

- the query front end (one query-stream beat per cycle; a header only while fewer than
  ``max(2, slots)`` queries are in flight; a sub-batch's run beat waits for the stage-0
  controller to be idle),
- per stage the controller's gather (dense words and pooled vectors share the engine's
  load port, one word per cycle, pooled vectors first; with ``emb_units`` > 1 a beat's
  ids go to their units at once, the beat taken when the slowest takes its id, pooled
  vectors written in table order), each embedding unit (one lookup classified per
  cycle, its own golden `CacheModel` deciding static hit / dynamic hit / miss, misses
  through ``mshrs`` line reads in flight over its AXI read channel (port
  ``g mod axi_ports``) of one beat per cycle, results in request order, one pooled vector
  per bag),
- the MLP engine (`EngineTiming`: exact cycles of a run from its program; the gather of
  sub-batch i + 1 overlaps the run of sub-batch i),
- the top-k unit's drain, the replay unit in front of every later stage (collect the
  survivors, then replay their buffered beats, one per cycle), and the result stream.

Calibrated against Verilator: ``rpaccel bench perf`` prints model and RTL cycles side by
side (``docs/performance.md``). The engine is cycle-exact on every measured program; the
rest is a transaction-level approximation whose constants (``_LAT``) come from the RTL's
pipelines.

Example
-------
>>> pred = predict(acc, batches)                       # doctest: +SKIP
>>> pred.queries[0].latency, pred.cycles_per_query     # doctest: +SKIP
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .config import RPAccelConfig

__all__ = ["EngineTiming", "QueryTiming", "Prediction", "predict", "stage_service",
           "topk_sort_cycles", "stage_latency", "queueing", "batch_queueing"]

#: Fixed latencies of the RTL's pipelines (cycles), named after what they span.
_LAT = {
    "emb_classify": 2,   # request accepted (by the lookup register slice) -> classified
                         # (static map read)
    "emb_pop": 2,        # classified -> queue head popped (buffered FIFO)
    "emb_resp": 8,       # bag's last lookup popped -> pooled vector valid at the
                         # controller (requant unit, then the pooled-vector register slice)
    "emb_queue": 16,     # classified lookups waiting for the data side
    "miss_ar": 1,        # classified -> AR valid
    "dram": 2,           # AR accepted -> first R beat (cocotbext-axi AxiRam, no stalls)
    "arb": 1,            # the top level's AXI arbiter
    "eng_load": 1,       # the engine's load register slice: a run starts once the
                         # gather's last word is written
    "replay": 1,         # a replayed beat out of the replay unit -> at the controller
                         # (the replay register slice)
    "score": 1,          # last score out of the stage controller -> engine idle (the
                         # engine hands its last result to its register slice first)
    "topk_first": 3,     # last score out of the stage -> first survivor out (the score
                         # register slice, then the top-k unit's `last` beat)
}


@dataclass(frozen=True)
class EngineTiming:
    """Cycles of one `MLPEngine` run, from its program and the sub-batch size.

    A run streams every item through every weight tile (output tiles outer, input tiles
    inner). The next tile's weights are loaded into the shadow registers row by row right
    behind the current tile's first item (`rpaccel.hw.weight_loader`), so consecutive
    tiles start ``max(n, reload)`` cycles apart; the first tile of a layer issues each item
    once that item's result of the previous layer is written, ``max(n + 2, drain, reload)``
    after the previous layer's last tile. An interaction step takes the larger of its
    reading and its emission per item (`interaction_per_item`, exactly
    `interaction_schedule`) plus a fixed drain. Exact against Verilator for every program
    measured (`rpaccel bench perf`).

    Parameters
    ----------
    rows : int
        Array rows R.
    cols : int
        Columns P of the partition the engine drives (``array_cols >> mode``).
    pairs_per_cycle : int
        The interaction unit's ``dot`` pairs per cycle (``inter_pairs``).
    lanes : int
        int8 values per activation word (for the interaction's output writes).
    slots : int
        ``inter_slots``: ``pairs_per_cycle * slots`` pairs per cycle on features of at most
        ``lanes / slots`` values (`pair_rate`).
    banks : int
        ``inter_banks``: feature words landed per cycle when the pooled vectors are packed
        (`fill_rate`).
    """

    rows: int
    cols: int
    pairs_per_cycle: int = 1
    lanes: int = 0
    slots: int = 1
    banks: int = 2

    def fill_rate(self, pack: int) -> int:
        """Feature words the interaction unit lands per cycle on vectors packed ``2**pack``
        to a word (they must lie in the two words read per cycle)."""
        return 2 if pack == 0 else min(self.banks, 1 << pack)

    def pair_rate(self, d: int) -> int:
        """``dot`` pairs per cycle on features of ``d`` values."""
        narrow = self.slots > 1 and d <= self.lanes // self.slots
        return self.pairs_per_cycle * (self.slots if narrow else 1)

    @property
    def reload(self) -> int:
        """Start-to-start cycles of two tiles when the weight load is the limit."""
        return self.rows + self.cols + 3

    @property
    def first(self) -> int:
        """Run start to the first tile's last item issued, less the sub-batch."""
        return 2 * self.rows + self.cols + 7

    @property
    def layer_drain(self) -> int:
        """Issue of an item to its requantized result written, plus the cycle the
        sequencer sees it: the least start-to-start of a layer's last tile and the next
        layer's first, whose items follow the previous layer's writes."""
        return self.rows + self.cols + 10

    @property
    def inter_fixed(self) -> int:
        """Fixed cycles of an interaction step besides the unit's own: the previous layer's
        drain before it and the hand-overs."""
        return self.rows + self.cols + 12

    #: Cycles of the interaction unit after its last item's last operation: its products
    #: register, its requant pipeline and the packer's last write (one more when that
    #: item's last operation leaves bytes over, `interaction_gap`).
    INTER_UNIT_TAIL = 11

    @staticmethod
    def interaction_ops(step: dict, pairs_per_cycle: int, lanes: int) -> list:
        """Output bytes of each operation the interaction unit issues for one item, in
        order (0 for a pair group's words before its last): the copied words (``min(lanes,
        d - w * lanes)`` values each), then ``pairs_per_cycle`` pairs a group."""
        from .interface import StepKind as Kind

        f, d, dw = step["feats"], step["d"], step["dw"]
        copy = [min(lanes, d - w * lanes) for w in range(dw)]
        if step["kind"] == Kind.CAT:
            return copy * f
        pairs = f * (f - 1) // 2
        groups = -(-pairs // pairs_per_cycle)
        ops = list(copy)
        for g in range(groups):
            ops += [0] * (dw - 1) + [min(pairs_per_cycle, pairs - g * pairs_per_cycle)]
        return ops

    @staticmethod
    def interaction_writes(ops: list, lanes: int) -> tuple[list, bool]:
        """The packer on one item's operations: the operations after which it writes an
        output word (the item's partial last word with its last operation, or index
        ``len(ops)``: the cycle after), and whether that last operation completes a word
        with bytes left over (written a cycle later, so the next item waits a cycle)."""
        writes, fill, gap = [], 0, False
        for j, c in enumerate(ops):
            fill += c
            if fill >= lanes:
                writes.append(j)
                fill -= lanes
                gap = j == len(ops) - 1 and fill > 0
        if fill:
            writes.append(len(ops) - 1 + gap)
        return writes, gap

    @staticmethod
    def interaction_gap(ops: list, lanes: int) -> bool:
        """Whether an item's last operation leaves bytes over (`interaction_writes`)."""
        return EngineTiming.interaction_writes(ops, lanes)[1]

    #: Cycles from an interaction operation's issue to the packer's write of the word it
    #: completes.
    INTER_WRITE_LAT = 8

    @staticmethod
    def interaction_schedule(step: dict, n: int, pairs_per_cycle: int = 1,
                             fill_per_cycle: int = 2, *, lanes: int) -> tuple[int, list]:
        """``(busy cycles, write cycles)`` of the interaction unit (`rpaccel.hw.interaction`)
        on ``n`` items of ``lanes``-value words, both counted from its start: an item's
        feature words are read ``fill_per_cycle`` per cycle into one register file
        (``fill`` cycles; it can be read from the second cycle after the last) while the
        previous item is emitted from the other, one operation a cycle (`interaction_ops`);
        the next item's operations follow at once when its file is full and no leftover
        bytes are pending (`interaction_gap`), else a cycle later. A file is refilled from
        two cycles before its item's last operation (the words then read land after it;
        from its first operation on items of fewer than three). An output word is written
        `INTER_WRITE_LAT` cycles after the operation that completes it (the leftover of a
        gap a cycle after the last)."""
        f, dw = step["feats"], step["dw"]
        fill = -(-f * dw // fill_per_cycle)
        ops = EngineTiming.interaction_ops(step, pairs_per_cycle, lanes)
        emit = len(ops)
        writes, gap = EngineTiming.interaction_writes(ops, lanes)
        free = 2 - min(emit, 3)          # cycle a file can be refilled, from its last op
        read_end, last_op, at = [], [], []
        for i in range(n):
            start = 1 if i == 0 else max(read_end[-1] + 1,
                                         last_op[i - 2] + free if i >= 2 else 0)
            read_end.append(start + fill - 1)
            if i and not gap and read_end[i] + 1 <= last_op[-1]:
                first = last_op[-1] + 1
            else:
                first = max(last_op[-1] + 2 if i else 0, read_end[i] + 2)
            last_op.append(first + emit - 1)
            at += [first + j + EngineTiming.INTER_WRITE_LAT for j in writes]
        busy = last_op[-1] + EngineTiming.INTER_UNIT_TAIL + gap if n else 0
        return busy, at

    @staticmethod
    def interaction_cycles(step: dict, n: int, pairs_per_cycle: int = 1,
                           fill_per_cycle: int = 2, *, lanes: int) -> int:
        """Busy cycles of the interaction unit on ``n`` items (`interaction_schedule`)."""
        return EngineTiming.interaction_schedule(step, n, pairs_per_cycle, fill_per_cycle,
                                                 lanes=lanes)[0]

    @staticmethod
    def interaction_per_item(step: dict, pairs_per_cycle: int = 1,
                             fill_per_cycle: int = 2, *, lanes: int) -> int:
        """Steady-state cycles per item of the interaction unit: the slower of reading an
        item's feature words and emitting its operations (plus a cycle where the item's
        last operation leaves bytes over)."""
        f, dw = step["feats"], step["dw"]
        ops = EngineTiming.interaction_ops(step, pairs_per_cycle, lanes)
        return max(-(-f * dw // fill_per_cycle),
                   len(ops) + EngineTiming.interaction_gap(ops, lanes))

    def run(self, steps, n: int) -> dict:
        """Cycles of a run of ``n`` items: ``{"cycles", "mlp", "interaction", "reload",
        "fixed", "tiles", "blocked"}`` (``mlp``: cycles items stream through tiles;
        ``interaction``: the interaction steps' per-item cycles; ``reload``: tiles waiting
        for their weights, a sub-batch shorter than the reload; ``fixed``: the rest, layer
        drains and the run's start and end; ``blocked``: ``(start, end)`` cycles
        after the run starts during which the engine writes results into its activation
        buffer, which holds off the gather's writes for the next sub-batch)."""
        from .interface import StepKind as Kind

        R, P = self.rows, self.cols
        issue0 = R + 2            # run accepted -> first item issued (first tile's weights)
        out_lat = R + P + 10      # item issued -> its requantized result written
        t = self.first
        mlp = inter = tiles = reload = 0
        first = True
        pending = None
        blocked = []
        issue = issue0
        for st in steps:
            if st["kind"] == Kind.MLP:
                kt, count = st["ktiles"], st["ktiles"] * st["ntiles"]
                tiles += count
                for i in range(count):
                    if first:
                        first = False
                    else:
                        if pending is not None:
                            gap = n + pending
                            pending = None
                        elif i == 0:
                            # item by item behind the previous layer's last tile
                            ready = max(n + 2, self.layer_drain)
                            gap = max(ready, self.reload)
                            reload += gap - ready
                        else:
                            gap = max(n, self.reload)
                            reload += gap - n
                        t += gap
                        issue += gap
                        mlp += min(gap, n)
                    if not st["final"] and i % kt == kt - 1:
                        blocked.append((issue + out_lat, issue + out_lat + n))
            elif st["kind"] in (Kind.DOT, Kind.CAT):
                rate, fill = self.pair_rate(st["d"]), self.fill_rate(st["pack"])
                if not self.lanes:
                    raise ValueError("EngineTiming needs lanes for an interaction step")
                per, writes = self.interaction_schedule(st, n, rate, fill, lanes=self.lanes)
                inter += per
                begin = issue + n + self.layer_drain + 2
                blocked += [(begin + c, begin + c + 1) for c in writes]
                pending = per + self.inter_fixed
        cycles = t + n
        mlp += n
        return {"cycles": cycles, "mlp": mlp, "interaction": inter, "reload": reload,
                "fixed": cycles - mlp - inter - reload, "tiles": tiles,
                "blocked": _merge(blocked)}


def _merge(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class _Port:
    """The engine's load port as the controller sees it: one word per cycle, none while
    the engine writes results (``blocked``, absolute cycles, sorted)."""

    def __init__(self, free: int, blocked):
        self.free = free
        self.blocked = blocked
        self.i = 0

    def take(self, t: int) -> int:
        """The cycle a word offered at ``t`` is written."""
        t = max(t, self.free)
        bl = self.blocked
        while self.i < len(bl) and bl[self.i][1] <= t:
            self.i += 1
        if self.i < len(bl) and bl[self.i][0] <= t:
            t = bl[self.i][1]
        self.free = t + 1
        return t


#: The parts of an engine run's cycles (`EngineTiming.run`).
_PARTS = ("cycles", "mlp", "interaction", "reload", "fixed")


class _Embedding:
    """Lookup-level timing of one `EmbeddingUnit` (state kept across queries)."""

    def __init__(self, cfg: RPAccelConfig, image, axi: _Axi):
        self.cfg = cfg
        self.rows = image.rows
        self.cache = image.cache_model()
        self.axi = axi
        self.beats = max(1, cfg.line_bytes * 8 // cfg.axi_data_bits)
        self.mshr = [0] * cfg.mshrs          # cycle each MSHR is free again
        heapq.heapify(self.mshr)
        self.classified = -1                  # last classification cycle
        self.popped = -1                      # last pop cycle
        self.pops = []                        # pop cycles of the last emb_queue lookups
        self.slices = cfg.emb_dim // (cfg.emb_requant_lanes or cfg.emb_dim)
        self.bag_in = -cfg.emb_dim            # last bag taken by a narrow requantizer
        self.counts = {"lookups": 0, "static": 0, "dynamic": 0, "misses": 0, "bad": 0,
                       "dram_bytes": 0, "miss_wait": 0}

    def lookup(self, table: int, row: int, arrive: int) -> tuple[int, int]:
        """One lookup presented at ``arrive``: ``(accepted, popped)`` cycles."""
        lat = _LAT
        # one lookup accepted a cycle: the register slice and the classification are
        # pipelined (a lookup stalled for an MSHR holds the ones behind it)
        accept = max(arrive, self.classified - lat["emb_classify"] + 1)
        if len(self.pops) >= lat["emb_queue"]:
            accept = max(accept, self.pops[-lat["emb_queue"]] - lat["emb_classify"])
        cls = accept + lat["emb_classify"]
        ready = cls + lat["emb_pop"]
        c = self.counts
        miss = False
        if not 0 <= row < self.rows[table]:
            c["bad"] += 1
        else:
            c["lookups"] += 1
            kind = self.cache.lookup(table, row)
            miss = kind == "miss"
            if miss:
                c["misses"] += 1
                c["dram_bytes"] += self.cfg.line_bytes
                free = heapq.heappop(self.mshr)
                if free > cls:
                    c["miss_wait"] += free - cls
                    cls = free
                    accept = cls - lat["emb_classify"]
                full = self.axi.read(cls + lat["miss_ar"], self.beats)
                ready = max(cls + lat["emb_pop"], full + 1)
            else:
                c["static" if kind == "static" else "dynamic"] += 1
        self.classified = cls
        pop = max(ready, self.popped + 1)
        if miss:
            heapq.heappush(self.mshr, pop + 1)
        self.popped = pop
        self.pops.append(pop)
        if len(self.pops) > 64:
            del self.pops[:32]
        return accept, pop

    def bag(self, pop: int) -> int:
        """The bag whose last lookup popped at ``pop``: the cycle its pooled vector is
        valid. A narrow requantizer (`rpaccel.hw.requant.BagRequant`) takes a bag every
        ``slices`` cycles and holds the lookup behind it until then."""
        if self.slices == 1:
            return pop + _LAT["emb_resp"]
        enter = max(pop + 1, self.bag_in + self.slices)
        self.bag_in = enter
        self.popped = max(self.popped, enter - 1)
        return enter + self.slices + _LAT["emb_resp"]


class _Units:
    """The ``emb_units`` embedding units of one stage (one `_Embedding` each, every one
    with the whole image and its own caches), unit g on the stage's AXI channel
    ``g mod axi_ports``."""

    def __init__(self, cfg: RPAccelConfig, image, axis):
        self.units = [_Embedding(cfg, image, axis[g % len(axis)])
                      for g in range(cfg.emb_units)]

    @property
    def counts(self) -> dict:
        out = dict.fromkeys(self.units[0].counts, 0)
        for u in self.units:
            for k, v in u.counts.items():
                out[k] += v
        return out


class _Axi:
    """An AXI4 read channel: one R beat per cycle."""

    def __init__(self):
        self.r_free = 0
        self.busy = 0

    def read(self, ar: int, beats: int) -> int:
        """A line read whose AR is valid at ``ar``: the cycle its last beat arrives."""
        first = max(ar + _LAT["arb"] + _LAT["dram"], self.r_free)
        self.r_free = first + beats
        self.busy += beats
        return first + beats - 1


def topk_sort_cycles(cfg: RPAccelConfig) -> int:
    """Cycles the top-k unit of ``cfg`` takes after a query's ``last`` score before its
    first survivor, beyond the queue's: the heap pops each of its ``topk_k`` nodes, one
    every other cycle, through its ``bit_length(k)`` levels into the stacks it merges
    from (``2 k + bit_length(k) + 8``: ``2 k + log2 k + 9`` for a power of two); the
    queue's head is its best already (0)."""
    if cfg.topk_impl == "heap":
        return 2 * cfg.topk_k + max(1, cfg.topk_k.bit_length()) + 8
    return 0


@dataclass
class QueryTiming:
    """Model timing of one query.

    Attributes
    ----------
    start, end : int
        Cycle the header is accepted and cycle of the last result beat.
    latency : int
        ``end - start``.
    stages : list of dict
        Per stage: ``items``, ``sub_batches``, ``gather`` (cycles the controller gathered),
        ``engine`` (engine run cycles: ``cycles`` split into ``mlp``, ``interaction``,
        ``reload`` and ``fixed``), ``emb`` (lookups, static / dynamic hits, misses, bad ids,
        DRAM bytes, cycles waiting for an MSHR), ``topk_drain``, ``feed_beats`` (beats the
        front end or replay unit presented) and ``done`` (cycle its survivors are out).
    """

    start: int
    end: int
    stages: list = field(default_factory=list)

    @property
    def latency(self) -> int:
        return self.end - self.start


@dataclass
class Prediction:
    """What `predict` returns.

    Attributes
    ----------
    queries : list of QueryTiming
        Back to back (each header offered as soon as the front end takes it).
    alone : list of int
        Each query's latency with the machine otherwise idle (caches as the sequence left
        them), when asked for.
    total_cycles : int
        First header to last result beat, back to back.
    busy : dict
        Cycles each unit was busy over the sequence (``fe``, ``engine<s>``,
        ``gather<s>``, ``replay<s>``, ``axi``).
    alone_timing : list of QueryTiming
        The queries of ``alone``, each on an idle machine.
    limit : int
        Queries the front end lets in flight at once.
    engine_parts : list of dict
        Per stage, the engine's busy cycles split into ``mlp`` (array tiles),
        ``interaction`` and ``fixed``.
    port_reads : list of int
        DRAM line reads of the embedding units per AXI port (``axi_ports``), back to back.
    """

    config: RPAccelConfig
    queries: list
    alone: list
    total_cycles: int
    busy: dict
    alone_timing: list = field(default_factory=list)
    limit: int = 2
    engine_parts: list = field(default_factory=list)
    port_reads: list = field(default_factory=list)

    @property
    def cycles_per_query(self) -> float:
        """First header to last result beat over the queries (RTL's definition: includes
        the pipeline's fill)."""
        return self.total_cycles / len(self.queries)

    @property
    def interval(self) -> float:
        """Cycles between results in the steady state: the mean gap between the last
        result beats of consecutive queries (one query: its latency)."""
        ends = [q.end for q in self.queries]
        return (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else ends[0] - \
            self.queries[0].start

    @property
    def bottleneck(self) -> str:
        """The unit busy the most cycles per query (back to back); for an engine, the part
        of it that takes most of its cycles (``"engine0: interaction 92%"``)."""
        unit = max(self.busy, key=self.busy.get)
        # a feeder or gather held up by a stage's engine is as busy as that engine: name
        # the engine unless the other unit really is slower
        engines = [u for u in self.busy if u.startswith("engine")]
        close = [u for u in engines if self.busy[u] >= 0.95 * self.busy[unit]]
        if close:
            unit = max(close, key=self.busy.get)
        if unit.startswith("engine") and self.engine_parts:
            p = self.engine_parts[int(unit[6:])]
            names = {"mlp": "array tiles", "interaction": "interaction",
                     "reload": "weight reload", "fixed": "fixed"}
            part = max(names, key=p.get)
            return f"{unit}: {names[part]} {p[part] / max(1, p['cycles']):.0%}"
        return unit

    def utilization(self) -> dict:
        """Busy fraction of every unit over the back-to-back sequence."""
        return {k: round(v / max(1, self.total_cycles), 4) for k, v in self.busy.items()}


class _Machine:
    """Event state of the whole top level."""

    def __init__(self, acc):
        from .interface import query_slots

        cfg = acc.config
        self.acc = acc
        self.cfg = cfg
        self.ns = cfg.stages
        self.limit = max(2, query_slots(cfg))
        mode = cfg.partitions.bit_length() - 1
        self.eng = EngineTiming(cfg.array_rows, cfg.array_cols >> mode, cfg.inter_pairs,
                                acc.geo.lanes, cfg.inter_slots, cfg.inter_banks)
        # R channels per stage: events are replayed stage by stage, not in time order,
        # so a port's load over the stages is checked as a total (``busy["axi"]``, the
        # busiest port)
        self.axis = [[_Axi() for _ in range(cfg.axi_ports)] for _ in acc.images]
        self.emb = [_Units(cfg, img, axis) for img, axis in zip(acc.images, self.axis,
                                                                strict=True)]
        self.tables = [len(img.rows) for img in acc.images]
        self.fe_free = 0
        emap = acc.engine_map
        # the engines of each stage, used in turn; their results are taken in that order
        self.stage_engs = [[e for e, st in enumerate(emap) if st == s] for s in range(self.ns)]
        self.next_eng = [0] * self.ns
        self.out_end = [0] * self.ns       # a stage's last result beat taken
        self.ctl_idle = [0] * self.ns      # controller back in IDLE
        self.eng_free = [0] * len(emap)    # engine takes the next run
        self.rp_free = [0] * self.ns       # replay unit back in COLLECT
        self.tk_free = [0] * self.ns       # top-k bank free for the next query
        self.blocked = [[] for _ in emap]  # engine writes of its last run
        self.ends = []                     # result end of every admitted query
        self.busy = {"fe": 0, "axi": 0}
        for s in range(self.ns):
            self.busy[f"gather{s}"] = 0
            self.busy[f"engine{s}"] = 0
            if s:
                self.busy[f"replay{s}"] = 0
        self.parts = [dict.fromkeys(_PARTS, 0) for _ in range(self.ns)]
        self.run_cache = {}

    def engine_run(self, s: int, n: int) -> dict:
        key = (s, n)
        if key not in self.run_cache:
            self.run_cache[key] = self.eng.run(self.acc.progs[s].steps, n)
        return self.run_cache[key]

    def gather(self, s: int, e: int, beats, t0: int, st: dict) -> tuple[int, int]:
        """Stream ``beats`` (the sub-batch's beats as the feeder presents them, one per
        cycle from ``t0``) into stage ``s``, for engine ``e``: returns the cycles the
        feeder's last beat is taken and the gather is done."""
        from .interface import feature_pack

        units = self.emb[s].units
        G = len(units)
        d = self.acc.progs[s].emb_dim
        dw = max(1, -(-d // self.acc.geo.lanes))
        pack = feature_pack(d, self.acc.geo.lanes)
        k = 1 << pack
        T = self.tables[s]
        port = _Port(t0, self.blocked[e])
        t = t0             # feeder's next beat
        resp = t0          # the cycle after the last response beat was taken
        # per unit, the cycles its finished bags' pooled vectors are valid; they leave in
        # table order, table t's from unit t mod G, a beat of n = min(G, k - t mod k, T - t)
        # of them once all n are valid; a beat that fills its feature word or ends the item
        # writes it (dw words unpacked), the others are taken at once
        pending = [[] for _ in units]
        nxt = 0            # the unit of the next pooled vector
        bag_pop = [0] * G

        def drain(upto):
            nonlocal resp, nxt
            while True:
                n = min(G, k - written[0] % k, T - written[0])
                us = [(nxt + j) % G for j in range(n)]
                if not all(pending[g] for g in us):
                    return
                valid = max(pending[g][0] for g in us)
                if upto is not None and valid > upto:
                    return
                for g in us:
                    pending[g].pop(0)
                if pack == 0 or (written[0] + n) % k == 0 or written[0] + n == T:
                    resp = self._resp(port, valid, resp, dw)
                else:
                    resp = max(valid, resp) + 1
                nxt = (nxt + n) % G
                written[0] += n
                if written[0] == T:
                    nxt, written[0] = 0, 0

        written = [0]      # pooled vectors of the current item written
        for b in beats:
            if b[0] == "dense":
                if b[1] != s:
                    t += 1  # not for this stage: a feeder cycle only
                    continue
                # pooled vectors ready by now take the port first
                drain(t)
                t = port.take(t) + 1
            else:
                accept = t
                for g, table, row, last in b[1]:
                    a, pop = units[g].lookup(table, row, t)
                    accept = max(accept, a)
                    bag_pop[g] = max(bag_pop[g], pop)
                    if last:
                        pending[g].append(units[g].bag(bag_pop[g]))
                        bag_pop[g] = 0
                t = accept + 1
        drain(None)
        st["feed_beats"] += len(beats)
        return t, max(t, port.free, resp)

    @staticmethod
    def _resp(port: _Port, valid: int, resp: int, dw: int) -> int:
        """Write a pooled vector valid at ``valid`` (after the previous one)."""
        t = max(valid, resp)
        for _ in range(dw):
            t = port.take(t) + 1
        return t

    def stage_run(self, s, sub_batches, feed_start, st):
        """Run stage ``s`` over its sub-batches; ``feed_start`` is when the feeder (front
        end or replay) can present the first run beat. Returns (feed end, last score)."""
        t = feed_start
        last_score = t
        engs = self.stage_engs[s]
        for n, beats in sub_batches:
            e = engs[self.next_eng[s]]
            self.next_eng[s] = (self.next_eng[s] + 1) % len(engs)
            # run beat: the feeder waits for the controller to be idle
            t = max(t, self.ctl_idle[s]) + 1
            g0 = t + 1 + (_LAT["replay"] if s else 0)
            feed_end, g_end = self.gather(s, e, beats, g0, st)
            self.busy[f"gather{s}"] += g_end - g0
            st["gather"] += g_end - g0
            start = max(g_end + 1 + _LAT["eng_load"], self.eng_free[e])
            r = self.engine_run(s, n)
            self.blocked[e] = [(start + a, start + b) for a, b in r["blocked"]]
            # results leave in run order: an engine done before the stage's previous run
            # holds its results (one beat per item) until that run's are taken
            end = max(start + r["cycles"], self.out_end[s] + n)
            self.out_end[s] = end
            self.eng_free[e] = end + 1
            self.ctl_idle[s] = start + 1
            last_score = end - _LAT["score"]
            self.busy[f"engine{s}"] += (end - start) / len(engs)
            parts = dict(r, cycles=end - start, fixed=r["fixed"] + end - start - r["cycles"])
            for k in _PARTS:
                st["engine"][k] += parts[k]
                self.parts[s][k] += parts[k]
            st["sub_batches"] += 1
            st["items"] += n
            t = feed_end  # the feeder's next run beat follows the sub-batch's last beat
        return t, last_score

    def topk_drain(self, kk: int) -> int:
        return topk_sort_cycles(self.cfg) + kk + 1

    def query(self, beats_by_stage, n_items: int, offered: int) -> QueryTiming:
        S = self.cfg.sub_batch
        # header: only while fewer than `limit` queries are in flight
        head = max(offered, self.fe_free)
        if len(self.ends) >= self.limit:
            head = max(head, self.ends[-self.limit] + 1)
        q = QueryTiming(start=head, end=head)
        sts = [{"items": 0, "sub_batches": 0, "gather": 0, "feed_beats": 0, "emb": None,
                "engine": dict.fromkeys(_PARTS, 0),
                "topk_drain": 0} for _ in range(self.ns)]
        emb0 = [dict(e.counts) for e in self.emb]
        subs = [(min(S, n_items - i), beats_by_stage[0][i:i + S])
                for i in range(0, n_items, S)]
        fe_end, last_score = self.stage_run(0, [(n, [b for item in bb for b in item])
                                                for n, bb in subs], head + 1, sts[0])
        self.busy["fe"] += fe_end - head
        self.fe_free = fe_end
        n_prev = n_items
        for s in range(1, self.ns):
            kk = min(self.acc.stages[s - 1][1], n_prev)
            drain = self.topk_drain(kk)
            sts[s - 1]["topk_drain"] = drain
            out_first = max(last_score + _LAT["topk_first"] + topk_sort_cycles(self.cfg),
                            self.tk_free[s - 1])
            collect_end = max(out_first + kk, self.rp_free[s] + kk)
            self.tk_free[s - 1] = collect_end
            sts[s - 1]["done"] = collect_end
            order = beats_by_stage[s][:kk]
            subs = [(min(S, kk - i), [b for item in order[i:i + S] for b in item])
                    for i in range(0, kk, S)]
            rp_end, last_score = self.stage_run(s, subs, collect_end + 1, sts[s])
            # the replay spends one cycle per buffered beat and two per sub-batch
            self.rp_free[s] = rp_end + 2 * len(subs)
            self.busy[f"replay{s}"] += rp_end - collect_end
            n_prev = kk
        kk = min(self.acc.stages[-1][1], n_prev)
        drain = self.topk_drain(kk)
        sts[-1]["topk_drain"] = drain
        end = max(last_score + _LAT["topk_first"] + topk_sort_cycles(self.cfg),
                  self.tk_free[-1]) + kk
        self.tk_free[-1] = end
        sts[-1]["done"] = end
        q.end = end
        self.ends.append(end)
        for s, st in enumerate(sts):
            st["emb"] = {k: v - emb0[s][k] for k, v in self.emb[s].counts.items()}
        q.stages = sts
        return q


def _stage_beats(acc, batch, s: int, order=None, beats=None):
    """Per item, the beats stage ``s``'s feeder presents: ``("dense", stage)`` or
    ``("ids", [(unit, table, row, last), ...])``; for s >= 1 (replay) only the buffered
    ones, items in the order ``order`` (the survivors, best first). ``beats``: the query's
    beats (``acc.query_beats(batch)``) when already made."""
    from .interface import beat_lookups

    beats = (acc.query_beats(batch) if beats is None else beats)[1:]
    items, cur = [], []
    tables, ended = len(batch.indices), 0
    for b in beats:
        if b["dense"]:
            if s and b["stage"] == 0:
                continue
            cur.append(("dense", b["stage"]))
        else:
            lanes = beat_lookups(acc.config, b)
            cur.append(("ids", lanes))
            ended += sum(last for *_, last in lanes)
            if ended == tables:
                items.append(cur)
                cur, ended = [], 0
    if order is not None:
        items = [items[i] for i in order]
    return items


def _survivors(acc, batch):
    """Positions kept by every stage (golden, best first)."""
    from .golden.pipeline import topk

    keep = np.arange(batch.size)
    out = []
    for q, k in acc.stages:
        scores = q.forward(batch.take(keep), check=False)
        keep = keep[topk(scores, keep, k)]   # topk gives indices into the survivors
        out.append(keep)
    return out


def predict(acc, batches, alone: bool = True) -> Prediction:
    """Model timing of ``batches`` (one `Batch` per query) on ``acc``.

    Parameters
    ----------
    acc : rpaccel.runtime.Accelerator
        Config, compiled programs, embedding images and stage models.
    batches : sequence of Batch
        The queries, offered back to back.
    alone : bool
        Also model each query on an idle machine (``Prediction.alone``).

    Returns
    -------
    Prediction
    """
    batches = list(batches)
    m = _Machine(acc)
    beats = []
    for b in batches:
        surv = _survivors(acc, b)
        qb = acc.query_beats(b)
        per = [_stage_beats(acc, b, 0, beats=qb)]
        for s in range(1, acc.config.stages):
            per.append(_stage_beats(acc, b, s, surv[s - 1], beats=qb))
        beats.append(per)
    queries = [m.query(per, b.size, 0) for per, b in zip(beats, batches, strict=True)]
    m.busy["axi"] = max(sum(axis[p].busy for axis in m.axis)
                        for p in range(acc.config.axi_ports))
    total = queries[-1].end - queries[0].start if queries else 0
    lone = []
    if alone:
        solo = _Machine(acc)
        for per, b in zip(beats, batches, strict=True):
            idle = max([solo.fe_free, *solo.ends, *solo.eng_free, *solo.rp_free]) + 1
            lone.append(solo.query(per, b.size, idle))
    P = acc.config.axi_ports
    reads = [sum(u.counts["misses"] for st in m.emb for g, u in enumerate(st.units)
                 if g % P == p) for p in range(P)]
    return Prediction(acc.config, queries, [q.latency for q in lone], total, m.busy,
                      lone, limit=m.limit, engine_parts=m.parts, port_reads=reads)


def engine_maps(config: RPAccelConfig) -> list[tuple]:
    """Every way to give each stage a run of consecutive engines, all engines used, stages
    in order: ``(0, 1, 1, 1)``, ``(0, 0, 1, 1)``, ... (on equal partitions any other map
    times the same as one of these)."""
    from itertools import combinations

    E, NS = config.engine_count, config.stages
    out = []
    for cuts in combinations(range(1, E), NS - 1):
        bounds = (0, *cuts, E)
        out.append(tuple(s for s in range(NS) for _ in range(bounds[s + 1] - bounds[s])))
    return out


class EngineMapChoice(NamedTuple):
    """What `best_engine_map` returns."""

    engine_map: tuple
    #: ``{"engine_map", "latency_cycles", "interval_cycles"}`` per map tried.
    table: list
    #: The accelerator with the chosen map and its prediction.
    acc: object
    prediction: Prediction


def best_engine_map(config: RPAccelConfig, make_acc, batches,
                    goal: str = "throughput") -> EngineMapChoice:
    """The engine map (`engine_maps` of ``config``) under which the model runs ``batches``
    best.

    Parameters
    ----------
    config : RPAccelConfig
    make_acc : callable
        ``engine_map -> Accelerator`` on ``config``.
    batches : sequence of Batch
    goal : str
        ``"throughput"`` (fewest cycles between results back to back, then latency) or
        ``"latency"`` (a query alone, then throughput).

    Returns
    -------
    EngineMapChoice
    """
    if goal not in ("throughput", "latency"):
        raise ValueError(f"goal must be 'throughput' or 'latency', not {goal!r}")
    keys = ("interval_cycles", "latency_cycles")
    if goal == "latency":
        keys = keys[::-1]
    table, best = [], None
    for em in engine_maps(config):
        acc = make_acc(em)
        pred = predict(acc, batches)
        row = {"engine_map": list(em), "latency_cycles": float(np.mean(pred.alone)),
               "interval_cycles": float(pred.interval)}
        table.append(row)
        score = tuple(row[k] for k in keys)
        if best is None or score < best[0]:
            best = (score, em, acc, pred)
    return EngineMapChoice(best[1], table, best[2], best[3])


def stage_service(pred: Prediction) -> list[float]:
    """Mean cycles per query each stage is occupied (its service time under load): the
    busiest of its feeder (front end or replay unit), its gather and its engine."""
    n = len(pred.queries)
    b = pred.busy
    return [max(b["fe" if s == 0 else f"replay{s}"], b[f"gather{s}"], b[f"engine{s}"]) / n
            for s in range(pred.config.stages)]


def stage_latency(pred: Prediction) -> list[float]:
    """Mean cycles each stage adds to a query alone (from its start, or the previous
    stage's survivors, to its own survivors out): the shares of ``Prediction.alone``."""
    shares = np.array([[q.stages[s]["done"] - (q.stages[s - 1]["done"] if s else q.start)
                        for s in range(pred.config.stages)] for q in pred.alone_timing])
    return shares.mean(axis=0).tolist()


_SATURATED = {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None,
              "saturated": True}


def _percentiles(lat_cycles, fclk_mhz: float) -> dict:
    ms = np.asarray(lat_cycles, float) / fclk_mhz / 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p95_ms": round(float(np.percentile(ms, 95)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "mean_ms": round(float(ms.mean()), 4)}


def queueing(service, latency, limit: int, qps: float, fclk_mhz: float, n: int = 4000,
             seed: int = 0, warmup: float = 0.1, max_backlog_s: float = 1.0) -> dict:
    """Tail latency of the accelerator under Poisson arrivals, as a tandem of stages.

    Each query waits for a free slot (at most ``limit`` in flight, the front end's rule),
    then for stage s to be free; stage s is then busy ``service[s]`` cycles (its engine's
    share per query, `stage_service`) and hands the survivors on after ``latency[s]``
    cycles (`stage_latency`). Host-side queueing counts in the latency.

    Returns ``{"p50_ms", "p95_ms", "p99_ms", "mean_ms", "saturated"}`` over the queries
    after the first ``warmup`` fraction; ``saturated`` (and ``None`` percentiles) when the
    load is not sustained: a stage serves slower than queries arrive, or the backlog
    grows past ``max_backlog_s`` seconds.
    """
    rng = np.random.default_rng(seed)
    gap = fclk_mhz * 1e6 / qps
    if max(service) >= gap:  # offered faster than the slowest stage serves: unstable
        return dict(_SATURATED)
    arrivals = np.cumsum(rng.exponential(gap, n))
    free = [0.0] * len(service)
    ends = []
    lat = []
    for i, a in enumerate(arrivals):
        t = a if i < limit else max(a, ends[i - limit])
        for s, (sv, ls) in enumerate(zip(service, latency, strict=True)):
            start = max(t, free[s])
            free[s] = start + sv
            t = start + ls
        ends.append(t)
        lat.append(t - a)
        if t - a > max_backlog_s * fclk_mhz * 1e6:
            return dict(_SATURATED)
    return {**_percentiles(lat[int(warmup * n):], fclk_mhz), "saturated": False}


def batch_queueing(latency_of_batch, max_batch: int, qps: float, n: int = 4000,
                   seed: int = 0, warmup: float = 0.1, max_backlog_s: float = 1.0) -> dict:
    """Tail latency of one server that runs every waiting query (up to ``max_batch``) as
    one batch, taking ``latency_of_batch(b)`` seconds (a CPU or GPU running the pipeline
    in PyTorch: measured service times, `rpaccel.scripts.perf_report`)."""
    if latency_of_batch(max_batch) >= max_batch / qps:  # more than the largest batches serve
        return dict(_SATURATED)
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / qps, n))
    lat = np.empty(n)
    i, t = 0, 0.0
    while i < n:
        t = max(t, arrivals[i])
        j = i + 1
        while j < n and j - i < max_batch and arrivals[j] <= t:
            j += 1
        t += latency_of_batch(j - i)
        lat[i:j] = t - arrivals[i:j]
        if t - arrivals[j - 1] > max_backlog_s:
            return dict(_SATURATED)
        i = j
    return {**_percentiles(lat[int(warmup * n):] * 1e6, 1.0), "saturated": False}
