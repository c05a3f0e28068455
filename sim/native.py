"""The native testbench of the RPAccel top level: the whole run in Verilog, no Python per
cycle.

The cocotb testbench (`rpaccel.sim.tb_top`) drives every interface from Python and runs
the top level at ~15k cycles per second; here a generated Verilog testbench does the same
work inside the simulator, at the simulator's own speed. Python writes the stimulus
before the run and reads a log after it:

* ``query.hex``: every query beat, played on ``query`` with random idle cycles;
* ``dram.hex``: the DRAM image, served on each of the ``axi_ports`` AXI4 read ports by its
  own subordinate (bursts in order, up to 8 outstanding, random AR / R stalls, SLVERR on
  bursts that start inside a chosen address range, DECERR past the image's end;
  ``arsize`` and ``arburst`` are checked);
* ``cmd.txt``: a script for the AXI4-Lite manager and the run (register writes, reads,
  polls, resets, how many query beats may go, waits for answers);
* ``out.txt``: what happened (the accept cycle of every query header, every result beat
  taken under random backpressure, every register read, bus errors, the end).

The checks are those of the cocotb testbench (`rpaccel.sim.tb_top`): answers bit for
bit, error flags, the error status, the model load. Random draws come from xorshift32
generators seeded by ``+seed``, so a run is reproduced by its seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..config import RPAccelConfig
from ..hw import hash_sources
from ..hw.bus import axi_port
from ..interface import ID_VALUE, ErrCause, beat_packer, err_where, top_layouts
from .runner import BUILD_ROOT, MAKE_VARS, VERILATOR_ARGS, tool_env

__all__ = ["NativeBuild", "NativeError", "build_native", "script", "run_native", "problems",
           "error_status_ok", "Op"]


class NativeError(RuntimeError):
    """The native testbench could not be built or did not finish."""


class Op:
    """Commands of ``cmd.txt`` (one ``op addr data`` line each)."""

    END = 0
    WRITE = 1    # CSR write; a non-OKAY response is logged
    READ = 2     # CSR read, logged
    POLL = 3     # read until (value & data) == 0, 100 cycles apart
    LIMIT = 4    # query beats [0, data) may be sent
    SEEK = 5     # the next query beat sent is beat data
    WAITR = 6    # wait until data answers (result beats with last) have arrived
    WAITC = 7    # wait data cycles
    RESET = 8    # reset for 5 cycles (the testbench's streams and DRAM too)
    MARK = 9     # log the cycle with the number data


_PORT = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", re.M)

#: DUT inputs the DRAM model drives combinationally (wires, not registers).
_DRAM_DRIVEN = re.compile(r"^axi\d*__(arready|rvalid|rdata|rresp|rlast|rid)$")


def _dram_port(name: str, sfx: str, aw: int, idw: int, ash: int) -> str:
    """The DRAM model on AXI4 read port ``name`` (its registers suffixed ``sfx``): INCR
    bursts answered in order, 8 outstanding, every port reading the one ``dmem``."""
    a = f"{name}__"
    return f"""  // ---- DRAM port {name}: AXI4 read subordinate, INCR bursts in order, 8 in flight
  reg [{aw - 1}:0] ar_addr{sfx} [0:7];
  reg [7:0] ar_len{sfx} [0:7];
  reg [{idw - 1}:0] ar_id{sfx} [0:7];
  reg ar_err{sfx} [0:7];
  reg [2:0] wp{sfx} = 0, rp{sfx} = 0;
  reg [3:0] cnt{sfx} = 0;
  reg [7:0] beat{sfx} = 0;
  reg ar_stall{sfx} = 0, r_stall{sfx} = 0;
  integer err_used{sfx} = 0, ar_n{sfx} = 0;
  wire [63:0] widx{sfx} = (ar_addr{sfx}[rp{sfx}] >> {ash}) + beat{sfx};
  wire past_end{sfx} = widx{sfx} >= dn;
  assign {a}arready = cnt{sfx} < 8 && !ar_stall{sfx} && !rst;
  assign {a}rvalid = cnt{sfx} != 0 && !r_stall{sfx} && !rst;
  assign {a}rdata = past_end{sfx} ? 0 : dmem[widx{sfx}[31:0]];
  assign {a}rresp = past_end{sfx} ? 2'd3 : (ar_err{sfx}[rp{sfx}] ? 2'd2 : 2'd0);
  assign {a}rlast = beat{sfx} == ar_len{sfx}[rp{sfx}];
  assign {a}rid = ar_id{sfx}[rp{sfx}];
  wire push{sfx} = {a}arvalid && {a}arready;
  wire pop{sfx} = {a}rvalid && {a}rready && {a}rlast;
  always @(posedge clk) begin
    ar_rng{sfx} <= xs(ar_rng{sfx}); rd_rng{sfx} <= xs(rd_rng{sfx});
    ar_stall{sfx} <= (ar_rng{sfx} % 1000) < stall_pm;
    r_stall{sfx} <= (rd_rng{sfx} % 1000) < stall_pm;
    if (rst) begin
      wp{sfx} <= 0; rp{sfx} <= 0; cnt{sfx} <= 0; beat{sfx} <= 0;
    end else begin
      if (push{sfx}) begin
        ar_addr{sfx}[wp{sfx}] <= {a}araddr; ar_len{sfx}[wp{sfx}] <= {a}arlen;
        ar_id{sfx}[wp{sfx}] <= {a}arid;
        // bursts starting in [err_lo, err_hi) answer SLVERR: all, or (err_n set) the
        // err_n after the first err_skip (counted per port)
        ar_err{sfx}[wp{sfx}] <= 0;
        if ({a}araddr >= err_lo && {a}araddr < err_hi) begin
          err_used{sfx} <= err_used{sfx} + 1;
          if (err_n == 0 || (err_used{sfx} >= err_skip && err_used{sfx} < err_skip + err_n))
            ar_err{sfx}[wp{sfx}] <= 1;
        end
        wp{sfx} <= wp{sfx} + 1; ar_n{sfx} <= ar_n{sfx} + 1;
        if ({a}arsize != {ash} || {a}arburst != 1)
          $fdisplay(fo, "E ar %0d size %0d burst %0d %0d", {a}araddr, {a}arsize,
                    {a}arburst, cycle);
      end
      if ({a}rvalid && {a}rready) begin
        if ({a}rlast) begin beat{sfx} <= 0; rp{sfx} <= rp{sfx} + 1; end
        else beat{sfx} <= beat{sfx} + 1;
      end
      cnt{sfx} <= cnt{sfx} + push{sfx} - pop{sfx};
    end
  end
