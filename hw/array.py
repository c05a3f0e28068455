"""Reconfigurable weight-stationary int8 systolic array: PE -> Tile -> Mesh."""

from amaranth import ClockSignal, Instance, Module, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import RPAccelConfig

__all__ = ["PE", "Tile", "Mesh", "mesh_layouts", "mode_shape", "tile_module_name", "tile_instance",
           "tile_module_verilog"]


def mode_shape(partitions: int) -> range:
    """Shape of the run-time mode (log2 of the partition count in use): at least one bit,
    so that a one-partition design has no zero-width signal (``[-1:0]`` in Verilog)."""
    return range(max(2, exact_log2(partitions) + 1))


class PE(wiring.Component):
    """Processing element: ``psum_out = psum_in + w * x_in`` (int8 x int8 -> int32).

    Weight-stationary with a shadow weight: ``load`` writes the shadow register; an item
    whose ``flag`` is set switches the PE to the shadow weight, and is itself computed with
    it, so a new weight tile takes effect exactly with the first item of the new tile even
    while older items are still in the array. Every output is registered; ``en`` holds the
    PE (stall).

    Three pipeline stages for fmax: the multiplier's operands (the selected weight and
    ``x_in``) are registered, then the product, then the sum, which adds the product of
    the item that passed two cycles earlier. ``x_out`` leaves after one cycle and
    ``psum_out`` after ``LATENCY``, so a partial sum still meets its item's product one row
    further down (the whole array is ``LATENCY - 1`` cycles later, not that per row).
    """

    LATENCY = 3

    x_in: In(signed(8))
    valid_in: In(1)
    flag_in: In(1)
    psum_in: In(signed(32))
    load: In(1)
    load_w: In(signed(8))
    en: In(1)
    x_out: Out(signed(8))
    valid_out: Out(1)
    flag_out: Out(1)
    psum_out: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        w = Signal(signed(8))
        shadow = Signal(signed(8))
        use = Signal(signed(8))
        swap = self.valid_in & self.flag_in
        m.d.comb += use.eq(w)
        with m.If(swap):
            m.d.comb += use.eq(shadow)
        with m.If(self.load):
            m.d.sync += shadow.eq(self.load_w)
        x_r = Signal(signed(8))
        w_r = Signal(signed(8))
        prod = Signal(signed(16))
        with m.If(self.en):
            m.d.sync += [self.x_out.eq(self.x_in), self.valid_out.eq(self.valid_in),
                         self.flag_out.eq(self.flag_in), x_r.eq(self.x_in), w_r.eq(use),
                         prod.eq(w_r * x_r), self.psum_out.eq(self.psum_in + prod)]
            with m.If(swap):
                m.d.sync += w.eq(shadow)
        return m


class Tile(wiring.Component):
    """``rows x cols`` PEs wired combinationally: activations flow right, partial sums
    down. Ports are per row (left edge in, right edge out) and per column (top in, bottom
    out); one enable for the tile."""

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        super().__init__(self.ports(rows, cols))

    @staticmethod
    def ports(rows: int, cols: int) -> wiring.Signature:
        """The tile's signature (also the port list of the shared tile module)."""
        return wiring.Signature({
            "x_in": In(signed(8)).array(rows), "valid_in": In(1).array(rows),
            "flag_in": In(1).array(rows), "psum_in": In(signed(32)).array(cols),
            "load": In(1).array(rows), "load_w": In(signed(8)).array(rows, cols),
            "en": In(1),
            "x_out": Out(signed(8)).array(rows), "valid_out": Out(1).array(rows),
            "flag_out": Out(1).array(rows), "psum_out": Out(signed(32)).array(cols),
        })

    def elaborate(self, platform):
        m = Module()
        pes = [[PE() for _ in range(self.cols)] for _ in range(self.rows)]
        for r in range(self.rows):
            for c in range(self.cols):
                pe = pes[r][c]
                m.submodules[f"pe_{r}_{c}"] = pe
                left = pes[r][c - 1] if c else None
                m.d.comb += [
                    pe.x_in.eq(left.x_out if left else self.x_in[r]),
                    pe.valid_in.eq(left.valid_out if left else self.valid_in[r]),
                    pe.flag_in.eq(left.flag_out if left else self.flag_in[r]),
                    pe.psum_in.eq(pes[r - 1][c].psum_out if r else self.psum_in[c]),
                    pe.load.eq(self.load[r]), pe.load_w.eq(self.load_w[r][c]),
                    pe.en.eq(self.en),
                ]
            m.d.comb += [self.x_out[r].eq(pes[r][-1].x_out),
                         self.valid_out[r].eq(pes[r][-1].valid_out),
                         self.flag_out[r].eq(pes[r][-1].flag_out)]
        for c in range(self.cols):
            m.d.comb += self.psum_out[c].eq(pes[-1][c].psum_out)
        return m


def tile_module_name(config: RPAccelConfig) -> str:
    """Verilog module name of the shared tile when ``config.tile_modules`` is set."""
    return f"rpaccel_tile{config.block}x{config.block}"


