"""MLP engine: runs a whole stage (bottom MLP, feature interaction, top MLP) of a sub-batch
on one partition of the systolic `Mesh`, and `ComputeEngine`, the mesh with one engine per
partition slot.

The engine follows a program (one descriptor per step, loaded with the weights at model
load). An MLP step tiles its layer ``K x N`` into ``ceil(K/R) x ceil(N/P)`` weight tiles of
the ``R x P`` partition (output tiles outer, input tiles inner) and streams every item of
the sub-batch through each tile; int32 partial sums wait in a per-item buffer between the
input tiles, and after the last one the sum goes with its bias through the `RequantUnit`
into the activation buffer, or (final layer) out of the engine as int32. The next tile's
weights are read from the weight buffer into the array's shadow registers while the
current tile computes, so consecutive tiles follow each other without a gap once the
sub-batch is at least ``R + P + 3`` items (the loader writes each row right behind the
previous tile's first item, `rpaccel.hw.weight_loader`). An interaction step (``dot`` or
``cat``) runs on a small dedicated unit that reads the bottom output and the pooled
embeddings from the feature region of the activation buffer. Numerics: docs/numerics.md;
the host side that compiles a `QuantizedStage` into a program is `rpaccel.program`; the
program and buffer formats are in `rpaccel.interface`.

The engine holds the buffers and the program and arbitrates the activation buffer's
ports; four units run the program, each with its own step pointer: the `IssueSequencer`
(steps, tiles, items into the array, counters), the `WeightLoader` (tiles into the shadow
registers), the `OutputPath` (partial sums, requantization, final results) and the
`InteractionUnit`.
"""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import RPAccelConfig
from ..interface import (
    EngineGeometry,
    EngineTarget,
    Region,
    StepKind,
    engine_layouts,
    pair_row_len,
    slot_width,
)
from .array import Mesh, mesh_layouts, mode_shape
from .interaction import InteractionUnit
from .issue_sequencer import COUNTERS, IssueSequencer
from .output_path import OutputPath
from .skid import SkidBuffer
from .weight_loader import WeightLoader, wload_layout

__all__ = ["MLPEngine", "ComputeEngine", "COUNTERS"]


