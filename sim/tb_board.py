"""cocotb testbench of the board top (`rpaccel.hw.board.BoardTop`) through its UART.

The harness (`board_harness`) puts a host-side UART pair on the board's ``rx`` / ``tx``
lines, so the bytes of `rpaccel.board.host_script` travel bit by bit over the line, and
the bench deals in bytes only (``host_in`` / ``host_out``). The answers, parsed with the
host's `rpaccel.board.Protocol`, must equal the golden pipeline's.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cocotb
from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, with_timeout

from ..board import answers_from, errors_from, protocol_for
from ..hw.board import TABLE_WORDS, BoardTop
from ..hw.uart import UARTRx, UARTTx
from .streams import StreamSink, StreamSource, tb_config, tb_params

__all__ = ["board_harness", "BOARD_DIVISOR", "BOARD_TABLE_WORDS"]

#: Clock cycles per UART bit in simulation, and the simulated board's table memory.
BOARD_DIVISOR = 4
BOARD_TABLE_WORDS = TABLE_WORDS


class _Harness(wiring.Component):
    def __init__(self, config):
        self.board = BoardTop(config, BOARD_DIVISOR, BOARD_TABLE_WORDS)
        super().__init__({"host_in": In(stream.Signature(unsigned(8))),
                          "host_out": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.board = board = self.board
        m.submodules.htx = htx = UARTTx(BOARD_DIVISOR)
        m.submodules.hrx = hrx = UARTRx(BOARD_DIVISOR)
        m.d.comb += [board.rx.eq(htx.tx), hrx.rx.eq(board.tx)]
        wiring.connect(m, wiring.flipped(self.host_in), htx.i)
        wiring.connect(m, hrx.o, wiring.flipped(self.host_out))
        return m


def board_harness(config):
    """The simulated board with a host-side UART (see the module docstring)."""
    return _Harness(config)


@cocotb.test()
async def board_answers_over_the_uart(dut):
    cfg = tb_config()
    params = tb_params()
    job = pickle.loads(Path(params["jobs"]).read_bytes())
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.host_in__valid.value = 0
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    proto = protocol_for(cfg)
    src = StreamSource(dut, "host_in", dut.clk, None)
    sink = StreamSink(dut, "host_out", dut.clk, _Bytes())
    frames = []
    want = sum(len(q["expect"]) for q in job["queries"])
    done = Event()
    got = bytearray()

    def on_byte(b):
        got.append(b)
        frames.extend(proto.feed(bytes([b])))
        if sum(f.kind == "result" for f in frames) >= want:
            done.set()

    sink.callbacks.append(on_byte)
    for b in job["script"]:
        src.put(b)
    tasks = [cocotb.start_soon(src.run()), cocotb.start_soon(sink.run())]
    await with_timeout(done.wait(), params.get("timeout_ns", 10**10), "ns")
    for t in tasks:
        t.cancel()
    others = [f for f in frames if f.kind != "result"]
    assert [f.kind for f in others] == ["wrote"] * len(job["csr"]) + ["pong"], others[:8]
    assert all(f.resp == 0 for f in others), others
    answers = answers_from(cfg, frames)
    errors = errors_from(cfg, frames)
    assert len(answers) == len(job["queries"])
    for i, (q, a, err) in enumerate(zip(job["queries"], answers, errors, strict=True)):
        expect = [tuple(x) for x in q["expect"]]
        if q["bad"]:
            assert err, f"query {i}: error flag missing"
            continue
        assert not err and a == expect, f"query {i}: expected {expect}, actual {a}"
    dut._log.info("%d queries answered over the UART; %d bytes in, %d out",
                  len(answers), len(job["script"]), len(got))


class _Bytes:
    """A payload layout of one byte for `StreamSink`: bytes come back as ints."""

    @staticmethod
    def from_bits(bits: int) -> int:
        return bits