"""


def _ports(verilog: str, top: str) -> dict:
    """``name -> (direction, width)`` of module ``top``."""
    start = verilog.index(f"module {top}(")
    body = verilog[start:verilog.index("endmodule", start)]
    return {name: (d, int(hi) + 1 if hi else 1) for d, hi, name in _PORT.findall(body)}


def harness(config: RPAccelConfig, ports: dict) -> str:
    """The testbench module ``tb`` around ``rpaccel`` for these ports."""
    query_l, result_l = top_layouts(config)
    qw = ports["query__payload"][1]
    dw = ports["axi__rdata"][1]
    aw = ports["axi__araddr"][1]
    ash = (dw // 8).bit_length() - 1
    names = [axi_port(p) for p in range(config.axi_ports)]
    sfx = ["" if p == 0 else f"_{p}" for p in range(config.axi_ports)]
    dram = "\n".join(_dram_port(n, x, aw, ports[f"{n}__rid"][1], ash)
                     for n, x in zip(names, sfx, strict=True))
    reads = "\n".join(f'          $fdisplay(fo, "L {p} %0d", ar_n{x});'
                      for p, x in enumerate(sfx))
    rngs = ", ".join(f"ar_rng{x}, rd_rng{x}" for x in sfx)
    seeds = "\n".join(f"    ar_rng{x} = xs(seed ^ 32'h94d049bb ^ {p << 8}); "
                      f"rd_rng{x} = xs(seed ^ 32'hbf58476d ^ {p << 8});"
                      for p, x in enumerate(sfx))
    decl, conn = [], []
    for name, (d, w) in ports.items():
        rng = f"[{w - 1}:0] " if w > 1 else ""
        if name == "clk":
            pass
        elif d == "output" or _DRAM_DRIVEN.match(name):
            decl.append(f"  wire {rng}{name};")
        elif name != "rst":
            decl.append(f"  reg {rng}{name} = 0;")
        conn.append(f".{name}({name})")
    head, last = query_l["head"].offset, result_l["last"].offset
    return f"""// Generated by rpaccel.sim.native: the native testbench of rpaccel.
