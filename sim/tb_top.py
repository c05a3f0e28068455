"""cocotb testbench of the RPAccel top level, driven through its real interfaces: CSRs over
AXI4-Lite (cocotbext-axi `AxiLiteMaster`), model load streams, the query stream (random
idle gaps), the result stream (random backpressure) and DRAM as cocotbext-axi's
`AxiRamRead` (random AR / R pauses).

The job pickle comes from `rpaccel.runtime.Accelerator.job`; the answers, cycles and CSR
counters go to ``metrics`` (JSON) for the runtime. With ``check`` the test fails on any
answer that differs from golden (bit for bit: ids, scores, order), on a missing error flag
of a query with an out-of-range id, or on a wrong error status.
"""

from __future__ import annotations

import json
import pickle
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, Timer, with_timeout

from ..hw.embedding import emb_layouts
from ..interface import ID_VALUE, ErrCause, engine_layouts, engine_width, top_layouts
from .native import CLEARED, error_status_ok, problems
from .streams import (
    CLOCK_NS,
    StreamSink,
    StreamSource,
    axi_rams,
    load_all,
    sim_cycle,
    tb_config,
    tb_params,
)


async def _dma_load(dut, csr, regs, loads, check: bool):
    """Model load by the accelerator's loader: per image LOAD_ADDR, LOAD_BEATS, LOAD_CTRL,
    then poll LOAD_STATUS. With ``check``, a refused start (0 beats) must set
    ERR_CAUSE = LOAD_REFUSED first, an engine map without engines ENGINE_MAP (the map in
    use unchanged), and every load must deliver all its beats."""
    if check:
        await csr.write_dword(regs["LOAD_BEATS"], 0)
        await csr.write_dword(regs["LOAD_CTRL"], 0)
        cause = await csr.read_dword(regs["ERR_CAUSE"])
        assert cause == ErrCause.LOAD_REFUSED, f"LOAD of 0 beats: ERR_CAUSE {cause}"
        await csr.write_dword(regs["CTRL"], 1)
        # an engine map that leaves every stage without an engine: refused, the map stays
        before = await csr.read_dword(regs["ENGINE_MAP"])
        await csr.write_dword(regs["ENGINE_MAP"], 0xFF)
        cause = await csr.read_dword(regs["ERR_CAUSE"])
        assert cause == ErrCause.ENGINE_MAP, f"ENGINE_MAP of no engines: ERR_CAUSE {cause}"
        after = await csr.read_dword(regs["ENGINE_MAP"])
        assert after == before, f"refused ENGINE_MAP: map 0x{before:02x} became 0x{after:02x}"
        await csr.write_dword(regs["CTRL"], 1)
    for addr, beats, ctrl in loads:
        await csr.write_dword(regs["LOAD_ADDR"], addr)
        await csr.write_dword(regs["LOAD_BEATS"], beats)
        await csr.write_dword(regs["LOAD_CTRL"], ctrl)
        while await csr.read_dword(regs["LOAD_STATUS"]) & 1:
            await ClockCycles(dut.clk, 500)
        done = await csr.read_dword(regs["LOAD_DONE"])
        assert done == beats, f"load 0x{ctrl:x} at 0x{addr:x}: {done} of {beats} beats"
    cause = await csr.read_dword(regs["ERR_CAUSE"])
    assert cause == ErrCause.NONE, f"ERR_CAUSE {cause} after the model load"


async def _setup(dut, cfg, job, load="stream", check=False):
    """Reset, CSRs, model load."""
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster

    dut.rst.value = 1
    for e in range(cfg.engine_count):
        getattr(dut, f"eload_{e}__valid").value = 0
    for s in range(cfg.stages):
        getattr(dut, f"mload_{s}__valid").value = 0
    dut.query__valid.value = 0
    dut.result__ready.value = 0  # undriven inputs are X in Icarus
    dut.query__payload.value = 0
    for sig in ("awvalid", "wvalid", "arvalid", "bready", "rready", "awaddr", "wdata",
                "araddr", "awprot", "arprot", "wstrb"):
        getattr(dut, f"csr__{sig}").value = 0
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "csr_"), dut.clk, dut.rst)
    csr.write_if.log.setLevel("WARNING")
    csr.read_if.log.setLevel("WARNING")
    assert await csr.read_dword(job["regs"]["ID"]) == ID_VALUE, "CSR ID register"
    for addr, value in job["csr"]:
        await csr.write_dword(addr, value)
        got = await csr.read_dword(addr)
        assert got == value, f"CSR 0x{addr:03x}: wrote {value}, read back {got}"
    t0 = sim_cycle()
    if load == "dma":
        await _dma_load(dut, csr, job["regs"], job["loads"], check)
    else:
        for e in range(cfg.engine_count):
            eload_l = engine_layouts(cfg, engine_width(cfg, e)).load
            await load_all(dut, f"eload_{e}", eload_l, job["eload"][e])
        _, _, mload_l, _, _ = emb_layouts(cfg)
        for s in range(cfg.stages):
            await load_all(dut, f"mload_{s}", mload_l, job["mload"][s])
    cycles = sim_cycle() - t0
    dut._log.info("model loaded (%s) in %d cycles", load, cycles)
    return csr, cycles


