"""`QueryFrontEnd` (`rpaccel.hw.front_end`) alone in the Amaranth simulator: queries of a
two-stage config with stage-0 and stage-1 dense words and bags of 1-3 ids, a query with
too many candidates and one whose candidate has more beats than the candidate buffer
keeps, queries whose stream ends early (``end`` inside a bag, a header inside the query)
or late (no ``end`` on the last beat, surplus beats), the admission input and stage 0's
ports stalled at random. Stage 0 must get a run per sub-batch and exactly its beats in
order (a cut query's missing bags made up with id 0); the candidate buffer every
later-stage beat at its {slot, candidate, beat} with the candidate's count; refused,
overlong and badly framed queries must raise their error codes and the next query must be
right."""

import random

from rpaccel.config import get_config
from rpaccel.hw.front_end import QueryFrontEnd
from rpaccel.interface import ErrCause, lanes, query_slots

from .amaranth_bench import run_bench, value_of

CFG = get_config("default").replace(sub_batch=4, max_items=16, cand_beats=8, topk_k=16)
TABLES, K = 3, 5
A = lanes(CFG)


def _beat(rng, dense, stage=0, table=0, last=0):
    return {"head": 0, "dense": dense, "stage": stage, "table": table,
            "word": [rng.randint(-128, 127) for _ in range(A)] if dense else [0] * A,
            "id": rng.randrange(1 << 20) if not dense else 0, "last": last, "end": 0}


def make_query(rng, n, long_bag=None, dense1=1, last_ids=None):
    """Header + candidates; ``long_bag`` = (candidate, ids) gives one bag many ids,
    ``dense1`` stage-1 dense words and ``last_ids`` ids per bag to the last candidate."""
    beats = [{"head": 1, "dense": 0, "stage": 0, "table": 0, "word": [0] * A, "id": n,
              "last": 0, "end": 0}]
    for c in range(n):
        beats += [_beat(rng, 1, 0)] + [_beat(rng, 1, 1)
                                       for _ in range(dense1 if c == n - 1 else 1)]
        for t in range(TABLES):
            k = long_bag[1] if long_bag and long_bag[0] == c and t == 0 else rng.randint(1, 3)
            k = last_ids if last_ids and c == n - 1 else k
            beats += [dict(_beat(rng, 0), table=t, last=int(j == k - 1)) for j in range(k)]
    beats[-1]["end"] = 1
    return beats


def cut(query, at, end=True):
    """The first ``at`` beats of ``query``, the last with ``end`` (or none)."""
    beats = [dict(b, end=0) for b in query[:at]]
    beats[-1]["end"] = int(end)
    return beats


def completed(beats):
    """``beats`` of a query cut short, as the front end completes it: every missing bag
    (the open one included) gets one id 0 with ``last``."""
    n, c, bag = beats[0]["id"], 0, 0
    for b in beats[1:]:
        if not b["dense"] and b["last"]:
            bag += 1
            if bag == TABLES:
                c, bag = c + 1, 0
    pad = []
    for _ in range(c, n):
        pad += [{"head": 0, "dense": 0, "stage": 0, "table": t, "word": [0] * A, "id": 0,
                 "last": 1, "end": 0} for t in range(bag, TABLES)]
        bag = 0
    return beats + pad


def expected(query, slot):
    """(runs, stage-0 beats, candidate-buffer writes, counts, overflow) of one query."""
    n = query[0]["id"]
    runs = [(min(CFG.sub_batch, n - b), b, K, int(n - b <= CFG.sub_batch))
            for b in range(0, n, CFG.sub_batch)]
    s0, cb, cl, over = [], {}, {}, False
    c, bi, bag = 0, 0, 0
    for beat in query[1:]:
        if not beat["dense"] or beat["stage"] == 0:
            s0.append(beat)
        if not (beat["dense"] and beat["stage"] == 0):
            keep = bi < CFG.cand_beats and (beat["dense"] or beat["last"]
                                            or bi + TABLES - bag < CFG.cand_beats)
            if keep:
                cb[(slot, c, bi)] = beat
                bi += 1
            else:
                over = True
        if not beat["dense"] and beat["last"]:
            bag += 1
            if bag == TABLES:
                cl[(slot, c)] = bi
                c, bi, bag = c + 1, 0, 0
    return runs, s0, cb, cl, over


def _s0(beat):
    return {k: beat[k] for k in ("dense", "word", "table", "id", "last")}


def run_front_end(queries, seed=0):
    rng = random.Random(seed)
    dut = QueryFrontEnd(CFG)
    item_bits = (CFG.max_items - 1).bit_length()
    beat_bits = (CFG.cand_beats - 1).bit_length()
    got = {"runs": [], "s0": [], "cb": {}, "cl": {}, "admitted": [], "errs": []}
    stream = [b for q in queries for b in q]

    async def bench(ctx):
        ctx.set(dut.k, K)
        ctx.set(dut.tables, TABLES)
        i, idle = 0, 0
        while idle < 30:
            accept = rng.random() < 0.8
            ctx.set(dut.accept, accept)
            ctx.set(dut.run.ready, rng.random() < 0.7)
            ctx.set(dut.beats.ready, rng.random() < 0.7)
            valid = i < len(stream) and rng.random() < 0.8
            ctx.set(dut.query.valid, valid)
            if i < len(stream):
                ctx.set(dut.query.payload, stream[i])
            if valid and ctx.get(dut.query.ready):
                if stream[i]["head"] and not accept:
                    got["bad_admission"] = True
                i += 1
            if ctx.get(dut.run.valid) and ctx.get(dut.run.ready):
                r = dut.run.payload
                got["runs"].append((ctx.get(r.items), ctx.get(r.base), ctx.get(r.k),
                                    ctx.get(r.last)))
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                got["s0"].append(value_of(ctx, dut.beats.payload))
            if ctx.get(dut.cb_en):
                a = ctx.get(dut.cb_addr)
                key = (a >> (item_bits + beat_bits), (a >> beat_bits) & ((1 << item_bits) - 1),
                       a & ((1 << beat_bits) - 1))
                got["cb"][key] = value_of(ctx, dut.cb_data)
            if ctx.get(dut.cl_en):
                a = ctx.get(dut.cl_addr)
                got["cl"][(a >> item_bits, a & ((1 << item_bits) - 1))] = ctx.get(dut.cl_data)
            if ctx.get(dut.admitted):
                got["admitted"].append(ctx.get(dut.bad))
            await ctx.tick()
            got["errs"].append(ctx.get(dut.err))
            idle = idle + 1 if i == len(stream) else 0
        got["idle"] = ctx.get(dut.idle)
        ctx.set(dut.err_clear, 1)
        await ctx.tick()
        got["cleared"] = ctx.get(dut.err)

    run_bench(dut, bench)
    return got


