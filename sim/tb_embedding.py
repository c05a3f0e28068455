"""cocotb testbench: `EmbeddingUnit` (or, with ``emb_units`` > 1, `EmbeddingCluster`, ids
of several tables per request beat) with cocotbext-axi's AXI RAM as DRAM, against the
golden cache model (one per unit) and pooled golden vectors.

The host side hands over a pickle (``RPACCEL_TB["jobs"]``): ``{"load": beats, "dram":
bytes, "bags": [(table, ids)], "expect": [vec], "errors": [0|1], "counters": {...},
"first_error": (table, id) | None}``. DRAM gets random AR acceptance and R delays; every
line read is checked to be one aligned INCR burst of the line.
"""

from __future__ import annotations

import json
import pickle
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..hw.bus import axi_port
from ..hw.emb_cluster import cluster_req_layout, cluster_resp_layout
from ..hw.embedding import emb_layouts
from .streams import (
    Scoreboard,
    StreamSink,
    StreamSource,
    axi_rams,
    load_all,
    tb_config,
    tb_params,
)

COUNTERS = ("lookups", "static_hits", "dynamic_hits", "misses", "dram_bytes", "bags",
            "err_count")


async def check_line_reads(dut, cfg, bad: list, count: list) -> None:
    """Every AR handshake on every port is one line: an INCR burst of ``line_bytes`` in
    full-width beats from a line-aligned address; anything else is appended to ``bad``;
    ``count[p]`` counts port p's."""
    size = (cfg.axi_data_bits // 8).bit_length() - 1
    beats = cfg.line_bytes * 8 // cfg.axi_data_bits
    ports = [{n: getattr(dut, f"{axi_port(p)}__{n}") for n in
              ("arvalid", "arready", "arburst", "arsize", "arlen", "araddr")}
             for p in range(cfg.axi_ports)]
    while True:
        await RisingEdge(dut.clk)
        for p, ar in enumerate(ports):
            if int(ar["arvalid"].value) and int(ar["arready"].value):
                count[p] += 1
                got = (int(ar["arburst"].value), int(ar["arsize"].value),
                       int(ar["arlen"].value), int(ar["araddr"].value) % cfg.line_bytes)
                if got != (1, size, beats - 1, 0):
                    bad.append((p, *got))


@cocotb.test()
async def embedding_matches_golden(dut):
    """Bags through the static and dynamic caches with a random-latency AXI RAM, idle
    request gaps and result backpressure; pooled vectors and counters equal golden."""
    cfg = tb_config()
    params = tb_params()
    with open(params["jobs"], "rb") as f:
        job = pickle.load(f)
    _, _, load_l, req_l, resp_l = emb_layouts(cfg)
    if cfg.emb_units > 1:
        req_l, resp_l = cluster_req_layout(cfg), cluster_resp_layout(cfg)
    seed = params.get("seed", 0)
    Clock(dut.clk, 10, unit="ns").start()
    axi_rams(dut, cfg, job["dram"], params.get("dram_stall", 0), seed)
    dut.err_clear.value = 0
    # every input driven from the start: an undriven valid is X in a 4-state simulator
    dut.req__valid.value = 0
    dut.resp__ready.value = 0
    dut.load__valid.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await load_all(dut, "load", load_l, job["load"])

    req = StreamSource(dut, "req", dut.clk, req_l, params.get("idle", 0.0),
                       random.Random(seed + 1))
    resp = StreamSink(dut, "resp", dut.clk, resp_l, params.get("backpressure", 0.0),
                      random.Random(seed + 2))
    sb = Scoreboard(dut._log, "embedding")
    G = cfg.emb_units
    if G == 1:
        resp.callbacks.append(lambda it: sb.compare(
            ([int(it.vec[j]) for j in range(cfg.emb_dim)], int(it.error))))
    else:
        # a cluster's beat: n vectors of consecutive tables, as many as are left of the
        # item and of the feature word (2**fpack vectors) they go to
        T, k = job["tables"], 1 << params.get("fpack", 0)
        pos = [0]

        def group(it):
            t = pos[0] % T
            want = min(G, k - t % k, T - t)
            if int(it.n) != want:
                sb.errors += 1
                dut._log.error("beat at table %d holds %d vectors, expected %d", t,
                               int(it.n), want)
            for j in range(int(it.n)):
                sb.compare(([int(it.vec[j][x]) for x in range(cfg.emb_dim)],
                            int(it.error) >> j & 1))
            pos[0] += int(it.n)

        resp.callbacks.append(group)
        dut.fpack.value = params.get("fpack", 0)
    for vec, err in zip(job["expect"], job["errors"], strict=True):
        sb.expect((vec, err))
    if G == 1:
        for t, ids in job["bags"]:
            for k, i in enumerate(ids):
                req.put({"table": t, "id": int(i) & 0xFFFFFFFF, "last": int(k == len(ids) - 1)})
    else:
        # an embedding cluster: per item, lane g carries the ids of tables t mod G == g
        T = job["tables"]
        dut.tables.value = T
        for n in range(0, len(job["bags"]), T):
            seqs = [[(t, int(i) & 0xFFFFFFFF, int(k == len(ids) - 1))
                     for t, ids in job["bags"][n:n + T] if t % G == g
                     for k, i in enumerate(ids)] for g in range(G)]
            for j in range(max(len(q) for q in seqs)):
                req.put([dict(zip(("table", "id", "last"), q[j], strict=True), keep=1)
                         if j < len(q) else {"keep": 0, "table": 0, "id": 0, "last": 0}
                         for q in seqs])
    ar_bad: list = []
    ar_count = [0] * cfg.axi_ports
    tasks = [cocotb.start_soon(s.run()) for s in (req, resp)]
    tasks.append(cocotb.start_soon(check_line_reads(dut, cfg, ar_bad, ar_count)))
    start = None
    for cycle in range(200 * sum(len(ids) for _, ids in job["bags"]) + 5000):
        if start is None and req.sent:
            start = cycle
        if sb.matched + sb.errors >= len(job["expect"]):
            break
        await RisingEdge(dut.clk)
    cycles = cycle - (start or 0)
    await ClockCycles(dut.clk, 5)
    for t in tasks:
        t.cancel()
    got = {n: int(getattr(dut, n).value) for n in COUNTERS}
    dut._log.info("counters: %s (golden %s), %d cycles", got, job["counters"], cycles)
    first = job["first_error"]
    err_ok = (int(dut.err_valid.value) == (first is not None)) and (
        first is None or (int(dut.err_table.value), int(dut.err_id.value)) == tuple(first))
    if params.get("metrics"):
        with open(params["metrics"], "w") as f:
            json.dump({**got, "cycles": cycles}, f)
    sb.check_done()
    assert not ar_bad, (f"{len(ar_bad)} line reads not (INCR, size, beats - 1, aligned): "
                        f"(port, burst, size, len, addr % line) {ar_bad[:4]}")
    assert ar_count == job["port_misses"], (f"line reads per AXI port {ar_count} != golden "
                                            f"misses per port {job['port_misses']}")
    assert got == job["counters"], f"counters {got} != golden {job['counters']}"
    assert err_ok, (f"error status {int(dut.err_valid.value)} "
                    f"({int(dut.err_table.value)}, {int(dut.err_id.value)}) != golden {first}")