async def _heartbeat(dut, query, answers, every: int = 20000):
    """Debug aid (``debug`` parameter): a line of internal state every ``every`` cycles."""
    while True:
        await Timer(every * CLOCK_NS, "ns")
        names = ["front_state", "replay1_state", "replay2_state", "inflight", "cand", "j1",
                 "jend1", "cnt1", "pend1", "rslot1", "tslot1"]
        vals = {n: int(getattr(dut, n).value) for n in names if hasattr(dut, n)}
        for sub in ("controller0", "controller1", "controller2"):
            if hasattr(dut, sub):
                c = getattr(dut, sub)
                vals[sub] = {n: int(getattr(c, n).value) for n in
                             ("fsm_state", "qi", "ri", "items") if hasattr(c, n)}
        dut._log.info("cycle %d: sent %d answers %d %r", sim_cycle(), query.sent, len(answers),
                      vals)


class _Counted:
    """Cycles of the handshakes of an AXI4-Stream port: ``accept_cycles`` of every
    transfer, ``receive_cycles`` of those with ``tlast``; ``sent`` counts them."""

    def __init__(self, dut, prefix: str):
        self.accept_cycles, self.receive_cycles, self.sent = [], [], 0
        self.dut, self.prefix = dut, prefix

    async def run(self):
        from cocotb.triggers import RisingEdge

        p = self.prefix
        valid, ready, last = (getattr(self.dut, f"{p}__{n}") for n in ("tvalid", "tready",
                                                                       "tlast"))
        while True:
            await RisingEdge(self.dut.clk)
            if valid.value == 1 and ready.value == 1:
                self.accept_cycles.append(sim_cycle())
                self.sent += 1
                if last.value == 1:
                    self.receive_cycles.append(sim_cycle())


def _axis_ports(dut, cfg, params, queries, on_result):
    """The AXI4-Stream ports of `rpaccel.hw.axis.RPAccelAxis` through cocotbext-axi: every
    run of query beats up to one with ``end`` is a packet (``tlast`` on its last record),
    idle gaps on the query port, backpressure on the result port; each result record is
    handed to ``on_result``. Returns the query and result counters and the tasks."""
    from types import SimpleNamespace

    from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

    from ..interface import RESULT_RECORD_BYTES, pack_query_records, unpack_result_record

    seed = params.get("seed", 1)
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "query_"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "result_"), dut.clk, dut.rst)
    for port, p, r in ((src, params.get("idle", 0.0), random.Random(seed + 7)),
                       (sink, params.get("backpressure", 0.0), random.Random(seed + 2))):
        if p:
            port.set_pause_generator(iter(lambda r=r, p=p: r.random() < p, None))
    packet = bytearray()
    for q in queries:
        for data, end in pack_query_records(cfg, q["beats"]):
            packet += data
            if end:
                src.send_nowait(AxiStreamFrame(bytes(packet)))
                packet = bytearray()
    if packet:
        src.send_nowait(AxiStreamFrame(bytes(packet)))

    async def collect():
        while True:
            frame = await sink.recv()
            data = bytes(frame.tdata)
            n = len(data) // RESULT_RECORD_BYTES
            for i in range(n):
                rec = unpack_result_record(data[i * RESULT_RECORD_BYTES:])
                on_result(SimpleNamespace(**rec, last=int(i == n - 1)))

    query, result = _Counted(dut, "query"), _Counted(dut, "result")
    tasks = [cocotb.start_soon(x) for x in (query.run(), result.run(), collect())]
    return query, result, tasks