def tile_instance(config: RPAccelConfig, tile) -> Instance:
    """An `Instance` of the shared tile module wired to the signals of ``tile``, an
    interface of `Tile.ports` (``signature.create()``): the tile's logic is written once,
    not once per tile."""
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in tile.signature.flatten(tile):
        ports[("i_" if member.flow == In else "o_") + "__".join(map(str, path))] = value
    return Instance(tile_module_name(config), **ports)


def tile_module_verilog(config: RPAccelConfig, backend: str = "verilog") -> str:
    """Text of the shared ``block x block`` tile module (`tile_module_name`): Verilog, or
    RTLIL with ``backend="rtlil"`` (for Yosys)."""
    from amaranth.back import rtlil, verilog

    from . import conversion

    convert = {"verilog": verilog.convert, "rtlil": rtlil.convert}[backend]
    with conversion():
        return convert(Tile(config.block, config.block), name=tile_module_name(config))


def mesh_layouts(config: RPAccelConfig):
    """Payload layouts of `Mesh`: activations (one item: ``array_rows`` int8 and the
    new-tile ``swap`` flag), weight-row loads of one column group, outputs (one item:
    ``array_cols`` int32, the first ``cols`` of the partition meaningful)."""
    group_cols = config.array_cols // config.partitions
    act = data.StructLayout({"x": data.ArrayLayout(signed(8), config.array_rows), "swap": 1})
    wload = data.StructLayout({"row": unsigned(max(1, (config.array_rows - 1).bit_length())),
                               "w": data.ArrayLayout(signed(8), group_cols)})
    out = data.ArrayLayout(signed(32), config.array_cols)
    return act, wload, out


