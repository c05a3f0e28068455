"""The board's host link in the Amaranth simulator: the UART pair (bytes through a line,
gaps, a held byte overrun, a bad stop bit) and the protocol engine against a model AXI4-Lite
register file, stream sinks with backpressure, a memory and a result source, driven and
parsed by the host's `rpaccel.board.Protocol`."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from rpaccel.board import Answer, Protocol
from rpaccel.hw.host_link import HostLink
from rpaccel.hw.uart import UARTRx, UARTTx

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_uart_bytes_through_the_line():
    rng = random.Random(1)
    data = [rng.randrange(256) for _ in range(40)]
    m = Module()
    m.submodules.tx = tx = UARTTx(5)
    m.submodules.rx = rx = UARTRx(5)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
            await ctx.tick().repeat(rng.randrange(1, 30))

    async def recv(ctx):
        while len(got) < len(data):
            ctx.set(rx.o.ready, rng.random() < 0.5)
            if ctx.get(rx.o.valid) and ctx.get(rx.o.ready):
                got.append(ctx.get(rx.o.payload))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(send, background=True)
    sim.add_testbench(recv)
    sim.run_until(4e-3)
    # a byte is taken within the next byte's 10 bit times: none lost, none flagged
    assert got == data


def _line_bits(byte, divisor, stop=1):
    return [0] * divisor + [b for i in range(8) for b in [(byte >> i) & 1] * divisor] + \
        [stop] * divisor


def test_uart_rx_flags_overrun_and_bad_stop_bit():
    rx = UARTRx(4)
    seen = {}

    async def bench(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        for bit in _line_bits(0x5A, 4) + _line_bits(0x33, 4) + [1] * 8:
            ctx.set(rx.rx, bit)
            await ctx.tick()
        seen["first"] = (ctx.get(rx.o.valid), ctx.get(rx.o.payload), ctx.get(rx.overrun))
        ctx.set(rx.o.ready, 1)
        await ctx.tick()
        ctx.set(rx.o.ready, 0)
        for bit in _line_bits(0x0F, 4, stop=0) + [1] * 8:
            ctx.set(rx.rx, bit)
            await ctx.tick()
        seen["bad"] = (ctx.get(rx.o.valid), ctx.get(rx.frame_error))

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["first"] == (1, 0x5A, 1)   # 0x33 arrived while 0x5A was held: lost
    assert seen["bad"] == (0, 1)


def test_uart_divisor_validation():
    with pytest.raises(ValueError, match="divisor .* must be an integer of at least 4, not 2"):
        UARTRx(2)


STREAMS = [12, 70]


def test_host_link_commands_csr_streams_memory_and_results():
    rng = random.Random(3)
    dut = HostLink(STREAMS, result_bits=46, mem_addr_bits=16, mem_data_bits=64)
    proto = Protocol(STREAMS, 46, 64)
    regs = {0x10: 0x1234_5678}
    results = [rng.randrange(1 << 46) for _ in range(6)]
    beats = [(0, 0xABC), (1, (1 << 69) | 12345), (0, 7)]
    cmds = (proto.write(0x24, 0xDEAD_BEEF) + proto.read(0x10) + proto.read(0x24) +
            proto.mem(0x321, bytes(range(8))) + b"".join(proto.beat(i, v) for i, v in beats) +
            bytes([ord("X")]) + proto.write(0x3FC, 1) + proto.ping())
    rx = bytearray()
    log = {"mem": [], "beats": []}

    async def host(ctx):
        for b in cmds:
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, b)
            await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick().repeat(rng.randrange(1, 4))

    async def host_rx(ctx):
        while True:
            ctx.set(dut.tx.ready, rng.random() < 0.6)
            if ctx.get(dut.tx.valid) and ctx.get(dut.tx.ready):
                rx.append(ctx.get(dut.tx.payload))
            await ctx.tick()

    async def csr_model(ctx):
        csr = dut.csr
        while True:
            for _ in range(rng.randrange(1, 3)):
                await ctx.tick()
            if ctx.get(csr.awvalid) and ctx.get(csr.wvalid):
                addr, val = ctx.get(csr.awaddr), ctx.get(csr.wdata)
                ctx.set(csr.awready, 1)
                ctx.set(csr.wready, 1)
                await ctx.tick()
                ctx.set(csr.awready, 0)
                ctx.set(csr.wready, 0)
                ok = addr < 0x100
                if ok:
                    regs[addr] = val
                ctx.set(csr.bvalid, 1)
                ctx.set(csr.bresp, 0 if ok else 2)
                await ctx.tick().until(csr.bready)
                ctx.set(csr.bvalid, 0)
            elif ctx.get(csr.arvalid):
                addr = ctx.get(csr.araddr)
                ctx.set(csr.arready, 1)
                await ctx.tick()
                ctx.set(csr.arready, 0)
                ctx.set(csr.rvalid, 1)
                ctx.set(csr.rdata, regs.get(addr, 0))
                ctx.set(csr.rresp, 0)
                await ctx.tick().until(csr.rready)
                ctx.set(csr.rvalid, 0)

    async def sinks(ctx):
        while True:
            for i in range(len(STREAMS)):
                ctx.set(getattr(dut, f"s{i}").ready, rng.random() < 0.4)
            for i in range(len(STREAMS)):
                s = getattr(dut, f"s{i}")
                if ctx.get(s.valid) and ctx.get(s.ready):
                    log["beats"].append((i, ctx.get(s.payload)))
            if ctx.get(dut.mem_en):
                log["mem"].append((ctx.get(dut.mem_addr), ctx.get(dut.mem_data)))
            await ctx.tick()

    async def source(ctx):
        for r in results:
            await ctx.tick().repeat(rng.randrange(1, 40))
            ctx.set(dut.result.valid, 1)
            ctx.set(dut.result.payload, r)
            await ctx.tick().until(dut.result.ready)
            ctx.set(dut.result.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host, background=True)
    for tb in (host_rx, csr_model, sinks, source):
        sim.add_testbench(tb, background=True)
    sim.run_until(2e-5)
    answers = proto.feed(bytes(rx))
    assert [a.value for a in answers if a.kind == "result"] == results
    assert [a for a in answers if a.kind != "result"] == [
        Answer("wrote", resp=0), Answer("data", 0x1234_5678), Answer("data", 0xDEAD_BEEF),
        Answer("unknown", ord("X")), Answer("wrote", resp=2), Answer("pong")]
    assert log["mem"] == [(0x321, int.from_bytes(bytes(range(8)), "little"))]
    assert log["beats"] == beats


def test_protocol_refuses_what_the_board_cannot_take():
    proto = Protocol(STREAMS, 46, 64)
    with pytest.raises(ValueError, match="stream index must be from 0 to 1, not 2"):
        proto.beat(2, 0)
    with pytest.raises(ValueError, match="a memory word must be 8 bytes, not 3"):
        proto.mem(0, b"abc")
    with pytest.raises(ValueError, match="unexpected byte 0x00"):
        proto.feed(b"\x00")


def test_table_memory_bursts_and_slverr_past_the_end():
    """The board's table memory: words written through the host port come back in AXI4
    bursts (with R backpressure), each beat tagged with the burst's id, ``rlast`` on the
    last; a burst running past the memory (48 words: not a power of two) reads SLVERR and
    zeros there."""
    from rpaccel.config import get_config
    from rpaccel.hw.board import TableMemory

    cfg = get_config("fpga-ecp5")
    dut = TableMemory(cfg, 48, id_bits=3)
    words = {i: (i * 0x0123_4567_89AB_CDEF) & ((1 << 64) - 1) for i in range(48)}
    got = []

    async def bench(ctx):
        for i, w in words.items():
            ctx.set(dut.wr_en, 1)
            ctx.set(dut.wr_addr, i)
            ctx.set(dut.wr_data, w)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        rng = random.Random(5)
        for start, n, rid in ((3, 4, 5), (0, 1, 2), (46, 4, 1)):
            ctx.set(dut.axi.arvalid, 1)
            ctx.set(dut.axi.araddr, start * 8)
            ctx.set(dut.axi.arlen, n - 1)
            ctx.set(dut.axi.arid, rid)
            await ctx.tick().until(dut.axi.arready)
            ctx.set(dut.axi.arvalid, 0)
            beats = []
            while not beats or not beats[-1][3]:
                ready = rng.random() < 0.5
                ctx.set(dut.axi.rready, ready)
                if ready and ctx.get(dut.axi.rvalid):
                    beats.append((ctx.get(dut.axi.rdata), ctx.get(dut.axi.rid),
                                  ctx.get(dut.axi.rresp), ctx.get(dut.axi.rlast)))
                await ctx.tick()
            ctx.set(dut.axi.rready, 0)
            got.append(beats)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got[0] == [(words[3 + i], 5, 0, int(i == 3)) for i in range(4)]
    assert got[1] == [(words[0], 2, 0, 1)]
    assert got[2] == [(words[46], 1, 0, 0), (words[47], 1, 0, 0), (0, 1, 2, 0), (0, 1, 2, 1)]


def test_result_frames_grouped_into_answers():
    """The host's view of result frames: fields unpacked from the result layout (negative
    scores too), a query closed by ``last``, a query flagged only when all its beats are."""
    from rpaccel.board import answers_from, errors_from, protocol_for
    from rpaccel.config import get_config
    from rpaccel.interface import top_layouts

    cfg = get_config("fpga-ecp5")
    layout = top_layouts(cfg)[1]
    beats = [{"id": 7, "score": -5, "last": 0, "error": 0},
             {"id": 3, "score": 1 << 20, "last": 1, "error": 0},
             {"id": 2, "score": -(1 << 31), "last": 1, "error": 1}]
    proto = protocol_for(cfg)
    frames = proto.feed(b"".join(b"A" + layout.const(b).as_value().value.to_bytes(
        proto.result_bytes, "little") for b in beats) + b"p")
    assert answers_from(cfg, frames) == [[(7, -5), (3, 1 << 20)], [(2, -(1 << 31))]]
    assert errors_from(cfg, frames) == [False, True]
    assert frames[-1] == Answer("pong")
