"""Host runtime of the RPAccel top level (`rpaccel.hw.top.RPAccel`).

`Accelerator` turns trained int8 stage models into what the hardware is loaded with
(engine programs and weights, embedding-unit images, one DRAM image, CSR writes), encodes
queries into the query stream, computes the golden answers, and runs the generated
Verilog on Verilator (or Icarus) through the cocotb testbench `rpaccel.sim.tb_top`, which
drives the real interfaces (AXI4-Lite CSRs, query / result streams, AXI4 DRAM model).

Example
-------
>>> acc = Accelerator.from_models(get_config("default"), models_dir)   # doctest: +SKIP
>>> run = acc.simulate(acc.movielens_queries(ml, 10, seed=1))          # doctest: +SKIP
>>> run.mismatches, run.cycles_per_query                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import RPAccelConfig, require
from .emb_program import EmbeddingImage
from .golden.pipeline import Pipeline, Stage, hit_rate, ndcg
from .program import compile_stage

__all__ = ["AccelError", "Accelerator", "SimRun", "DEFAULT_PIPELINES", "parse_stages"]

#: Stage models and k per stage, by number of stages (the last k is the top-n).
DEFAULT_PIPELINES = {
    1: (("large", 10),),
    2: (("small", 16), ("large", 10)),
    3: (("small", 16), ("medium", 12), ("large", 10)),
}


class AccelError(ValueError):
    """A model, query or argument the accelerator cannot take; the message names the
    limit and the value."""


def _check(ok, what, rule, value):
    require(ok, what, rule, value, AccelError)


def parse_stages(spec: str) -> tuple:
    """``"small:16,large:10"`` -> ``(("small", 16), ("large", 10))``."""
    out = []
    for part in spec.split(","):
        name, _, k = part.partition(":")
        _check(name and k.isdigit() and int(k) > 0, "a stage",
               "written MODEL:K with K a positive integer", part)
        out.append((name, int(k)))
    return tuple(out)


def parse_engine_map(spec: str) -> tuple:
    """``"0,1,1,-"`` -> ``(0, 1, 1, None)``: the stage of each engine, ``-`` for none."""
    out = []
    for part in spec.split(","):
        _check(part == "-" or part.isdigit(), "an engine map entry",
               "a stage number or '-' (no stage)", part)
        out.append(None if part == "-" else int(part))
    return tuple(out)


@dataclass
class SimRun:
    """What one simulation returned.

    Attributes
    ----------
    answers : list of list of (id, score)
        The hardware's top-n per answered query, best first (a query dropped by the
        hardware, see `Accelerator.job`, has none).
    expected : list of list of (id, score)
        The golden int8 pipeline's, for the same queries.
    errors : list of bool
        The hardware's ``error`` flag per query.
    latency : list of int
        Cycles from a query's header entering to its last result beat.
    total_cycles : int
        Cycles from the first query beat to the last result beat (queries back to back).
    counters : dict
        CSR counters read at the end.
    load_cycles : int
        Cycles the model load took (CSR writes and polling included for ``"dma"``).
    status_ok : bool
        The error status (``ERR_CAUSE``, ``ERR_WHERE``, ``ERR_ID``) named the first fault
        of the corrupted queries (or none without faults) and cleared through ``CTRL``.
    mixed_flags : int
        Answers whose ``error`` flag was set on some beats only (always 0 when correct).
    waves : pathlib.Path or None
        The waveform of the run, FST (VCD without the lz4 headers), from a traced build
        (``simulate(..., waves=True)``).
    """

    answers: list
    expected: list
    errors: list
    latency: list
    total_cycles: int
    counters: dict = field(default_factory=dict)
    load_cycles: int = 0
    status_ok: bool = True
    mixed_flags: int = 0
    waves: Path | None = None

    @property
    def mismatches(self) -> int:
        return sum(a != e for a, e in zip(self.answers, self.expected, strict=True))


def movielens_profile(ml, seed: int = 0):
    """The static caches' profile of MovieLens models: a `Batch` of 400 training samples
    drawn from ``seed`` (`Accelerator.from_models`)."""
    rng = np.random.default_rng(seed)
    users, items, _ = ml.training_samples(1, rng)
    pick = rng.choice(len(users), 400, replace=False)
    return ml.batch(users[pick], items[pick])


class Accelerator:
    """Models loaded onto one `RPAccelConfig`.

    Parameters
    ----------
    config : RPAccelConfig
    stages : sequence of (QuantizedStage, int)
        Stage models and the k each keeps (the last k is the answer's length); as many as
        ``config.stages``.
    profile : Batch, optional
        Batch whose lookup frequencies choose the static-cache rows of every stage
        (none pinned without it).
    static_bytes : int
        Static-cache budget per stage in bytes.
    ml : MovieLens, optional
        The data set the stage models were trained on (`movielens_queries` draws from it).
    names : sequence of str, optional
        The stage models' names (`pipeline_spec` pairs them with their k).
    engine_map : sequence of int or None, optional
        The stage each of the ``config.engine_count`` MLP engines serves (``None``: none),
        written into the ``ENGINE_MAP`` CSR; every stage needs one. A stage with several
        engines runs its sub-batches on them in turn. Default
        `rpaccel.interface.default_engine_map` (engine e serves stage e, extra engines the
        last stage); `rpaccel.perf.best_engine_map` picks one for a workload.

    Attributes
    ----------
    pipeline_spec : tuple of (str, int)
        ``(("small", 16), ("large", 10))``-like; ``("stage<s>", k)`` without ``names``.
    engine_map : tuple
        The engine map in use.
    progs, engine_progs : list of Program
        Each stage's compiled program (for its first engine) and each engine's (None for
        an engine without a stage).

    Raises
    ------
    AccelError, ProgramError, EmbError
        When a model or k does not fit the configuration.
    """

    def __init__(self, config: RPAccelConfig, stages, profile=None, static_bytes: int = 1024,
                 ml=None, names=None, engine_map=None):
        from .hw.embedding import emb_layouts
        from .hw.loader import load_words
        from .interface import (
            EngineGeometry,
            LoadUnit,
            check_engine_map,
            csr_regs,
            default_engine_map,
            engine_layouts,
            engine_map_word,
            engine_width,
            feature_pack,
            load_ctrl,
        )

        cfg = config
        self.config = cfg
        self.stages = list(stages)
        self.ml = ml
        names = list(names) if names is not None else [f"stage{s}" for s in
                                                        range(len(self.stages))]
        _check(len(names) == len(self.stages), "names", "one per stage model", names)
        self.pipeline_spec = tuple((n, k) for n, (_q, k) in zip(names, self.stages,
                                                              strict=True))
        _check(len(self.stages) == cfg.stages, "number of stage models",
               f"config.stages ({cfg.stages}) for config {cfg.name!r}", len(self.stages))
        for s, (_q, k) in enumerate(self.stages):
            _check(isinstance(k, int) and 1 <= k <= cfg.topk_k, f"k of stage {s}",
                   f"from 1 to topk_k ({cfg.topk_k})", k)
        tables = {len(q.emb) for q, _ in self.stages}
        _check(len(tables) == 1, "tables per stage model",
               "the same for every stage (a candidate's ids are buffered once)", tables)
        self.geo = geo = EngineGeometry(cfg)
        self.mode = cfg.partitions.bit_length() - 1
        try:
            self.engine_map = check_engine_map(
                cfg, default_engine_map(cfg) if engine_map is None else engine_map)
        except ValueError as e:
            raise AccelError(str(e)) from None
        # every engine's program is its stage's, compiled for the engine's width (the load
        # beats' layout): once per stage and width
        compiled = {}
        for e, s in enumerate(self.engine_map):
            key = (s, engine_width(cfg, e))
            if s is not None and key not in compiled:
                compiled[key] = compile_stage(cfg, key[1], self.mode, self.stages[s][0])
        self.engine_progs = [None if s is None else compiled[s, engine_width(cfg, e)]
                             for e, s in enumerate(self.engine_map)]
        self.progs = [self.engine_progs[self.engine_map.index(s)]
                      for s in range(len(self.stages))]
        align = max(4096, cfg.cache_sets * cfg.line_bytes)  # keeps golden set indices
        self.images, base = [], 0
        for q, _ in self.stages:
            img = EmbeddingImage.for_stage(cfg, q, profile, static_bytes, dram_base=base)
            self.images.append(img)
            base = -(-img.dram_size // align) * align
        # load images after the tables: every engine's image, then every stage's embedding
        # image (the addresses are planned here; the bytes are made on first use, `dram`)
        self.loads, self._blobs = [], []
        mload_l = emb_layouts(cfg)[2]
        units = [(LoadUnit.ENGINE, e, engine_layouts(cfg, engine_width(cfg, e)).load,
                  len(prog.beats)) for e, prog in enumerate(self.engine_progs) if prog]
        units += [(LoadUnit.EMBEDDING, s, mload_l, img.load_beat_count())
                  for s, img in enumerate(self.images)]
        for unit, index, layout, count in units:
            size = count * load_words(layout.size, cfg.axi_data_bits) * cfg.axi_data_bits // 8
            self.loads.append((base, count, load_ctrl(index, unit)))
            self._blobs.append((base, layout, index, unit))
            base = -(-(base + size) // 4096) * 4096
        _check(base <= 1 << min(32, cfg.axi_addr_bits), "DRAM image (tables + load images)",
               f"within the {min(32, cfg.axi_addr_bits)}-bit address space", base)
        self.dram_size = base
        regs = csr_regs(cfg)
        self.csr_writes = [(regs["ENGINE_MAP"][0], engine_map_word(self.engine_map))]
        for s, ((q, k), prog) in enumerate(zip(self.stages, self.progs, strict=True)):
            for name, value in (("K", k), ("DENSE_WORDS", -(-prog.dense_dim // geo.lanes)),
                                ("TABLES", len(q.emb)), ("DW", -(-prog.emb_dim // geo.lanes)),
                                ("FPACK", feature_pack(prog.emb_dim, geo.lanes))):
                self.csr_writes.append((regs[f"S{s}_{name}"][0], value))
        self.regs = {n: a for n, (a, _, _) in regs.items()}
        self.pipeline = Pipeline([Stage(q, k) for q, k in self.stages], name=cfg.name)

    @cached_property
    def emb_load_beats(self) -> list:
        """Each stage's embedding-unit load beats (table descriptors, static map, rows)."""
        return [img.load_beats() for img in self.images]

    @cached_property
    def dram(self) -> bytes:
        """The DRAM image: every stage's tables, then the load images at `loads`."""
        from .hw.loader import load_image
        from .interface import LoadUnit

        dram = bytearray(self.dram_size)
        for img in self.images:
            d = img.dram()
            dram[img.dram_base:len(d)] = d[img.dram_base:]
        for addr, layout, s, unit in self._blobs:
            beats = (self.engine_progs[s].beats if unit == LoadUnit.ENGINE
                     else self.emb_load_beats[s])
            blob = load_image(layout, beats, self.config.axi_data_bits)
            dram[addr:addr + len(blob)] = blob
        return bytes(dram)

    @classmethod
    def from_models(cls, config: RPAccelConfig, models_dir, pipeline=None, ml=None,
                    static_bytes: int = 1024, seed: int = 0,
                    engine_map=None) -> Accelerator:
        """Trained models from ``models_dir`` (`rpaccel.golden.train.build_models`), with the
        static caches profiled on 400 MovieLens training samples.

        ``pipeline``: ``(("small", 16), ("large", 10))``-like; default
        `DEFAULT_PIPELINES` for the config's number of stages.
        """
        from .golden.data import load_ml100k
        from .golden.train import build_models

        pipeline = pipeline or DEFAULT_PIPELINES[config.stages]
        qm = build_models(Path(models_dir), log=lambda s: None)
        for name, _ in pipeline:
            _check(name in qm, "a stage model", f"one of {sorted(qm)}", name)
        ml = ml or load_ml100k()
        prof = movielens_profile(ml, seed)
        return cls(config, [(qm[n], k) for n, k in pipeline], prof, static_bytes, ml=ml,
                   names=[n for n, _ in pipeline], engine_map=engine_map)

    # ---- queries ------------------------------------------------------------------------
    def movielens_queries(self, ml, n: int, seed: int = 0, candidates: int = 100):
        """``n`` MovieLens users (chosen by ``seed``), each a query of ``candidates`` items:
        ``[(batch, position of the held-out positive)]``."""
        _check(isinstance(n, int) and n >= 1, "queries", "a positive integer", n)
        _check(2 <= candidates <= self.config.max_items, "candidates",
               f"from 2 to max_items ({self.config.max_items})", candidates)
        rng = np.random.default_rng(seed)
        users = sorted(rng.choice(ml.num_users, size=min(n, ml.num_users), replace=False))
        out = []
        for u, cands, pos in ml.queries(candidates, seed=seed, users=[int(x) for x in users]):
            out.append((ml.batch(np.full(len(cands), u), cands), pos))
        return out

    def query_beats(self, batch) -> list:
        """The query stream of one query (dicts of `rpaccel.hw.top.top_layouts` [0])."""
        from .emb_program import batch_bags
        from .interface import query_beats

        cfg, A = self.config, self.geo.lanes
        n = batch.size
        _check(1 <= n <= cfg.max_items, "candidates of a query",
               f"from 1 to max_items ({cfg.max_items})", n)
        dense = [q.quantize_dense(batch.dense) for q, _ in self.stages]
        bags = batch_bags(batch)
        t_count = len(batch.indices)
        later_words = sum(-(-d.shape[1] // A) for d in dense[1:])
        for i in range(n):
            item_bags = bags[i * t_count:(i + 1) * t_count]
            for t, ids in item_bags:
                _check(len(ids) >= 1, f"bag of table {t} (candidate {i})", "non-empty", ids)
            G = cfg.emb_units
            kept = later_words + max(sum(len(ids) for t, ids in item_bags if t % G == g)
                                     for g in range(G))
            if cfg.stages > 1:
                _check(kept <= cfg.cand_beats, f"buffered beats of candidate {i}",
                       f"at most cand_beats ({cfg.cand_beats})", kept)
        return query_beats(cfg, dense, bags)

    def golden(self, batch) -> list:
        """The golden int8 pipeline's answer ``[(id, score)]``, best first."""
        pos, scores, _ = self.pipeline.rank(batch)
        return [(int(p), int(s)) for p, s in zip(pos, scores, strict=True)]

    # ---- simulation ---------------------------------------------------------------------
    def job(self, batches, bad=None) -> dict:
        """Everything the testbench needs.

        ``bad``: queries to corrupt, as indices (an out-of-range id) or ``{index: fault}``
        with fault ``"id"`` (the last id past the end of its table: the answer is flagged,
        ``ERR_WHERE`` / ``ERR_ID`` name it), ``"beats"`` (candidate 0's first bag gets
        ``cand_beats`` extra ids: flagged, ``ERR_CAUSE`` CAND_BEATS) or ``"count"`` (the
        header claims ``max_items + 1`` candidates: the query is dropped, no answer,
        CAND_COUNT), ``"short"`` (the query's stream ends, ``end`` set, in the middle of
        its ids: the front end makes up the rest, the answer is flagged, FRAMING) or
        ``"unended"`` (no ``end`` on the query's last beat, two surplus beats after it:
        they are dropped, the answer is exact and unflagged, FRAMING). Flagged answers are
        only checked for the flag; a query's ``bad`` entry is then ``{"fault", "cause",
        "flagged", "table", "id"}``, else None.
        """
        from .interface import ErrCause, beat_lookups

        faults = bad if isinstance(bad, dict) else {i: "id" for i in (bad or ())}
        for i, f in faults.items():
            _check(f in ("id", "beats", "count", "short", "unended"), f"fault of query {i}",
                   "'id', 'beats', 'count', 'short' or 'unended'", f)
            _check(f != "beats" or self.config.stages > 1, f"fault of query {i}",
                   "'id' or 'count' with one stage (no candidate buffer)", f)
        queries = []
        for i, b in enumerate(batches):
            beats = self.query_beats(b)
            exp = self.golden(b)
            wrong = None
            fault = faults.get(i)
            if fault == "id":
                # the query's last id beat: past the end of its table
                beat = next(x for x in reversed(beats) if not x["dense"] and not x["head"])
                g, table, _, _ = beat_lookups(self.config, beat)[-1]
                bad_id = self.images[0].rows[table] + 5
                if g:
                    beat["xid"] = list(beat["xid"])
                    beat["xid"][g - 1] = bad_id
                else:
                    beat["id"] = bad_id
                wrong = {"table": table, "id": bad_id, "cause": ErrCause.ID_RANGE}
            elif fault == "beats":
                at = next(j for j, x in enumerate(beats) if not x["dense"] and not x["head"])
                extra = dict(beats[at], last=0, id=0)
                if self.config.emb_units > 1:
                    extra.update(xlast=[0] * len(extra["xlast"]), xid=[0] * len(extra["xid"]))
                beats[at:at] = [dict(extra) for _ in range(self.config.cand_beats)]
                wrong = {"cause": ErrCause.CAND_BEATS}
            elif fault == "count":
                beats[0]["id"] = self.config.max_items + 1
                wrong = {"cause": ErrCause.CAND_COUNT}
            elif fault == "short":
                at = next(j for j in range(len(beats) // 2, len(beats))
                          if not beats[j]["dense"])
                beats = beats[:at + 1]
                beats[-1] = dict(beats[-1], end=1)
                wrong = {"cause": ErrCause.FRAMING}
            elif fault == "unended":
                surplus = [dict(b) for b in beats[-2:]]
                beats[-1] = dict(beats[-1], end=0)
                beats += surplus
                wrong = {"cause": ErrCause.FRAMING, "flagged": False}
            if wrong:
                wrong["fault"] = fault
                wrong.setdefault("flagged", True)
            # a query whose header claims too many candidates is dropped: no answer
            queries.append({"beats": beats, "expect": exp, "bad": wrong,
                            "dropped": fault == "count"})
        return {"csr": self.csr_writes,
                "eload": [p.beats if p else [] for p in self.engine_progs],
                "mload": self.emb_load_beats, "dram": self.dram,
                "loads": self.loads, "regs": self.regs, "queries": queries}

    def simulate(self, batches, sim: str = "verilator", workdir=None, idle: float = 0.0,
                 backpressure: float = 0.0, dram_stall: float = 0.0, seed: int = 1,
                 bad=None, reset_mid: bool = False, progress=None, check: bool = False,
                 load: str = "dma", waves: bool = False, bench: str = "cocotb",
                 port: str = "stream"):
        """Run ``batches`` (one `Batch` per query) through the generated Verilog.

        ``load``: ``"dma"`` (the model loader reads the load images from DRAM, started by
        CSR writes: the way a host loads a model) or ``"stream"`` (the testbench drives the
        ``eload`` / ``mload`` streams, one beat per cycle: a faster start in simulation).
        ``waves`` (or ``WAVES=1``): a separate traced build writes a waveform of the run
        (FST, or VCD without the lz4 headers) into ``workdir`` (`SimRun.waves`).
        ``bench``: ``"cocotb"`` (`rpaccel.sim.tb_top`, Verilator or Icarus) or ``"native"``
        (`rpaccel.sim.native`: the same stimulus and checks in a Verilog testbench, no
        Python per cycle, Verilator only, model loaded by the loader).
        ``port``: ``"stream"`` (`rpaccel.hw.top.RPAccel`'s query and result streams) or
        ``"axis"`` (`rpaccel.hw.axis.RPAccelAxis`: AXI4-Stream packets of byte records,
        driven by cocotbext-axi; cocotb bench, no ``reset_mid``).

        Returns
        -------
        SimRun, (tests, failures)
            With ``check`` the testbench itself fails on any mismatch.
        """
        from .hw.axis import RPAccelAxis
        from .hw.top import RPAccel
        from .sim.runner import build, run

        _check(sim in ("verilator", "icarus"), "sim", "'verilator' or 'icarus'", sim)
        _check(load in ("dma", "stream"), "load", "'dma' or 'stream'", load)
        _check(bench in ("cocotb", "native"), "bench", "'cocotb' or 'native'", bench)
        _check(port in ("stream", "axis"), "port", "'stream' or 'axis'", port)
        _check(port == "stream" or (bench == "cocotb" and not reset_mid),
               "port 'axis'", "the cocotb bench without reset_mid", (bench, reset_mid))
        job = self.job(batches, bad)
        workdir = Path(workdir or tempfile.mkdtemp(prefix="rpaccel-sim-"))
        workdir.mkdir(parents=True, exist_ok=True)
        if bench == "native":
            return self._simulate_native(job, sim, workdir, idle, backpressure, dram_stall,
                                         seed, reset_mid, check, load, waves)
        jpath = workdir / "job.pkl"
        jpath.write_bytes(pickle.dumps(job))
        metrics = workdir / "metrics.json"
        if metrics.exists():
            metrics.unlink()
        factory, top = (RPAccelAxis, "rpaccel_axis") if port == "axis" else (RPAccel, "rpaccel")
        sb = build(factory, self.config, top, sim, public="top", waves=waves)
        params = {"jobs": str(jpath), "metrics": str(metrics), "idle": idle,
                  "backpressure": backpressure, "dram_stall": dram_stall, "seed": seed,
                  "reset_mid": reset_mid, "check": check, "load": load, "port": port}
        if progress is not None:
            params["progress"] = str(workdir / "progress")
        result = run(sb, "rpaccel.sim.tb_top", workdir, params, seed=seed)
        if not metrics.exists():
            raise AccelError(f"simulation ended without metrics; log: {workdir / 'sim.log'}")
        mt = json.loads(metrics.read_text())
        expected = [q["expect"] for q in job["queries"] if not q["dropped"]]
        return SimRun([[tuple(x) for x in a] for a in mt["answers"]],
                      expected, mt["errors"], mt["latency"],
                      mt["total_cycles"], mt["counters"], mt["load_cycles"], mt["status_ok"],
                      mt["mixed_flags"], sb.waves_file(workdir)), result

    def _simulate_native(self, job, sim, workdir, idle, backpressure, dram_stall, seed,
                         reset_mid, check, load, waves):
        from .sim.native import build_native, problems, run_native

        _check(sim == "verilator", "sim of the native bench", "'verilator'", sim)
        _check(load == "dma", "load of the native bench", "'dma' (the model loader)", load)
        _check(not waves, "waves", "off with the native bench (use bench='cocotb')", waves)
        mt = run_native(build_native(self.config), job, workdir, idle, backpressure,
                        dram_stall, seed, reset_mid, check)
        wrong = problems(job, mt)
        if check:
            for w in wrong:
                print(w, file=sys.stderr)
        expected = [q["expect"] for q in job["queries"] if not q["dropped"]]
        run = SimRun([[tuple(x) for x in a] for a in mt["answers"]], expected, mt["errors"],
                     mt["latency"], mt["total_cycles"], mt["counters"], mt["load_cycles"],
                     mt["status_ok"], mt["mixed_flags"], None)
        return run, (1, int(bool(wrong)))


def quality(answers, positives, k: int = 10) -> dict:
    """HR@k and NDCG@k of answers (lists of (id, score)) given each query's positive."""
    rank = np.array([next((r for r, (i, _) in enumerate(a) if i == p), -1)
                     for a, p in zip(answers, positives, strict=True)])
    return {f"hr@{k}": round(hit_rate(rank, k), 4), f"ndcg@{k}": round(ndcg(rank, k), 4)}
