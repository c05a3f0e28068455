"""The crossbar between the stage controllers and the MLP engines: which engines serve
which stage is set at run time (``ENGINE_MAP``), and a stage with several engines runs its
sub-batches on them in turn.

A controller sees one engine, as if it were connected directly: its load beats (the next
sub-batch's dense words and pooled vectors) and its run beat go to the stage's *dispatch*
engine, which moves on to the stage's next engine (in index order, wrapping) once the run
beat is taken; its results come from the stage's *result* engine, which moves on after a
run's ``last`` result beat. Both walk the same order, so results leave in run order: the
top-k unit sees the scores exactly as from one engine, and an engine whose run ends before
the stage's previous run holds its results (the engine stalls on ``out.ready``) until
that run's are taken. A controller sends a sub-batch's load beats only after the previous
run beat was taken, and an engine takes load beats for its next run while it runs (its
other activation bank), so the gather of sub-batch i + 1 overlaps the runs before it.
"""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import engine_layouts, engine_width

__all__ = ["EngineCrossbar"]


class EngineCrossbar(wiring.Component):
    """Routes ``stages`` controllers' engine ports to ``config.engine_count`` engines (see
    the module docstring).

    Parameters
    ----------
    config : RPAccelConfig

    Members
    -------
    owner : In(ArrayLayout(2, engines))
        The stage each engine serves (`rpaccel.interface.ENGINE_NONE`: none, it sees no
        beat); after reset `rpaccel.interface.default_engine_map`. Change it only while no
        run is in flight, with ``restart`` high in that cycle.
    restart : In(1)
        Every stage's dispatch and result engine back to its first engine.
    load_<s>, run_<s> : In(stream)
        Stage ``s``'s controller's engine load and run beats (layouts of
        `rpaccel.interface.engine_width` columns, as every engine's).
    out_<s> : Out(stream)
        Its results, in run order.
    eload_<e>, erun_<e> : Out(stream)
        Engine ``e``'s load and run ports.
    eout_<e> : In(stream)
        Engine ``e``'s results.
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = cfg
        self.n_eng = cfg.engine_count
        self.stage_l = [engine_layouts(cfg, engine_width(cfg, 0)) for s in range(cfg.stages)]
        self.eng_l = [engine_layouts(cfg, engine_width(cfg, e)) for e in range(self.n_eng)]
        run_l = range(cfg.sub_batch + 1)
        members = {"owner": In(data.ArrayLayout(2, self.n_eng)), "restart": In(1)}
        for s, lay in enumerate(self.stage_l):
            members[f"load_{s}"] = In(stream.Signature(lay.load))
            members[f"run_{s}"] = In(stream.Signature(run_l))
            members[f"out_{s}"] = Out(stream.Signature(lay.out))
        for e, lay in enumerate(self.eng_l):
            members[f"eload_{e}"] = Out(stream.Signature(lay.load))
            members[f"erun_{e}"] = Out(stream.Signature(run_l))
            members[f"eout_{e}"] = In(stream.Signature(lay.out))
        super().__init__(members)

    def _first(self, m, s):
        """The lowest engine serving stage ``s`` (comb)."""
        first = Signal(range(self.n_eng), name=f"first{s}")
        for e in reversed(range(self.n_eng)):
            with m.If(self.owner[e] == s):
                m.d.comb += first.eq(e)
        return first

    def _after(self, m, s, cur, first, name):
        """The engine serving stage ``s`` after ``cur`` (wrapping to ``first``)."""
        nxt = Signal(range(self.n_eng), name=name)
        m.d.comb += nxt.eq(first)
        for e in reversed(range(1, self.n_eng)):  # no engine comes before engine 0
            with m.If((self.owner[e] == s) & (cur < e)):
                m.d.comb += nxt.eq(e)
        return nxt

    def elaborate(self, platform):
        m = Module()
        cfg, E = self.config, self.n_eng
        for s in range(cfg.stages):
            load, run, out = (getattr(self, f"{n}_{s}") for n in ("load", "run", "out"))
            first = self._first(m, s)
            # after reset: the default map's first engine of stage s is engine s
            disp = Signal(range(E), name=f"dispatch{s}", init=s)
            res = Signal(range(E), name=f"result{s}", init=s)
            disp_next = self._after(m, s, disp, first, f"dispatch_next{s}")
            res_next = self._after(m, s, res, first, f"result_next{s}")
            for e in range(E):
                eload, erun, eout = (getattr(self, f"{n}_{e}") for n in ("eload", "erun", "eout"))
                mine = self.owner[e] == s
                with m.If(mine & (disp == e)):
                    m.d.comb += [eload.valid.eq(load.valid), load.ready.eq(eload.ready),
                                 eload.payload.target.eq(load.payload.target),
                                 eload.payload.addr.eq(load.payload.addr),
                                 eload.payload.data.eq(load.payload.data),
                                 erun.valid.eq(run.valid), run.ready.eq(erun.ready),
                                 erun.payload.eq(run.payload)]
                with m.If(mine & (res == e)):
                    width = min(len(out.payload.acc), len(eout.payload.acc))
                    m.d.comb += [out.valid.eq(eout.valid), eout.ready.eq(out.ready),
                                 out.payload.last.eq(eout.payload.last)]
                    for c in range(width):
                        m.d.comb += out.payload.acc[c].eq(eout.payload.acc[c])
            with m.If(self.restart):
                m.d.sync += [disp.eq(first), res.eq(first)]
            with m.Else():
                with m.If(run.valid & run.ready):
                    m.d.sync += disp.eq(disp_next)
                with m.If(out.valid & out.ready & out.payload.last):
                    m.d.sync += res.eq(res_next)
        return m
