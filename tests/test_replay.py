"""`ReplayUnit` (`rpaccel.hw.replay`) alone in the Amaranth simulator: two queries'
survivors of stage 0 (best first, ``last`` on each query's last) replayed from a model of
the candidate buffer (synchronous reads, as the block RAM) into stage 1, its run and beat
ports stalled at random, and stage 1's scores mapped back through the id map. Each
sub-batch must get a run beat ``{items, base, k, last}``, each survivor its buffered beats
in order without the other stages' dense words, and every score the candidate's original
position."""

import random

from rpaccel.config import get_config
from rpaccel.hw.replay import ReplayUnit
from rpaccel.interface import lanes, query_slots

from .amaranth_bench import run_bench, value_of

CFG = get_config("three-stage").replace(sub_batch=4, max_items=16, cand_beats=8, topk_k=16)
STAGE, K = 1, 3
A = lanes(CFG)


def buffered(rng, slots):
    """Candidate buffer contents: slot -> candidate -> beats (other stages' dense words
    among them)."""
    out = {}
    for s in range(slots):
        out[s] = {}
        for c in range(CFG.max_items):
            beats = []
            for st in (1, 2):
                beats.append({"head": 0, "dense": 1, "stage": st, "table": 0, "id": 0,
                              "word": [rng.randint(-128, 127) for _ in range(A)], "last": 0})
            for t in range(rng.randint(1, 2)):
                n = rng.randint(1, 2)
                beats += [{"head": 0, "dense": 0, "stage": 0, "table": t,
                           "id": rng.randrange(1 << 16), "word": [0] * A,
                           "last": int(j == n - 1)} for j in range(n)]
            out[s][c] = beats[:CFG.cand_beats]
    return out


def run_replay(survivors, cbuf, seed=0):
    rng = random.Random(seed)
    dut = ReplayUnit(CFG, STAGE)
    item_bits = (CFG.max_items - 1).bit_length()
    beat_bits = (CFG.cand_beats - 1).bit_length()
    src = [(c, int(j == len(q) - 1)) for q in survivors for j, c in enumerate(q)]
    got = {"runs": [], "beats": [], "mapped": [], "rest": [], "sent": []}
    scores = []  # (local index, last) per survivor, in replay order, per query

    async def bench(ctx):
        ctx.set(dut.k, K)
        i, data, idle, sent, cycles = 0, None, 0, 0, 0
        while idle < 40:
            cycles += 1
            assert cycles < 20000, (f"replay hung: {len(got['beats'])} beats, "
                                    f"{len(got['runs'])} runs, {sent} scores mapped")
            # a synchronous read port: the beat addressed last cycle
            if data is not None:
                ctx.set(dut.cb_data, data)
            a = ctx.get(dut.cl_addr)
            slot, cand = a >> item_bits, a & ((1 << item_bits) - 1)
            ctx.set(dut.cl_data, len(cbuf[slot][cand]))
            ctx.set(dut.src.valid, i < len(src) and rng.random() < 0.8)
            if i < len(src):
                ctx.set(dut.src.payload, {"id": src[i][0], "score": 0, "last": src[i][1]})
            ctx.set(dut.run.ready, rng.random() < 0.6)
            ctx.set(dut.beats.ready, rng.random() < 0.7)
            # stage 1's scores, local indices in replay order
            ctx.set(dut.topk.ready, rng.random() < 0.7)
            if sent < len(scores):
                ctx.set(dut.scores.valid, 1)
                loc, last = scores[sent]
                score = (sent * 7919) % 2000 - 1000
                ctx.set(dut.scores.payload, {"lanes": [{"valid": 1, "id": loc, "score": score}]
                                             + [{"valid": 0, "id": 0, "score": 0}] *
                                             (CFG.topk_lanes - 1), "k": K, "last": last})
            else:
                ctx.set(dut.scores.valid, 0)
            if ctx.get(dut.src.valid) and ctx.get(dut.src.ready):
                i += 1
            if ctx.get(dut.run.valid) and ctx.get(dut.run.ready):
                r = dut.run.payload
                run = (ctx.get(r.items), ctx.get(r.base), ctx.get(r.k), ctx.get(r.last))
                got["runs"].append(run)
                scores.extend((run[1] + n, int(run[3] and n == run[0] - 1))
                              for n in range(run[0]))
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                got["beats"].append(value_of(ctx, dut.beats.payload))
            if sent < len(scores) and ctx.get(dut.topk.valid) and ctx.get(dut.topk.ready):
                out = dut.topk.payload
                got["mapped"].append(ctx.get(out.lanes[0].id))
                # everything but the id passes through
                got["rest"].append((ctx.get(out.lanes[0].valid), ctx.get(out.lanes[0].score),
                                    ctx.get(out.k), ctx.get(out.last)))
                got["sent"].append((1, (sent * 7919) % 2000 - 1000, K, scores[sent][1]))
                sent += 1
            data = None
            if ctx.get(dut.cb_en):
                a = ctx.get(dut.cb_addr)
                slot = a >> (item_bits + beat_bits)
                cand = (a >> beat_bits) & ((1 << item_bits) - 1)
                b = a & ((1 << beat_bits) - 1)
                beats = cbuf[slot][cand]
                data = beats[b] if b < len(beats) else beats[-1]
            await ctx.tick()
            idle = idle + 1 if i == len(src) and sent == len(scores) else 0

    run_bench(dut, bench)
    return got


def test_replay_runs_beats_and_id_map():
    rng = random.Random(4)
    slots = query_slots(CFG)
    cbuf = buffered(rng, slots)
    survivors = [rng.sample(range(CFG.max_items), 6), rng.sample(range(CFG.max_items), 3)]
    got = run_replay(survivors, cbuf)
    runs, beats, mapped = [], [], []
    for slot, q in enumerate(survivors):
        for base in range(0, len(q), CFG.sub_batch):
            n = min(CFG.sub_batch, len(q) - base)
            runs.append((n, base, K, int(base + n == len(q))))
        for c in q:
            beats += [{k: b[k] for k in ("dense", "word", "table", "id", "last")}
                      for b in cbuf[slot % slots][c] if not b["dense"] or b["stage"] == STAGE]
        mapped += q
    assert got["runs"] == runs, f"runs: expected {runs}\n actual {got['runs']}"
    assert len(got["beats"]) == len(beats), (len(got["beats"]), len(beats))
    for n, (g, w) in enumerate(zip(got["beats"], beats, strict=True)):
        assert g == w, f"beat {n}: expected {w}\n actual {g}"
    assert got["mapped"] == mapped, f"original positions: expected {mapped}\n actual " \
                                    f"{got['mapped']}"
    assert got["rest"] == got["sent"], ("(valid, score, k, last) to top-k: expected "
                                        f"{got['sent']}\n actual {got['rest']}")
