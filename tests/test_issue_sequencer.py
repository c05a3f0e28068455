"""`IssueSequencer` (`rpaccel.hw.issue_sequencer`) alone in the Amaranth simulator: two runs
of a program (a two-by-two-tile layer, a three-by-two-tile layer, an interaction step, a
three-input-tile final layer) on a partition of R = 4 rows in 8-byte activation words,
against models of the weight loader (tiles ready at random times, one shadow tile ahead),
the array (results out after random latencies), the interaction unit (busy for a random
time) and a final output that stays pending at the end; the array's results leave in
order and the bench counts the writes of each layer's last output tile as the output path
does (``fwd_step`` / ``fwd_items``). Every item must enter with its R bytes of its word and
region, a tile's first item marked swap; a tile must not issue before it is loaded, an
item of a layer's first tile not before its result of the previous layer is written (and
the second layer's first item must enter before the first layer has drained: the
sequencer does not wait for all of it), the first layer after the interaction not before
everything drained, the interaction must start drained and the next layer wait for it;
the run ends only when drained with no pending output; the counters must equal what the
bench counted."""

import random
from typing import NamedTuple

from rpaccel.config import get_config
from rpaccel.hw.issue_sequencer import IssueSequencer
from rpaccel.interface import EngineGeometry, Region, StepKind, engine_layouts, slot_width

from .amaranth_bench import run_bench

CFG = get_config("default").replace(array_rows=4, sub_batch=8, max_width=64, weight_rows=256)
R = CFG.array_rows
WIDTH = slot_width(CFG, 0)
PCOLS = WIDTH
# (kind, k, n, src)
PROGRAM = [(StepKind.MLP, 7, 12, Region.A), (StepKind.MLP, 12, 9, Region.B),
           (StepKind.DOT, 0, 0, 0), (StepKind.MLP, 12, 5, Region.FEAT), (StepKind.END, 0, 0, 0)]