@cocotb.test()
async def top_matches_golden(dut):
    """Queries through every stage; answers equal the golden int8 pipeline's."""
    cfg = tb_config()
    params = tb_params()
    job = pickle.loads(open(params["jobs"], "rb").read())
    seed = params.get("seed", 1)
    check = params.get("check", False)
    Clock(dut.clk, 10, unit="ns").start()
    axi_rams(dut, cfg, job["dram"], params.get("dram_stall", 0.0), seed)
    query_l, result_l = top_layouts(cfg)
    queries = job["queries"]
    answered = [q for q in queries if not q["dropped"]]

    if params.get("reset_mid"):
        # half a query in, then reset: the machine must come back clean (model reloaded)
        await _setup(dut, cfg, job)  # streamed: only the reload after the reset matters
        src = StreamSource(dut, "query", dut.clk, query_l)
        beats = queries[0]["beats"]
        for b in beats[:len(beats) // 2]:
            src.put(b)
        task = cocotb.start_soon(src.run())
        await ClockCycles(dut.clk, 3000)
        task.cancel()
        dut._log.info("reset after %d of %d beats of query 0", src.sent, len(beats))

    csr, load_cycles = await _setup(dut, cfg, job, params.get("load", "stream"), check)
    rng = random.Random(seed + 7)
    answers, errors, current, cur_err = [], [], [], []
    mixed_flags = []
    all_done = Event()

    def on_result(it):
        current.append((int(it.id), int(it.score)))
        cur_err.append(int(it.error))
        if int(it.last):
            answers.append(list(current))
            if params.get("progress"):
                with open(params["progress"], "w") as f:
                    f.write(str(len(answers)))
            if len(answers) >= len(answered):
                all_done.set()
            errors.append(all(cur_err) if cur_err else False)
            if any(cur_err) and not all(cur_err):
                mixed_flags.append(len(answers) - 1)
                dut._log.error("query %d: error flag on some beats only", len(answers) - 1)
            current.clear()
            cur_err.clear()

    heads = []
    n = 0
    for q in queries:
        if any(q is x for x in answered):
            heads.append(n)
        n += len(q["beats"])
    if params.get("port") == "axis":
        query, result, tasks = _axis_ports(dut, cfg, params, queries, on_result)
    else:
        query = StreamSource(dut, "query", dut.clk, query_l, params.get("idle", 0.0), rng)
        result = StreamSink(dut, "result", dut.clk, result_l, params.get("backpressure", 0.0),
                            random.Random(seed + 2))
        result.callbacks.append(on_result)
        for q in queries:
            for b in q["beats"]:
                query.put(b)
        tasks = [cocotb.start_soon(query.run()), cocotb.start_soon(result.run())]
    timeout_cycles = params.get("timeout_cycles", 2_000_000 * len(queries))
    if not answered:
        all_done.set()
    if params.get("debug"):
        cocotb.start_soon(_heartbeat(dut, query, answers))
    await with_timeout(all_done.wait(), timeout_cycles * CLOCK_NS, "ns")
    await ClockCycles(dut.clk, 5)
    for t in tasks:
        t.cancel()
    start = [query.accept_cycles[h] for h in heads]
    ends = (result.receive_cycles if params.get("port") == "axis" else
            [result.receive_cycles[i] for i, it in enumerate(result.received) if int(it.last)])
    latency = [e - s for s, e in zip(start, ends, strict=False)]
    regs = job["regs"]
    counters = {}
    for name, addr in regs.items():
        if name in ("CTRL",):
            continue
        counters[name.lower()] = await csr.read_dword(addr)
    cleared = 0
    if any(q["bad"] for q in queries):
        # the first fault is reported; clearing the status works
        await csr.write_dword(regs["CTRL"], 1)
        for name in CLEARED:
            cleared |= await csr.read_dword(regs[name])
    metrics = {"answers": answers, "errors": errors, "latency": latency,
               "total_cycles": (ends[-1] - start[0]) if ends else 0, "counters": counters,
               "status_ok": error_status_ok(queries, counters, cleared),
               "mixed_flags": len(mixed_flags), "load_cycles": load_cycles}
    with open(params["metrics"], "w") as f:
        json.dump(metrics, f)
    if check:
        wrong = problems(job, metrics)
        for w in wrong:
            dut._log.error("%s", w)
        assert not wrong, f"{len(wrong)} problems, first: {wrong[0] if wrong else ''}"
