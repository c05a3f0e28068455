"""Verilator lint of generated designs, as a gate.

``verilator --lint-only -Wall`` with the style warnings of generated Verilog waived in
``sim/lint.vlt`` (each waiver says why); any other warning fails: undriven or multiply
driven bits, latches, overlapping case arms, constant comparisons.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import RPAccelConfig
from .runner import BUILD_ROOT, tool_env, which

__all__ = ["WAIVERS", "LintWarning", "lint_verilog", "lint_block"]

WAIVERS = Path(__file__).with_name("lint.vlt")
_LINE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: ([^:]+):(\d+):(?:\d+:)? (.*)$")


@dataclass(frozen=True)
class LintWarning:
    """One Verilator message: ``rule`` (e.g. ``"UNDRIVEN"``), where, and what."""

    rule: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.file}:{self.line}: {self.message}"


def lint_verilog(path, top: str, waivers: Path | None = WAIVERS) -> list[LintWarning]:
    """Lint one Verilog file; returns the warnings left after ``waivers``.

    Raises
    ------
    RuntimeError
        When Verilator is missing or reports an error (not a warning).
    """
    exe = which("verilator")
    if exe is None:
        raise RuntimeError("verilator not found: install the project (make setup) first")
    cmd = [exe, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top]
    if waivers is not None:
        cmd.append(str(waivers))
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, env=tool_env())
    found, errors = [], []
    for ln in proc.stderr.splitlines():
        m = _LINE.match(ln)
        if not m:
            continue
        kind, rule, file, line, msg = m.groups()
        (errors if kind == "Error" else found).append(
            LintWarning(rule or "ERROR", Path(file).name, int(line), msg.strip()))
    if errors or proc.returncode != 0:
        first = errors[0] if errors else proc.stderr.strip().splitlines()[-1:]
        raise RuntimeError(f"verilator lint of {path} failed: {first}")
    return found


def lint_block(block: str, config: RPAccelConfig) -> dict:
    """Generate ``block`` for ``config`` (`rpaccel.blocks.BLOCKS`) into ``build/lint/``
    and lint it: ``{"block", "config", "warnings", "counts"}``."""
    from ..blocks import get_block
    from ..hw import to_verilog

    spec = get_block(block)
    out = BUILD_ROOT / "lint" / f"{block}-{config.name}-{config.digest()}"
    out.mkdir(parents=True, exist_ok=True)
    vpath = out / f"{block}.v"
    vpath.write_text(to_verilog(spec.build(config), config, block))
    warnings = lint_verilog(vpath, block)
    counts: dict[str, int] = {}
    for w in warnings:
        counts[w.rule] = counts.get(w.rule, 0) + 1
    return {"block": block, "config": config.name, "verilog": str(vpath),
            "warnings": [asdict(w) for w in warnings], "counts": counts}