module tb(input clk);
  reg rst = 1;
{chr(10).join(decl)}
  rpaccel dut({", ".join(conn)});

  integer idle_pm = 0, bp_pm = 0, stall_pm = 0, fo, fd, r, i, op, a;
  integer err_n = 0, err_skip = 0;
  reg [63:0] max_cycles = 0, cycle = 0;
  reg [31:0] seed = 1, err_lo = 0, err_hi = 0, d;
  reg [{qw - 1}:0] qmem [];
  reg [{dw - 1}:0] dmem [];
  reg [31:0] c_op [], c_addr [], c_data [];
  reg [{qw - 1}:0] qtmp;
  reg [{dw - 1}:0] dtmp;
  integer qn = 0, dn = 0, cn = 0;

  function automatic [31:0] xs(input [31:0] x);
    reg [31:0] y;
    begin
      y = x ^ (x << 13); y = y ^ (y >> 17); xs = y ^ (y << 5);
    end
  endfunction

  reg [31:0] q_rng, r_rng, {rngs};
  initial begin
    r = $value$plusargs("idle=%d", idle_pm);
    r = $value$plusargs("bp=%d", bp_pm);
    r = $value$plusargs("stall=%d", stall_pm);
    r = $value$plusargs("seed=%d", seed);
    r = $value$plusargs("max_cycles=%d", max_cycles);
    r = $value$plusargs("err_lo=%d", err_lo);
    r = $value$plusargs("err_hi=%d", err_hi);
    r = $value$plusargs("err_n=%d", err_n);
    r = $value$plusargs("err_skip=%d", err_skip);
    q_rng = xs(seed ^ 32'h9e3779b9); r_rng = xs(seed ^ 32'h7f4a7c15);
{seeds}
    fo = $fopen("out.txt", "w");
    fd = $fopen("query.hex", "r");
    r = $fscanf(fd, "%d", qn);
    qmem = new[qn > 0 ? qn : 1];
    for (i = 0; i < qn; i = i + 1) begin r = $fscanf(fd, "%h", qtmp); qmem[i] = qtmp; end
    $fclose(fd);
    fd = $fopen("dram.hex", "r");
    r = $fscanf(fd, "%d", dn);
    dmem = new[dn > 0 ? dn : 1];
    for (i = 0; i < dn; i = i + 1) begin r = $fscanf(fd, "%h", dtmp); dmem[i] = dtmp; end
    $fclose(fd);
    fd = $fopen("cmd.txt", "r");
    r = $fscanf(fd, "%d", cn);
    c_op = new[cn > 0 ? cn : 1]; c_addr = new[cn > 0 ? cn : 1]; c_data = new[cn > 0 ? cn : 1];
    for (i = 0; i < cn; i = i + 1) begin
      r = $fscanf(fd, "%d %d %d", op, a, d); c_op[i] = op; c_addr[i] = a; c_data[i] = d;
    end
    $fclose(fd);
  end

  always @(posedge clk) begin
    cycle <= cycle + 1;
    if (max_cycles != 0 && cycle >= max_cycles) begin
      $fdisplay(fo, "T %0d", cycle); $fclose(fo); $finish;
    end
  end

  // ---- query source: beats [qptr, qlimit), idle cycles with probability idle / 1000
  reg [31:0] qptr = 0, qlimit = 0, seek_to = 0;
  reg seek = 0;
  always @(posedge clk) begin
    q_rng <= xs(q_rng);
    if (rst) begin
      query__valid <= 0;
      if (seek) qptr <= seek_to;
    end else begin
      if (query__valid && query__ready && query__payload[{head}])
        $fdisplay(fo, "Q %0d %0d", qptr - 1, cycle);
      if (seek) begin
        qptr <= seek_to; query__valid <= 0;
      end else if (!query__valid || query__ready) begin
        if (qptr < qlimit && qptr < qn && (q_rng % 1000) >= idle_pm) begin
          query__payload <= qmem[qptr]; query__valid <= 1; qptr <= qptr + 1;
        end else
          query__valid <= 0;
      end
    end
  end

  // ---- result sink: ready low with probability bp / 1000
  reg [31:0] answers = 0;
  always @(posedge clk) begin
    r_rng <= xs(r_rng);
    if (!rst && result__valid && result__ready) begin
      $fdisplay(fo, "A %0d %h", cycle, result__payload);
      if (result__payload[{last}]) answers <= answers + 1;
    end
    result__ready <= !rst && (r_rng % 1000) >= bp_pm;
  end