def _tiles(k, n):
    return -(-k // R), -(-n // PCOLS)


class Beat(NamedTuple):
    x: list          # the R bytes
    swap: int
    macs: int
    first: bool      # the layer's first item
    step: int
    item: int
    gated: bool      # in a first tile that follows another layer
    last_tile: bool  # in a non-final layer's last output tile (its write counts)
    tile: int        # the run's tile index
    then_same_layer: bool  # the tile's last item, another tile of the layer follows


def expected_beats(act, items):
    """`Beat` per item entering the array, in order."""
    geo = EngineGeometry(CFG)
    out, tile = [], 0
    mlp_steps = [s for s, (kind, *_) in enumerate(PROGRAM) if kind == StepKind.MLP]
    for s, (kind, k, n, src) in enumerate(PROGRAM):
        if kind != StepKind.MLP:
            continue
        after_mlp = s > 0 and PROGRAM[s - 1][0] == StepKind.MLP
        kt_n, nt_n = _tiles(k, n)
        first = True
        for nt in range(nt_n):
            for kt in range(kt_n):
                macs = min(R, k - kt * R) * min(PCOLS, n - nt * PCOLS)
                for i in range(items):
                    row = [act[(int(src), i, (kt * R + r) // geo.lanes)] >> (
                        8 * ((kt * R + r) % geo.lanes)) & 0xFF for r in range(R)]
                    out.append(Beat([b - 256 if b >= 128 else b for b in row], int(i == 0),
                                    macs, first, s, i, after_mlp and nt == kt == 0,
                                    nt == nt_n - 1 and kt == kt_n - 1 and s != mlp_steps[-1],
                                    tile, i == items - 1 and (nt, kt) != (nt_n - 1, kt_n - 1)))
                    first = False
                tile += 1
    return out


def run_sequencer(seed: int, runs=(3, 2, 1, 8)):
    rng = random.Random(seed)
    geo = EngineGeometry(CFG)
    desc = engine_layouts(CFG, WIDTH).desc
    steps = []
    for kind, k, n, src in PROGRAM:
        kt, nt = _tiles(k, n) if kind == StepKind.MLP else (0, 0)
        steps.append(desc.const({"kind": kind, "k": k, "n": n, "ktiles": kt, "ntiles": nt,
                                 "src": src}).as_value().value)
    act = {(reg, i, w): rng.getrandbits(8 * geo.lanes) for reg in range(3)
           for i in range(CFG.sub_batch) for w in range(geo.words)}
    dut = IssueSequencer(CFG, WIDTH)
    report = []

    async def bench(ctx):
        ctx.set(dut.pcols, PCOLS)
        # a run of 0 items is ignored
        ctx.set(dut.run.valid, 1)
        ctx.set(dut.run.payload, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy), "a run of 0 items started"
        for items in runs:
            ctx.set(dut.run.valid, 1)
            ctx.set(dut.run.payload, items)
            assert ctx.get(dut.start) and ctx.get(dut.run.ready)
            await ctx.tick()
            ctx.set(dut.run.valid, 0)
            rep = {"items": items, "bank": ctx.get(dut.bank),
                   "load_bank": ctx.get(dut.load_bank),
                   "beats": [], "bad": [], "busy": 0, "stall_in": 0, "stall_out": 0,
                   "go": [], "overlap": 0}
            total_tiles = sum(_tiles(k, n)[0] * _tiles(k, n)[1]
                              for kind, k, n, _ in PROGRAM if kind == StepKind.MLP)
            want = expected_beats(act, items)
            loaded, swaps, inflight, exits = 0, 0, 0, []   # exits: [cycles left, beat]
            fwd_step, fwd_items, written = CFG.max_steps, 0, set()
            follow = False   # the next tile's first item is due in the next cycle it can go
            entered, inter_until, last_done, data = 0, -1, None, 0
            cycle = 0
            while True:
                # weight loader: one tile ahead of the tiles started, at random times
                if loaded < min(total_tiles, swaps + 1) and rng.random() < 0.3:
                    loaded += 1
                ctx.set(dut.tiles_loaded, loaded)
                exits = [[t - 1, j] for t, j in exits]
                for t, j in exits:
                    if t == 0:
                        inflight -= 1
                        if want[j].last_tile:   # the output path's count, one cycle later
                            written.add((want[j].step, want[j].item))
                            if want[j].step == fwd_step:
                                fwd_items += 1
                            else:
                                fwd_step, fwd_items = want[j].step, 1
                exits = [e for e in exits if e[0] > 0]
                ctx.set(dut.drained, inflight == 0)
                ctx.set(dut.fwd_step, fwd_step)
                ctx.set(dut.fwd_items, fwd_items)
                ctx.set(dut.inter_busy, cycle <= inter_until)
                pending = last_done is not None and cycle < last_done + 15
                ctx.set(dut.out_pending, pending)
                ready = rng.random() < 0.7
                ctx.set(dut.act.ready, ready)
                ctx.set(dut.desc.as_value(), steps[min(ctx.get(dut.step), len(steps) - 1)])
                ctx.set(dut.rd_data, data)
                busy = ctx.get(dut.busy)
                if not busy:
                    break
                rep["busy"] += 1
                valid = ctx.get(dut.act.valid)
                rep["stall_in"] += not valid
                rep["stall_out"] += valid and not ready
                if ctx.get(dut.inter_go):
                    rep["go"].append((entered, inflight))
                    inter_until = cycle + rng.randint(3, 20)
                adv = not ctx.get(dut.act.valid) or ready
                if follow and adv:
                    follow = False
                    if not ctx.get(dut.entered):
                        rep["bad"].append(f"a gap before tile {want[entered].tile}, its "
                                          "weights loaded")
                if ctx.get(dut.entered):
                    w = want[entered] if entered < len(want) else None
                    # a layer's next tile follows without a gap once its weights are loaded
                    follow = bool(w and w.then_same_layer and loaded > w.tile + 1)
                    if w and w.first and not w.gated and inflight:
                        rep["bad"].append(f"step {w.step}'s first item entered with "
                                          f"{inflight} in flight")
                    if w and w.gated and (w.step - 1, w.item) not in written:
                        rep["bad"].append(f"step {w.step} item {w.item} entered before its "
                                          "input was written")
                    if w and w.gated and w.first and inflight:
                        rep["overlap"] += 1
                    if cycle <= inter_until:
                        rep["bad"].append("an item entered while the interaction ran")
                    entered += 1
                    inflight += 1
                if valid and ready:
                    x = [ctx.get(dut.act.payload.x[r]) for r in range(R)]
                    swap = ctx.get(dut.act.payload.swap)
                    if swap:
                        if loaded <= swaps:
                            rep["bad"].append(f"tile {swaps} issued before it was loaded")
                        swaps += 1
                    rep["beats"].append((x, swap))
                    # results leave in order, after 2 to 24 cycles
                    after = max([rng.randint(2, 24)] + [t + 1 for t, _ in exits[-1:]])
                    exits.append([after, len(rep["beats"]) - 1])
                    if len(rep["beats"]) == len(want):
                        last_done = cycle + 10
                # synchronous read port
                if ctx.get(dut.rd_en):
                    key = (ctx.get(dut.rd_region), ctx.get(dut.rd_item), ctx.get(dut.rd_word))
                    data = act.get(key, 0)
                await ctx.tick()
                cycle += 1
                assert cycle < 20000, "issue sequencer hung"
            rep["end"] = (inflight, pending)
            rep["counters"] = {n: ctx.get(getattr(dut, n)) for n in
                               ("cycles", "act_beats", "macs", "stall_in", "stall_out")}
            rep["want"] = want
            report.append(rep)

    run_bench(dut, bench)
    return report


def test_issue_sequencer_items_tiles_and_waits():
    report = run_sequencer(seed=11)
    assert report[0]["bank"] != report[1]["bank"], "consecutive runs in the same bank"
    for rep in report:
        assert rep["load_bank"] != rep["bank"]
        want = [(b.x, b.swap) for b in rep["want"]]
        assert rep["beats"] == want, f"items: expected {want}\n actual {rep['beats']}"
        assert not rep["bad"], rep["bad"]
        if rep["items"] > 1:
            assert rep["overlap"] == 1, (
                f"{rep['items']} items: the second layer waited for the first to drain")
        assert len(rep["go"]) == 1, f"interaction started {len(rep['go'])} times"
        go_entered, go_inflight = rep["go"][0]
        assert go_inflight == 0, f"interaction started with {go_inflight} in flight"
        # the layer after the interaction step is the third
        after = [i for i, b in enumerate(rep["want"]) if b.first][2]
        assert go_entered == after, (
            f"interaction started after {go_entered} items, expected {after}")
        assert rep["end"] == (0, False), f"ended with (in flight, pending) {rep['end']}"
        c = rep["counters"]
        assert c["cycles"] == rep["busy"], (c, rep["busy"])
        assert c["act_beats"] == len(want), c
        assert c["macs"] == sum(b.macs for b in rep["want"]), c
        assert (c["stall_in"], c["stall_out"]) == (rep["stall_in"], rep["stall_out"]), c
