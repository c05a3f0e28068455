"""cocotb drivers for amaranth.lib.stream ports: source, sink, scoreboard.

Signals are driven on the falling edge and sampled in the read-only phase that follows,
so a handshake seen there is the one the design takes at the next rising edge. Payloads
are packed and unpacked with the design's own Amaranth layouts, never by hand.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque

import cocotb
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from ..hw.loader import load_packer

__all__ = ["StreamSource", "StreamSink", "Scoreboard", "CLOCK_NS", "sim_cycle", "tb_params",
           "tb_config", "axi_ram", "axi_rams", "load_packer", "load_all"]


def tb_params() -> dict:
    """Stimulus parameters passed by `rpaccel.sim.runner.run`."""
    return json.loads(os.environ.get("RPACCEL_TB", "{}"))


def tb_config():
    """The `RPAccelConfig` the model was generated from."""
    from ..config import RPAccelConfig

    return RPAccelConfig(**json.loads(os.environ["RPACCEL_CONFIG"]))


def _port(dut, prefix, name):
    return getattr(dut, f"{prefix}__{name}")


#: Clock period of every testbench (ns); cycle numbers are simulation time over it.
CLOCK_NS = 10


def sim_cycle() -> int:
    """The current clock cycle (simulation time / `CLOCK_NS`)."""
    return int(get_sim_time(unit="ns")) // CLOCK_NS


class StreamSource:
    """Drives ``<prefix>__valid/__payload``; inserts idle cycles with probability ``idle``.

    Once valid is raised it stays up, with the same payload, until the design is ready.
    While the design holds ready low, or nothing is queued, the driver sleeps on the
    signal (or on `put`) instead of waking every cycle: long stalls cost no Python time.
    """

    def __init__(self, dut, prefix: str, clk, layout, idle: float = 0.0,
                 rng: random.Random | None = None):
        self.valid = _port(dut, prefix, "valid")
        self.ready = _port(dut, prefix, "ready")
        self.payload = _port(dut, prefix, "payload")
        self.clk, self.layout, self.idle = clk, layout, idle
        self.rng = rng or random.Random(0)
        self.queue: deque = deque()
        self.sent = 0
        self.accept_cycles: list[int] = []
        self._wake = Event()
        self.valid.value = 0

    @property
    def cycle(self) -> int:
        return sim_cycle()

    def put(self, value) -> None:
        """Queue one payload (a dict / list for the layout, or an int of raw bits)."""
        bits = value if isinstance(value, int) else self.layout.const(value).as_value().value
        self.queue.append(bits)
        self._wake.set()

    async def run(self):
        current = None
        while True:
            await FallingEdge(self.clk)
            if current is None and not self.queue:
                self.valid.value = 0
                self._wake.clear()
                await self._wake.wait()
                continue
            if current is None and self.rng.random() >= self.idle:
                current = self.queue.popleft()
            self.valid.value = int(current is not None)
            if current is None:
                continue
            self.payload.value = current
            await ReadOnly()
            while not int(self.ready.value):
                await RisingEdge(self.ready)
                await ReadOnly()
            # taken at the next rising edge
            current = None
            self.sent += 1
            self.accept_cycles.append(sim_cycle())
            await RisingEdge(self.clk)

    @property
    def idle_now(self) -> bool:
        return not self.queue


class StreamSink:
    """Drives ``<prefix>__ready`` low with probability ``backpressure`` and collects
    payloads (unpacked with ``layout``). Without backpressure it sleeps until valid rises."""

    def __init__(self, dut, prefix: str, clk, layout, backpressure: float = 0.0,
                 rng: random.Random | None = None):
        self.valid = _port(dut, prefix, "valid")
        self.ready = _port(dut, prefix, "ready")
        self.payload = _port(dut, prefix, "payload")
        self.clk, self.layout, self.backpressure = clk, layout, backpressure
        self.rng = rng or random.Random(1)
        self.received: list = []
        self.receive_cycles: list[int] = []
        self.callbacks = []
        self.ready.value = 0

    @property
    def cycle(self) -> int:
        return sim_cycle()

    async def run(self):
        while True:
            await FallingEdge(self.clk)
            ready = int(self.rng.random() >= self.backpressure)
            self.ready.value = ready
            await ReadOnly()
            if not ready:
                continue
            if not self.backpressure:
                while not int(self.valid.value):
                    await RisingEdge(self.valid)
                    await ReadOnly()
            if int(self.valid.value):
                # taken at the next rising edge
                item = self.layout.from_bits(self.payload.value.to_unsigned())
                self.received.append(item)
                self.receive_cycles.append(sim_cycle())
                for cb in self.callbacks:
                    cb(item)
                await RisingEdge(self.clk)


class Scoreboard:
    """In-order comparison of actual against expected items; logs expected vs actual."""

    def __init__(self, log, name: str = "scoreboard", max_report: int = 10):
        self.log, self.name, self.max_report = log, name, max_report
        self.expected: deque = deque()
        self.errors = 0
        self.matched = 0
        self.first_mismatch_cycle: int | None = None

    def expect(self, item) -> None:
        self.expected.append(item)

    def compare(self, actual) -> None:
        if not self.expected:
            self.errors += 1
            self.log.error("%s: unexpected output %r", self.name, actual)
            return
        exp = self.expected.popleft()
        if exp != actual:
            self.errors += 1
            if self.errors == 1:
                self.first_mismatch_cycle = sim_cycle()
            if self.errors <= self.max_report:
                self.log.error("%s: item %d mismatch at cycle %d\n  expected %r\n  actual   %r",
                               self.name, self.matched + self.errors - 1, sim_cycle(), exp,
                               actual)
        else:
            self.matched += 1

    def check_done(self) -> None:
        if self.expected:
            self.errors += len(self.expected)
            self.log.error("%s: %d expected items never arrived", self.name, len(self.expected))
        first = "" if self.first_mismatch_cycle is None else \
            f", first mismatch at cycle {self.first_mismatch_cycle}"
        assert self.errors == 0, \
            f"{self.name}: {self.errors} errors ({self.matched} matched{first})"


def axi_ram(dut, image: bytes, stall: float = 0.0, rng: random.Random | None = None,
            prefix: str = "axi_"):
    """cocotbext-axi's AXI4 RAM (read side) on the design's ``axi__*`` ports, holding
    ``image`` from address 0; ``stall`` pauses the AR and R channels at random (a random
    read latency and backpressure on the design's requests)."""
    from cocotbext.axi import AxiRamRead, AxiReadBus

    ram = AxiRamRead(AxiReadBus.from_prefix(dut, prefix), dut.clk, dut.rst,
                     size=max(4096, len(image)))
    ram.write(0, image)
    ram.log.setLevel("WARNING")  # one line per burst would dominate the log and the run
    if stall:
        rng = rng or random.Random(0)

        def pauses():
            while True:
                yield rng.random() < stall

        ram.ar_channel.set_pause_generator(pauses())
        ram.r_channel.set_pause_generator(pauses())
    return ram


def axi_rams(dut, config, image: bytes, stall: float = 0.0, seed: int = 0) -> list:
    """`axi_ram` on each of the design's ``config.axi_ports`` AXI4 read ports (``axi``,
    ``axi1``, ...: `rpaccel.hw.bus.axi_port`), each holding ``image`` (every port sees the
    whole address space), with its own stall pattern."""
    from ..hw.bus import axi_port

    return [axi_ram(dut, image, stall, random.Random(seed + 7919 * p), f"{axi_port(p)}_")
            for p in range(config.axi_ports)]


async def load_all(dut, prefix: str, layout, beats) -> None:
    """Send every ``(target, addr, data)`` beat on the ``prefix`` load stream and return
    once the design has taken the last one."""
    src = StreamSource(dut, prefix, dut.clk, layout)
    pack = load_packer(layout)
    for beat in beats:
        src.put(pack(beat))
    task = cocotb.start_soon(src.run())
    while src.queue or int(src.valid.value):
        await RisingEdge(dut.clk)
    task.cancel()
    src.valid.value = 0