class Mesh(wiring.Component):
    """The reconfigurable ``array_rows x array_cols`` array, a grid of ``block x block``
    tiles in ``partitions`` column groups.

    ``mode`` (run time; change it only while the array is empty) splits the array into
    ``2**mode`` independent partitions of ``array_rows x (array_cols >> mode)``; partition
    p is fed by ``act[p]`` and the ``wload`` streams of its column groups, and answers on
    ``out[p]``. Each item ``x`` (``array_rows`` int8) gives ``x @ W`` (int32 per column of
    its partition), where ``W[r][c]`` was loaded into the shadow weights by ``wload`` and
    made active by the first item with ``swap`` set. Do not load a group's shadow weights
    again before the swapping item has left the array. Items keep their order; each
    partition stalls on its own when its output is blocked. Latency: ``array_rows + cols +
    PE.LATENCY`` cycles from the ``act`` transfer to ``out`` valid.

    Members
    -------
    mode : In(range(log2(partitions) + 1))
    act : In(stream.Signature(act_layout)).array(partitions)
    wload : In(stream.Signature(wload_layout)).array(partitions)
        Weight rows per column group, one a cycle (``ready`` is always 1: the stream is not
        declared ``always_ready`` so that the Mesh keeps its ``ready`` port when it is
        generated alone, a top-level port Amaranth 0.5 cannot make of a constant).
    out : Out(stream.Signature(out_layout)).array(partitions)
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.act_layout, self.wload_layout, self.out_layout = mesh_layouts(config)
        g = config.partitions
        super().__init__({
            "mode": In(mode_shape(g)),
            "act": In(stream.Signature(self.act_layout)).array(g),
            "wload": In(stream.Signature(self.wload_layout)).array(g),
            "out": Out(stream.Signature(self.out_layout)).array(g),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols, b, groups = cfg.array_rows, cfg.array_cols, cfg.block, cfg.partitions
        gcols = cols // groups
        log_g = exact_log2(groups)

        # partition bookkeeping for the run-time mode
        head = [Signal(name=f"head{g}") for g in range(groups)]  # group starts a partition
        part_of = [Signal(range(max(2, groups)), name=f"part_of{g}") for g in range(groups)]
        head_col = [Signal(range(cols), name=f"head_col{g}") for g in range(groups)]
        pcols = Signal(range(cols + 1))  # columns per partition
        for mode in range(log_g + 1):
            with m.If(self.mode == mode):
                span = groups >> mode  # groups per partition
                m.d.comb += pcols.eq(cols >> mode)
                for g in range(groups):
                    m.d.comb += [head[g].eq(g % span == 0), part_of[g].eq(g // span),
                                 head_col[g].eq(g // span * span * gcols)]

        # per-partition stall: a partition advances when its output register can move on
        en_part = [Signal(name=f"en_part{p}") for p in range(groups)]
        for p in range(groups):
            m.d.comb += en_part[p].eq(~self.out[p].valid | self.out[p].ready)
        en = [Signal(name=f"en{g}") for g in range(groups)]
        for g in range(groups):
            for p in range(groups):
                with m.If(part_of[g] == p):
                    m.d.comb += en[g].eq(en_part[p])

        # tiles, organised as [tile column][tile row]; each column group has gcols // b
        # tile columns
        tcols_per_group = gcols // b
        def tile():
            return Tile.ports(b, b).create() if cfg.tile_modules else Tile(b, b)

        grid = [[tile() for _ in range(rows // b)] for _ in range(cols // b)]
        for tc, tcol in enumerate(grid):
            for tr, t in enumerate(tcol):
                m.submodules[f"tile_{tr}_{tc}"] = \
                    tile_instance(cfg, t) if cfg.tile_modules else t

        prev_right = None  # (x, valid, flag) per row at the right edge of the previous group
        bottoms = []  # per global column: (group, bottom psum)
        ends = []  # per group: valid of its bottom-right PE (an item is complete there)
        for g in range(groups):
            act, wl = self.act[g], self.wload[g]
            # activations enter a partition's first group through a row skew: row r is
            # delayed by r cycles so that the wavefront meets the partial sums in step
            m.d.comb += [act.ready.eq(head[g] & en[g]), wl.ready.eq(1)]
            row_in = []
            for r in range(rows):
                x, v, f = act.payload.x[r], act.valid & head[g], act.payload.swap
                for d in range(r):
                    nx = Signal(signed(8), name=f"skx{g}_{r}_{d}")
                    nv = Signal(name=f"skv{g}_{r}_{d}")
                    nf = Signal(name=f"skf{g}_{r}_{d}")
                    with m.If(en[g]):
                        m.d.sync += [nx.eq(x), nv.eq(v), nf.eq(f)]
                    x, v, f = nx, nv, nf
                if prev_right is not None:
                    # a group inside a partition takes its rows from the group on its left
                    px, pv, pf = prev_right[r]
                    sx = Signal(signed(8), name=f"rx{g}_{r}")
                    sv = Signal(name=f"rv{g}_{r}")
                    sf = Signal(name=f"rf{g}_{r}")
                    with m.If(head[g]):
                        m.d.comb += [sx.eq(x), sv.eq(v), sf.eq(f)]
                    with m.Else():
                        m.d.comb += [sx.eq(px), sv.eq(pv), sf.eq(pf)]
                    x, v, f = sx, sv, sf
                row_in.append((x, v, f))
            group_tiles = grid[g * tcols_per_group:(g + 1) * tcols_per_group]
            for k, tcol in enumerate(group_tiles):
                for tr, t in enumerate(tcol):
                    m.d.comb += t.en.eq(en[g])
                    for i in range(b):
                        r = tr * b + i
                        if k == 0:
                            x, v, f = row_in[r]
                        else:
                            left = group_tiles[k - 1][tr]
                            x, v, f = left.x_out[i], left.valid_out[i], left.flag_out[i]
                        m.d.comb += [t.x_in[i].eq(x), t.valid_in[i].eq(v), t.flag_in[i].eq(f),
                                     t.load[i].eq(wl.valid & (wl.payload.row == r))]
                        for j in range(b):
                            m.d.comb += t.load_w[i][j].eq(wl.payload.w[k * b + j])
                    for j in range(b):
                        m.d.comb += t.psum_in[j].eq(tcol[tr - 1].psum_out[j] if tr else 0)
                for j in range(b):
                    bottoms.append((g, tcol[-1].psum_out[j]))
            last_col = group_tiles[-1]
            prev_right = [(last_col[r // b].x_out[r % b], last_col[r // b].valid_out[r % b],
                           last_col[r // b].flag_out[r % b]) for r in range(rows)]
            # the bottom-right partial sum leaves LATENCY - 1 cycles after its item
            end = last_col[-1].valid_out[b - 1]
            for k in range(PE.LATENCY - 1):
                nxt = Signal(name=f"end{g}_{k}")
                with m.If(en[g]):
                    m.d.sync += nxt.eq(end)
                end = nxt
            ends.append(end)

        # deskew: column c of a partition is ready (pcols - 1 - c_local) cycles before the
        # last one; delay it so that the whole item leaves at once
        aligned = []
        for c, (g, psum) in enumerate(bottoms):
            line = [psum]
            for d in range(cols - 1):
                nxt = Signal(signed(32), name=f"dsk{c}_{d}")
                with m.If(en[g]):
                    m.d.sync += nxt.eq(line[-1])
                line.append(nxt)
            delay = Signal(range(cols), name=f"delay{c}")
            m.d.comb += delay.eq(pcols - 1 - (c - head_col[g]))
            val = Signal(signed(32), name=f"aligned{c}")
            for d in range(cols):
                with m.If(delay == d):
                    m.d.comb += val.eq(line[d])
            aligned.append(val)

        # output registers, one per partition slot; unused slots stay invalid
        for p in range(groups):
            with m.If(en_part[p]):
                m.d.sync += self.out[p].valid.eq(0)
        for mode in range(log_g + 1):
            span = groups >> mode
            with m.If(self.mode == mode):
                for p in range(1 << mode):
                    first, last = p * span, p * span + span - 1
                    with m.If(en_part[p]):
                        m.d.sync += self.out[p].valid.eq(ends[last])
                        for c in range(span * gcols):
                            m.d.sync += self.out[p].payload[c].eq(aligned[first * gcols + c])
        return m