{dram}
  // ---- the script: AXI4-Lite manager and run control
  localparam FETCH = 0, WR = 1, WB = 2, RD = 3, RR = 4, PW = 5, WAITR = 6, WAITC = 7,
             RESET = 8;
  reg [3:0] st = FETCH;
  reg [31:0] pc = 0, cur_op = 0, cur_a = 0, cur_d = 0, wait_n = 0;
  always @(posedge clk) begin
    seek <= 0;
    case (st)
      FETCH: begin
        if (pc >= cn || c_op[pc] == {Op.END}) begin
{reads}
          $fdisplay(fo, "X %0d %0d", cycle, answers); $fclose(fo); $finish;
        end else begin
          cur_op <= c_op[pc]; cur_a <= c_addr[pc]; cur_d <= c_data[pc];
          case (c_op[pc])
            {Op.WRITE}: begin
              csr__awaddr <= c_addr[pc]; csr__awvalid <= 1; csr__wdata <= c_data[pc];
              csr__wvalid <= 1; csr__wstrb <= 4'hf; st <= WR;
            end
            {Op.READ}, {Op.POLL}: begin csr__araddr <= c_addr[pc]; csr__arvalid <= 1; st <= RD; end
            {Op.LIMIT}: begin qlimit <= c_data[pc]; pc <= pc + 1; end
            {Op.SEEK}: begin seek_to <= c_data[pc]; seek <= 1; pc <= pc + 1; end
            {Op.WAITR}: st <= WAITR;
            {Op.WAITC}: begin wait_n <= c_data[pc]; st <= WAITC; end
            {Op.RESET}: begin rst <= 1; wait_n <= 5; st <= RESET; end
            {Op.MARK}: begin $fdisplay(fo, "M %0d %0d", c_data[pc], cycle); pc <= pc + 1; end
            default: begin $fdisplay(fo, "E op %0d", c_op[pc]); pc <= pc + 1; end
          endcase
        end
      end
      WR: begin
        if (csr__awready) csr__awvalid <= 0;
        if (csr__wready) csr__wvalid <= 0;
        if ((!csr__awvalid || csr__awready) && (!csr__wvalid || csr__wready)) begin
          csr__bready <= 1; st <= WB;
        end
      end
      WB: if (csr__bvalid) begin
        csr__bready <= 0; pc <= pc + 1; st <= FETCH;
        if (csr__bresp != 0) $fdisplay(fo, "E bresp %0d %0d %0d", cur_a, csr__bresp, cycle);
      end
      RD: if (csr__arready) begin csr__arvalid <= 0; csr__rready <= 1; st <= RR; end
      RR: if (csr__rvalid) begin
        csr__rready <= 0;
        if (cur_op == {Op.READ}) begin
          $fdisplay(fo, "R %0d %0d %0d %0d", cur_a, csr__rdata, csr__rresp, cycle);
          pc <= pc + 1; st <= FETCH;
        end else if ((csr__rdata & cur_d) == 0) begin
          pc <= pc + 1; st <= FETCH;
        end else begin
          wait_n <= 100; st <= PW;
        end
      end
      PW: if (wait_n == 0) begin csr__arvalid <= 1; st <= RD; end else wait_n <= wait_n - 1;
      WAITR: if (answers >= cur_d) begin pc <= pc + 1; st <= FETCH; end
      WAITC: if (wait_n == 0) begin pc <= pc + 1; st <= FETCH; end else wait_n <= wait_n - 1;
      RESET: begin
        if (wait_n == 0) begin
          rst <= 0; pc <= pc + 1; st <= FETCH;
        end else wait_n <= wait_n - 1;
      end
      default: st <= FETCH;
    endcase
  end