def test_front_end_sub_batches_buffer_and_errors():
    rng = random.Random(7)
    good = [make_query(rng, n) for n in (6, 3)]
    too_many = make_query(rng, CFG.max_items + 1)
    overlong = make_query(rng, 5, long_bag=(2, CFG.cand_beats + 3))
    # later-stage beats that fill the buffer just before the query's very last id: only
    # that id overflows, in the cycle the query is admitted
    dense_heavy = make_query(rng, 2, dense1=CFG.cand_beats - TABLES + 1, last_ids=1)
    after = make_query(rng, 4)
    # the last query in its buffer slot: what an over-long candidate keeps is checked
    overlong_last = make_query(rng, 3, long_bag=(1, CFG.cand_beats + 2))
    # framing: `end` inside a bag of the second sub-batch; a query cut without `end` (the
    # next header ends it); a query without `end` on its last beat and surplus beats after
    # it (dropped, answer unflagged)
    q6 = make_query(rng, 6)
    short = cut(q6, next(i for i, b in enumerate(q6)
                         if i > len(q6) // 2 and not b["dense"] and not b["last"]) + 1)
    hdr_cut = cut(make_query(rng, 3), 5, end=False)
    q2 = make_query(rng, 2)
    unended = cut(q2, len(q2), end=False)
    framing = [short, hdr_cut, unended + cut([_beat(rng, 0), _beat(rng, 1, 1)], 2)]
    got = run_front_end(good + [too_many] + framing[:2] + [overlong, dense_heavy] +
                        framing[2:] + [after, overlong_last])
    slots = query_slots(CFG)
    want = {"runs": [], "s0": [], "cb": {}, "cl": {}, "admitted": []}
    answered = good + [short, hdr_cut, overlong, dense_heavy, unended, after, overlong_last]
    for slot, q in enumerate(answered):
        cut_short = q is short or q is hdr_cut
        runs, s0, cb, cl, over = expected(completed(q) if cut_short else q, slot % slots)
        want["runs"] += runs
        want["s0"] += [_s0(b) for b in s0]
        # slots are reused: only the last query written into a slot is still there
        want["cb"] = {k: v for k, v in want["cb"].items() if k[0] != slot % slots} | cb
        want["cl"] = {k: v for k, v in want["cl"].items() if k[0] != slot % slots} | cl
        want["admitted"].append(int(over or cut_short))
    assert got["runs"] == want["runs"], f"runs: expected {want['runs']}\n actual {got['runs']}"
    assert len(got["s0"]) == len(want["s0"]), (len(got["s0"]), len(want["s0"]))
    for n, (g, w) in enumerate(zip(got["s0"], want["s0"], strict=True)):
        assert g == w, f"stage-0 beat {n}: expected {w}\n actual {g}"
    for key in sorted(want["cb"]):
        assert got["cb"].get(key) == want["cb"][key], (
            f"candidate buffer {key}: expected {want['cb'][key]}\n actual {got['cb'].get(key)}")
    assert {k: got["cl"][k] for k in want["cl"]} == want["cl"], (got["cl"], want["cl"])
    assert got["admitted"] == want["admitted"], (
        f"admitted (bad flag per query): expected {want['admitted']}, "
        f"actual {got['admitted']}")
    assert "bad_admission" not in got, "a header taken while accept was low"
    errs = [e for e in got["errs"] if e]
    changes = [e for i, e in enumerate(errs) if i == 0 or e != errs[i - 1]]
    assert changes == [ErrCause.CAND_COUNT, ErrCause.FRAMING, ErrCause.CAND_BEATS,
                       ErrCause.FRAMING, ErrCause.CAND_BEATS], changes
    assert got["idle"] and got["cleared"] == 0


def test_front_end_stream_ends_in_a_header_or_the_last_candidate():
    """Nothing follows a query whose ``end`` comes inside its last candidate, nor a packet
    of a header alone (``end`` on it): each must be completed and admitted, flagged, by
    its own ``end`` (a next header would hide a missed one)."""
    rng = random.Random(9)
    q = make_query(rng, 5)
    for beats in (cut(q, len(q) - 2), cut(make_query(rng, 3), 1)):
        got = run_front_end([beats], seed=3)
        runs, s0, _, _, _ = expected(completed(beats), 0)
        assert got["admitted"] == [1], got["admitted"]
        assert got["runs"] == runs, (got["runs"], runs)
        want = [_s0(b) for b in s0]
        assert got["s0"] == want, [(n, g, w) for n, (g, w) in
                                   enumerate(zip(got["s0"], want, strict=False)) if g != w][:2]
        assert ErrCause.FRAMING in got["errs"] and got["idle"]