class MLPEngine(wiring.Component):
    """Buffers of one partition slot and the units that run its program: the
    `IssueSequencer`, the `WeightLoader`, the `OutputPath` and the `InteractionUnit`.

    Parameters
    ----------
    config : RPAccelConfig
    width : int
        Columns of the widest partition this slot can be (`slot_width`).

    Members
    -------
    mode : In(range(log2(partitions) + 1))
        The mesh mode; the partition has ``array_cols >> mode`` columns.
    load : In(stream.Signature(load_layout))
        Model and sub-batch data: weight rows, parameter rows, program steps, pair
        parameters and activation words (`rpaccel.interface.EngineTarget`), through a
        register slice (a beat is written a cycle or more after it is taken). Activation
        words are also accepted while a run is busy: they go to the other bank and are
        read by the next run.
    run : In(stream.Signature(range(sub_batch + 1)))
        Start the program on that many items (1 to ``sub_batch``), once the load beats
        taken before it are written.
    out : Out(stream.Signature(out_layout))
        The final layer's int32 ``acc + bias`` per item and output tile (output tiles
        outer); ``last`` marks the run's last beat.
    act, wload, res
        To and from the partition of the mesh.
    busy : Out(1)
    cycles, act_beats, macs, stall_in, stall_out : Out(48)
        Counters of the last run (`COUNTERS`).
    """

    def __init__(self, config: RPAccelConfig, width: int):
        self.config = config
        self.width = width
        self.geo = EngineGeometry(config)
        self.layouts = lay = engine_layouts(config, width)
        act_l, _, _ = mesh_layouts(config)
        super().__init__({
            "mode": In(mode_shape(config.partitions)),
            "load": In(stream.Signature(lay.load)),
            "run": In(stream.Signature(range(config.sub_batch + 1))),
            "out": Out(stream.Signature(lay.out)),
            "act": Out(stream.Signature(act_l)),
            "wload": Out(stream.Signature(wload_layout(config, width), always_ready=True)),
            "res": In(stream.Signature(data.ArrayLayout(signed(32), width))),
            "busy": Out(1),
            **{n: Out(48) for n in COUNTERS},
        })

    def elaborate(self, platform):
        m = Module()
        cfg, geo, width, lay = self.config, self.geo, self.width, self.layouts
        A, W = geo.lanes, geo.words

        m.submodules.issue = seq = IssueSequencer(cfg, width)
        m.submodules.weights = loader = WeightLoader(cfg, width)
        m.submodules.output = outp = OutputPath(cfg, width)
        m.submodules.interaction = iu = InteractionUnit(cfg, A, W)

        pcols = Signal(range(cfg.array_cols + 1))
        m.d.comb += [pcols.eq(cfg.array_cols >> self.mode), seq.pcols.eq(pcols),
                     outp.pcols.eq(pcols)]

        # ---- buffers -------------------------------------------------------------------
        m.submodules.act_mem = act_mem = Memory(shape=unsigned(8 * A), depth=geo.act_depth,
                                                init=[])
        m.submodules.w_mem = w_mem = Memory(shape=unsigned(8 * width), depth=cfg.weight_rows,
                                            init=[])
        m.submodules.p_mem = p_mem = Memory(shape=data.ArrayLayout(lay.lane, width),
                                            depth=cfg.param_rows, init=[])
        m.submodules.pair_mem = pair_mem = Memory(
            shape=lay.pair, depth=-(-cfg.max_pairs // pair_row_len(cfg)), init=[])
        act_wr = act_mem.write_port(granularity=8)
        act_ra = act_mem.read_port()
        act_rb = act_mem.read_port()
        w_wr, w_rd = w_mem.write_port(), w_mem.read_port()
        p_wr, p_rd = p_mem.write_port(), p_mem.read_port(domain="comb")
        pair_wr, pair_rd = pair_mem.write_port(), pair_mem.read_port(domain="comb")
        # the program: every unit follows it with its own step pointer. In LUT RAM, one
        # copy per reader (max_steps deep, 4 bits a cell), not max_steps registers behind
        # three desc-wide multiplexers
        m.submodules.prog_mem = prog_mem = Memory(shape=lay.desc.size, depth=cfg.max_steps,
                                                  init=[])
        prog_wr = prog_mem.write_port()
        for unit in (seq, loader, outp):
            rd = prog_mem.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(unit.step), unit.desc.eq(rd.data)]

        def act_addr(region, item, word):
            return geo.act_addr(region, item, word) + Mux(seq.bank, geo.bank_words, 0)

        # ---- model / data load -----------------------------------------------------------
        # through a register slice: the port's ready (the activation buffer's write port
        # free of results and interaction outputs, i.e. the program's state) would
        # otherwise run on into the stage controller and the embedding unit or query
        # stream behind it
        m.submodules.load_slice = lsl = SkidBuffer(self.load.payload.shape())
        wiring.connect(m, wiring.flipped(self.load), lsl.i)
        ld = lsl.o.payload
        act_write_free = Signal()  # no result or interaction write this cycle
        ld_ready = Signal()
        m.d.comb += [ld_ready.eq(~seq.busy | ((ld.target == EngineTarget.ACT) & act_write_free)),
                     lsl.o.ready.eq(ld_ready), self.busy.eq(seq.busy)]
        ld_go = lsl.o.valid & ld_ready
        m.d.comb += [
            w_wr.addr.eq(ld.addr), w_wr.data.eq(ld.data),
            w_wr.en.eq(ld_go & (ld.target == EngineTarget.WEIGHT)),
            p_wr.addr.eq(ld.addr), p_wr.data.eq(ld.data),
            p_wr.en.eq(ld_go & (ld.target == EngineTarget.PARAM)),
            pair_wr.addr.eq(ld.addr), pair_wr.data.eq(ld.data),
            pair_wr.en.eq(ld_go & (ld.target == EngineTarget.PAIR)),
        ]
        m.d.comb += [prog_wr.addr.eq(ld.addr), prog_wr.data.eq(ld.data),
                     prog_wr.en.eq(ld_go & (ld.target == EngineTarget.PROG))]

        # ---- the units -------------------------------------------------------------------
        # a run starts once the beats taken before it are written (they are its data; a
        # beat taken with or after the run goes to the next run's bank)
        loads_pending = Signal()
        m.d.comb += [loads_pending.eq(lsl.o.valid),   # the skid fills only behind it
                     seq.run.valid.eq(self.run.valid & ~loads_pending),
                     seq.run.payload.eq(self.run.payload),
                     self.run.ready.eq(seq.run.ready & ~loads_pending)]
        wiring.connect(m, seq.act, wiring.flipped(self.act))
        wiring.connect(m, loader.wload, wiring.flipped(self.wload))
        wiring.connect(m, wiring.flipped(self.res), outp.res)
        wiring.connect(m, outp.out, wiring.flipped(self.out))
        m.d.comb += [loader.start.eq(seq.start), outp.start.eq(seq.start),
                     outp.items.eq(seq.items),
                     loader.pcols.eq(pcols),
                     loader.swap.eq(seq.act.valid & seq.act.ready & seq.act.payload.swap),
                     loader.advance.eq(~self.res.valid | self.res.ready),
                     seq.tiles_loaded.eq(loader.tiles_loaded),
                     seq.fwd_step.eq(outp.fwd_step), seq.fwd_items.eq(outp.fwd_items),
                     seq.out_pending.eq(self.out.valid),
                     w_rd.en.eq(loader.w_en), w_rd.addr.eq(loader.w_addr),
                     loader.w_data.eq(w_rd.data),
                     p_rd.addr.eq(outp.p_addr), outp.p_data.eq(p_rd.data)]
        m.d.comb += [getattr(self, n).eq(getattr(seq, n)) for n in COUNTERS]

        # items in the array, the partial-sum path or the requantizer: a run's first tile,
        # an interaction step and the layer after it wait for 0
        inflight = Signal(range(4 * cfg.sub_batch * 8 + 64))
        m.d.sync += inflight.eq(inflight + seq.entered - outp.retire - outp.wr.valid)
        m.d.comb += seq.drained.eq(inflight == 0)

        d = seq.desc
        m.d.comb += [iu.go.eq(seq.inter_go), seq.inter_busy.eq(iu.busy),
                     iu.items.eq(seq.items), iu.cat.eq(d.kind == StepKind.CAT),
                     iu.feats.eq(d.feats), iu.d.eq(d.d), iu.dw.eq(d.dw), iu.pack.eq(d.pack),
                     pair_rd.addr.eq(iu.pair_row), iu.pair_data.eq(pair_rd.data)]

        # ---- activation buffer read ports: the issue side, or the interaction's operands
        with m.If(iu.rd_en):
            m.d.comb += [act_ra.en.eq(1), act_rb.en.eq(1),
                         act_ra.addr.eq(act_addr(Region.FEAT, iu.rd_item, iu.rd_word)),
                         act_rb.addr.eq(act_addr(Region.FEAT, iu.rd_item, iu.rd_word + 1))]
        with m.Else():
            m.d.comb += [act_ra.en.eq(seq.rd_en),
                         act_ra.addr.eq(act_addr(seq.rd_region, seq.rd_item, seq.rd_word))]
        m.d.comb += [seq.rd_data.eq(act_ra.data), iu.rd_a.eq(act_ra.data),
                     iu.rd_b.eq(act_rb.data)]

        # ---- activation buffer write port: MLP results, interaction, load beats ----------
        wr = outp.wr.payload
        with m.If(outp.wr.valid):
            m.d.comb += [act_wr.addr.eq(act_addr(wr.region, wr.item, wr.word)),
                         act_wr.data.eq(wr.data), act_wr.en.eq(wr.en)]
        with m.Elif(iu.wr_en != 0):
            m.d.comb += [act_wr.addr.eq(act_addr(d.dst, iu.wr_item, iu.wr_word)),
                         act_wr.data.eq(iu.wr_data), act_wr.en.eq(iu.wr_en)]
        with m.Elif(ld_go & (ld.target == EngineTarget.ACT)):
            m.d.comb += [act_wr.addr.eq(ld.addr + Mux(seq.load_bank, geo.bank_words, 0)),
                         act_wr.data.eq(ld.data), act_wr.en.eq(Const(-1, A))]
        m.d.comb += act_write_free.eq(~outp.wr.valid & (iu.wr_en == 0))
        return m


class ComputeEngine(wiring.Component):
    """The `Mesh` with one `MLPEngine` per partition slot: partition ``p`` of the current
    mode is driven by engine ``p``; engines beyond the mode's partition count refuse to
    start.

    Parameters
    ----------
    config : RPAccelConfig
    engines : int, optional
        Engines to build, for partition slots ``0 .. engines - 1`` (default: one per
        partition). A slot without an engine leaves its columns idle: the top level builds
        one engine per stage, so a three-stage design on four partitions has no fourth.
    widths : list of int, optional
        Columns of each engine (default: its slot's widest partition, `slot_width`). The
        top level, whose mode is fixed at ``log2(partitions)``, builds every engine one
        partition wide (`rpaccel.interface.engine_width`); an engine narrower than its
        slot must not run in a mode that makes its partition wider.

    Members
    -------
    mode : In(range(log2(partitions) + 1))
        Change only while every engine is idle.
    engines : list of MLPEngine ports, flattened as ``load__p``, ``run__p``, ``out__p``,
        ``busy__p`` and the counters ``<name>__p``.
    """

    def __init__(self, config: RPAccelConfig, engines: int | None = None,
                 widths: list | None = None):
        self.config = config
        n = config.partitions if engines is None else engines
        if not (isinstance(n, int) and 1 <= n <= config.partitions):
            raise ValueError(f"engines must be an integer from 1 to partitions "
                             f"({config.partitions}), not {engines!r}")
        slots = [slot_width(config, p) for p in range(n)]
        self.widths = slots if widths is None else list(widths)
        gcols = config.array_cols // config.partitions
        allowed = [[gcols << k for k in range(exact_log2(s // gcols) + 1)] for s in slots]
        if len(self.widths) != n or any(
                w not in ok for w, ok in zip(self.widths, allowed, strict=False)):
            raise ValueError(f"widths must give each of the {n} engines a power-of-two "
                             f"multiple of array_cols / partitions ({gcols}) up to its "
                             f"slot's width ({slots}), not {widths!r}")
        members = {"mode": In(mode_shape(config.partitions))}
        self.layouts = [engine_layouts(config, w) for w in self.widths]
        for p, lay in enumerate(self.layouts):
            members[f"load_{p}"] = In(stream.Signature(lay.load))
            members[f"run_{p}"] = In(stream.Signature(range(config.sub_batch + 1)))
            members[f"out_{p}"] = Out(stream.Signature(lay.out))
            members[f"busy_{p}"] = Out(1)
            for n in COUNTERS:
                members[f"{n}_{p}"] = Out(48)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        groups = cfg.partitions
        gcols = cfg.array_cols // groups
        log_g = exact_log2(groups)
        m.submodules.mesh = mesh = Mesh(cfg)
        m.d.comb += mesh.mode.eq(self.mode)
        engines = []
        for p, w in enumerate(self.widths):
            e = MLPEngine(cfg, w)
            m.submodules[f"engine{p}"] = e
            engines.append(e)
            m.d.comb += e.mode.eq(self.mode)
            wiring.connect(m, wiring.flipped(getattr(self, f"load_{p}")), e.load)
            wiring.connect(m, e.out, wiring.flipped(getattr(self, f"out_{p}")))
            m.d.comb += getattr(self, f"busy_{p}").eq(e.busy)
            for n in COUNTERS:
                m.d.comb += getattr(self, f"{n}_{p}").eq(getattr(e, n))
            run = getattr(self, f"run_{p}")
            m.d.comb += [e.run.payload.eq(run.payload),
                         e.run.valid.eq(run.valid & ((p >> self.mode) == 0)),
                         run.ready.eq(e.run.ready & ((p >> self.mode) == 0))]
            # results: mesh output slot p
            m.d.comb += [e.res.valid.eq(mesh.out[p].valid), mesh.out[p].ready.eq(e.res.ready)]
            for c in range(w):
                m.d.comb += e.res.payload[c].eq(mesh.out[p].payload[c])
        for p in range(len(engines), groups):  # slots without an engine: nothing comes out
            m.d.comb += mesh.out[p].ready.eq(1)
        for mode in range(log_g + 1):
            span = groups >> mode
            if any(w < span * gcols for w in self.widths[:1 << mode]):
                continue  # a partition wider than its engine: not a mode these engines run
            with m.If(self.mode == mode):
                for g in range(groups):
                    p, k = g // span, g % span
                    if p >= len(engines):
                        continue
                    e = engines[p]
                    if k == 0:
                        m.d.comb += [mesh.act[g].valid.eq(e.act.valid),
                                     mesh.act[g].payload.eq(e.act.payload),
                                     e.act.ready.eq(mesh.act[g].ready)]
                    m.d.comb += [mesh.wload[g].valid.eq(e.wload.valid),
                                 mesh.wload[g].payload.row.eq(e.wload.payload.row)]
                    for c in range(gcols):
                        if k * gcols + c < e.width:
                            m.d.comb += mesh.wload[g].payload.w[c].eq(
                                e.wload.payload.w[k * gcols + c])
        return m