endmodule
"""


_MAIN_CPP = """// Generated by rpaccel.sim.native: clocks the testbench until it calls $finish.
#include "Vtb.h"
#include "verilated.h"

int main(int argc, char** argv) {
    VerilatedContext* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    Vtb* top = new Vtb{ctx};
    top->clk = 0;
    while (!ctx->gotFinish()) {
        top->eval();
        ctx->timeInc(5);
        top->clk = !top->clk;
    }
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""


@dataclass(frozen=True)
class NativeBuild:
    """A compiled native testbench of one configuration."""

    config: RPAccelConfig
    build_dir: Path
    binary: Path
    ports: dict


def _hdl_digest(config: RPAccelConfig) -> str:
    h = hashlib.sha256()
    hash_sources(h)
    h.update(config.to_json().encode())
    return h.hexdigest()


_COMPILE_ARGS = ["--cc", "--exe", "--build", "-j", str(max(2, os.cpu_count() or 2)),
                 *VERILATOR_ARGS, "-Wno-MULTIDRIVEN",
                 "-Wno-INITIALDLY", "--top-module", "tb"]


def build_native(config: RPAccelConfig) -> NativeBuild:
    """Generate the top level's Verilog and its native testbench, compile both with
    Verilator (once per HDL sources and configuration; a file lock keeps concurrent
    callers from racing).

    Raises
    ------
    NativeError
        When Verilator is missing or the compile fails (the message names its log).
    """
    from ..hw import to_verilog
    from ..hw.top import RPAccel

    env = tool_env()
    build_dir = BUILD_ROOT / "sim" / f"native-{config.digest()}-verilator"
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "obj_dir" / "Vtb"
    with FileLock(str(build_dir / ".lock")):
        # the Verilog is made again only when the HDL or the configuration changed, the
        # compile only when the Verilog, the testbench or the arguments did
        hdl = _hdl_digest(config)
        vstamp, stamp = build_dir / ".verilog", build_dir / ".built"
        vpath = build_dir / "rpaccel.v"
        if not (vstamp.exists() and vstamp.read_text() == hdl and vpath.exists()):
            text = to_verilog(RPAccel(config), config, "rpaccel")
            vpath.write_text(text)
            vstamp.write_text(hdl)
        text = vpath.read_text()
        ports = _ports(text, "rpaccel")
        tb = harness(config, ports)
        src = hashlib.sha256("\0".join([text, tb, _MAIN_CPP, *_COMPILE_ARGS, *MAKE_VARS])
                             .encode())
        src = src.hexdigest()
        if not (stamp.exists() and stamp.read_text() == src and binary.exists()):
            (build_dir / "ports.json").write_text(json.dumps(ports))
            (build_dir / "tb.sv").write_text(tb)
            (build_dir / "main.cpp").write_text(_MAIN_CPP)
            cmd = ["verilator", *_COMPILE_ARGS, "tb.sv", "rpaccel.v", "main.cpp", "-o", "Vtb"]
            log = build_dir / "build.log"
            with open(log, "w") as f:
                proc = subprocess.run(cmd, cwd=build_dir, env=env, stdout=f,
                                      stderr=subprocess.STDOUT)
            if proc.returncode != 0 or not binary.exists():
                raise NativeError(f"Verilator build of the native testbench failed; log: {log}")
            stamp.write_text(src)
    return NativeBuild(config, build_dir, binary, ports)


#: The error status registers, read again after the clear through ``CTRL``: all must be 0.
CLEARED = ("ERR_CAUSE", "ERR_WHERE", "ERR_ID")


def script(job: dict, answered: int, beats: int, check: bool = True,
           reset_mid_beats: int = 0, drain: int = 5) -> list:
    """The command script of one run of ``job`` (`rpaccel.runtime.Accelerator.job`):
    reset, the CSR writes each read back, the model load by the loader (with ``check``,
    a refused load of 0 beats and a refused engine map first), the queries, every
    register read at the end, the error status cleared and read again.
    ``reset_mid_beats``: a first session of that many query beats (the model loaded, then
    a reset mid-query) before everything else."""
    regs = job["regs"]
    cmds = []

    def setup(checked):
        cmds.extend([(Op.RESET, 0, 0), (Op.READ, regs["ID"], 0)])
        for addr, value in job["csr"]:
            cmds.append((Op.WRITE, addr, value))
            if checked:
                cmds.append((Op.READ, addr, 0))
        if checked and check:
            cmds.extend([(Op.WRITE, regs["LOAD_BEATS"], 0), (Op.WRITE, regs["LOAD_CTRL"], 0),
                     (Op.READ, regs["ERR_CAUSE"], 0), (Op.WRITE, regs["CTRL"], 1)])
            # an engine map leaving every stage without an engine: refused, the map stays
            cmds.extend([(Op.WRITE, regs["ENGINE_MAP"], 0xFF), (Op.READ, regs["ERR_CAUSE"], 0),
                         (Op.READ, regs["ENGINE_MAP"], 0), (Op.WRITE, regs["CTRL"], 1)])
        cmds.append((Op.MARK, 0, 0))
        for addr, n, ctrl in job["loads"]:
            cmds.extend([(Op.WRITE, regs["LOAD_ADDR"], addr), (Op.WRITE, regs["LOAD_BEATS"], n),
                         (Op.WRITE, regs["LOAD_CTRL"], ctrl), (Op.POLL, regs["LOAD_STATUS"], 1)])
            if checked:
                cmds.append((Op.READ, regs["LOAD_DONE"], 0))
        cmds.append((Op.MARK, 0, 1))
        if checked:
            cmds.append((Op.READ, regs["ERR_CAUSE"], 0))

    if reset_mid_beats:
        setup(False)
        cmds += [(Op.LIMIT, 0, reset_mid_beats), (Op.WAITC, 0, 3000), (Op.RESET, 0, 0),
                 (Op.SEEK, 0, 0), (Op.LIMIT, 0, 0)]
    setup(True)
    cmds += [(Op.LIMIT, 0, beats), (Op.WAITR, 0, answered), (Op.WAITC, 0, drain)]
    for name, addr in regs.items():
        if name != "CTRL":
            cmds.append((Op.READ, addr, 0))
    cmds += [(Op.WRITE, regs["CTRL"], 1), *((Op.READ, regs[n], 0) for n in CLEARED),
             (Op.END, 0, 0)]
    return cmds


def _dram_hex(image: bytes, word_bytes: int) -> str:
    n = -(-len(image) // word_bytes)
    image = image + bytes(n * word_bytes - len(image))
    words = [image[i:i + word_bytes][::-1].hex() for i in range(0, len(image), word_bytes)]
    return f"{n}\n" + "\n".join(words) + "\n"


def run_native(nb: NativeBuild, job: dict, run_dir, idle: float = 0.0,
               backpressure: float = 0.0, dram_stall: float = 0.0, seed: int = 1,
               reset_mid: bool = False, check: bool = True, timeout_cycles: int | None = None,
               bus_error: tuple | None = None) -> dict:
    """Run ``job`` on the native testbench; returns the metrics of `rpaccel.sim.tb_top`
    (``answers``, ``errors``, ``latency``, ``total_cycles``, ``counters``, ``status_ok``,
    ``mixed_flags``, ``load_cycles``) plus ``cycles`` (simulated), ``seconds`` (wall),
    ``load_ok``, ``bus_errors`` (the log's ``E`` lines) and ``line_reads`` (AR handshakes
    per AXI port, loader bursts on port 0 included).

    ``idle``, ``backpressure``, ``dram_stall``: probabilities per cycle (in steps of 1/1000).
    ``bus_error``: ``(lo, hi)`` byte addresses, bursts starting there answer SLVERR; or
    ``(lo, hi, n, skip)``: only ``n`` such bursts after the first ``skip`` do (a
    transient error).
    """
    from amaranth.hdl import Shape

    cfg = nb.config
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    query_l, result_l = top_layouts(cfg)
    pack = beat_packer(query_l)
    queries = job["queries"]
    lines, heads, n = [], [], 0
    answered = [q for q in queries if not q["dropped"]]
    for q in queries:
        if not q["dropped"]:
            heads.append(n)
        for b in q["beats"]:
            lines.append(f"{pack(b):x}")
        n += len(q["beats"])
    (run_dir / "query.hex").write_text(f"{n}\n" + "\n".join(lines) + "\n")
    (run_dir / "dram.hex").write_text(_dram_hex(job["dram"], nb.ports["axi__rdata"][1] // 8))
    half = len(queries[0]["beats"]) // 2 if reset_mid and queries else 0
    cmds = script(job, len(answered), n, check, half)
    (run_dir / "cmd.txt").write_text(f"{len(cmds)}\n" +
                                     "".join(f"{o} {a} {d}\n" for o, a, d in cmds))
    timeout = timeout_cycles or 2_000_000 * max(1, len(queries)) + 10_000_000
    args = [str(nb.binary), f"+idle={round(idle * 1000)}", f"+bp={round(backpressure * 1000)}",
            f"+stall={round(dram_stall * 1000)}", f"+seed={seed & 0xFFFFFFFF or 1}",
            f"+max_cycles={timeout}"]
    if bus_error:
        args += [f"+err_lo={bus_error[0]}", f"+err_hi={bus_error[1]}"]
        if len(bus_error) > 2:
            args += [f"+err_n={bus_error[2]}", f"+err_skip={bus_error[3]}"]
    t0 = time.perf_counter()
    with open(run_dir / "sim.log", "w") as f:
        proc = subprocess.run(args, cwd=run_dir, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    out = (run_dir / "out.txt").read_text().splitlines() if (run_dir / "out.txt").exists() \
        else []
    if proc.returncode != 0 or not out or out[-1][0] not in "XT":
        raise NativeError(f"native testbench failed (exit {proc.returncode}); log: "
                          f"{run_dir / 'sim.log'}")
    starts, reads, marks, errs, line_reads = {}, [], {}, [], []
    answers, errors, ends, current, cur_err, mixed = [], [], [], [], [], 0
    id_f, score_f = result_l["id"], result_l["score"]
    last_off, err_off = result_l["last"].offset, result_l["error"].offset
    id_mask = (1 << Shape.cast(id_f.shape).width) - 1
    sw = Shape.cast(score_f.shape).width
    end_cycle, timed_out = 0, False
    for line in out:
        tag, *rest = line.split()
        if tag == "Q":
            starts[int(rest[0])] = int(rest[1])
        elif tag == "A":
            cycle, bits = int(rest[0]), int(rest[1], 16)
            score = (bits >> score_f.offset) & ((1 << sw) - 1)
            score -= (score >> (sw - 1)) << sw
            current.append(((bits >> id_f.offset) & id_mask, score))
            cur_err.append((bits >> err_off) & 1)
            if (bits >> last_off) & 1:
                answers.append(current)
                errors.append(all(cur_err))
                mixed += any(cur_err) and not all(cur_err)
                ends.append(cycle)
                current, cur_err = [], []
        elif tag == "R":
            reads.append((int(rest[0]), int(rest[1]), int(rest[2])))
        elif tag == "M":
            marks[int(rest[0])] = int(rest[1])
        elif tag == "E":
            errs.append(line)
        elif tag == "L":
            line_reads.append(int(rest[1]))
        elif tag in "XT":
            end_cycle, timed_out = int(rest[0]), tag == "T"
    if timed_out:
        raise NativeError(f"native testbench timed out after {end_cycle} cycles with "
                          f"{len(answers)} of {len(answered)} answers; log: "
                          f"{run_dir / 'out.txt'}")
    regs = job["regs"]
    # the reads in script order: the ID, the CSR write-backs, refused-load cause, each
    # load's LOAD_DONE, the cause after the load, the counters, the status after the clear
    it = iter(reads)
    if reset_mid:
        next(it)
    load_ok = next(it)[1] == ID_VALUE
    for _addr, value in job["csr"]:
        load_ok &= next(it)[1] == value
    if check:
        load_ok &= next(it)[1] == ErrCause.LOAD_REFUSED
        load_ok &= next(it)[1] == ErrCause.ENGINE_MAP
        load_ok &= next(it)[1] == dict(job["csr"])[regs["ENGINE_MAP"]]
    load_done = [next(it)[1] for _ in job["loads"]]
    load_ok &= load_done == [n for _, n, _ in job["loads"]]
    cause_after_load = next(it)[1]
    load_ok &= cause_after_load == ErrCause.NONE or bool(bus_error)
    counters = {}
    for name in regs:
        if name != "CTRL":
            counters[name.lower()] = next(it)[1]
    cleared = 0
    for _ in CLEARED:
        cleared |= next(it)[1]
    status_ok = error_status_ok(queries, counters, cleared, bool(bus_error))
    start = [starts.get(h, 0) for h in heads]
    latency = [e - s for s, e in zip(start, ends, strict=False)]
    return {"answers": answers, "errors": errors, "latency": latency,
            "total_cycles": (ends[-1] - start[0]) if ends else 0, "counters": counters,
            "status_ok": bool(status_ok), "mixed_flags": mixed,
            "load_cycles": marks.get(1, 0) - marks.get(0, 0), "load_ok": bool(load_ok),
            "cause_after_load": cause_after_load, "bus_errors": errs, "cycles": end_cycle,
            "line_reads": line_reads,
            "seconds": seconds}


def error_status_ok(queries, counters: dict, cleared: int = 0, bus_error: bool = False) -> bool:
    """Whether the error status read at the end of a run is right: ``ERR_CAUSE`` (and
    for an out-of-range id ``ERR_ID`` / ``ERR_WHERE``) names the first fault among
    ``queries`` (none without faults, unless DRAM was told to answer errors), and
    ``cleared``, the `CLEARED` registers ORed after the clear through ``CTRL``, is 0."""
    bad = [q["bad"] for q in queries if q["bad"]]
    if bad:
        first = bad[0]
        ok = counters["err_cause"] == first["cause"]
        if first["cause"] in (ErrCause.ID_RANGE, ErrCause.LOOKUP_BUS):
            ok &= (counters["err_id"] == first["id"] and
                   counters["err_where"] == err_where(first.get("stage", 0), first["table"]))
    else:
        ok = counters["err_cause"] == ErrCause.NONE or bus_error
    return bool(ok and cleared == 0)


def problems(job: dict, metrics: dict, limit: int = 5) -> list:
    """What is wrong with a run of ``job`` (empty when it is right), each message naming
    the query and printing expected vs actual: an answer that differs from golden (ids,
    scores, order), a missing or partial error flag, a wrong error status or model load."""
    queries = [q for q in job["queries"] if not q["dropped"]]
    out = []
    answers, errors = metrics["answers"], metrics["errors"]
    if len(answers) != len(queries):
        out.append(f"{len(answers)} of {len(queries)} queries answered")
    for i, (q, a, e) in enumerate(zip(queries, answers, errors, strict=False)):
        if q["bad"] and q["bad"].get("flagged", True):
            if not e:
                out.append(f"query {i} (fault {q['bad']['fault']!r}): error flag missing")
        elif e or [tuple(x) for x in q["expect"]] != [tuple(x) for x in a]:
            out.append(f"query {i} mismatch (error flag {int(e)})\n  expected "
                       f"{q['expect']!r}\n  actual   {a!r}")
    if metrics["mixed_flags"]:
        out.append(f"{metrics['mixed_flags']} answers flagged on some beats only")
    if not metrics["status_ok"]:
        out.append(f"error status wrong: {metrics['counters']}")
    if not metrics.get("load_ok", True):
        out.append("model load: a register read back wrong or a load was short")
    if metrics.get("bus_errors"):
        out.append("testbench: " + "; ".join(metrics["bus_errors"][:3]))
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])
