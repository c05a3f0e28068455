"""Mutation testing of the RTL (``rpaccel mutate``, ``make mutate``).

A mutant is the kit with one small change in one block's Amaranth source: a comparison
or arithmetic operator swapped, an integer constant moved by one, the arms of a ``Mux``
swapped, a ``sync`` or ``comb`` assignment dropped, an assignment's value stuck at 0, an
``If`` / ``Elif`` condition inverted, a ``~`` removed. Only code that describes hardware
is mutated (``elaborate`` and the functions that take the module ``m``), outside
declarations (the arguments of ``Signal``, ``range``, shapes, memories, FIFOs and
elaboration-time arithmetic such as ``ceil_log2``: a wider signal is the same hardware in
behaviour, a narrower one differs only at the extremes of a parameter, and loop bounds
only add or drop generated copies). Each mutant lives in its own copy of the source tree
(the ``rpaccel`` package laid out as installed, with the tests beside it), where

1. the block is elaborated and converted on its probe configurations: a mutant that does
   not elaborate is *invalid* (no hardware to test), one whose netlists equal the
   original's on every probe is *equivalent* (identical hardware);
2. otherwise the block's tests run on it (its fast Amaranth-simulator tests, its formal
   proofs, the Verilator tests it has): a failing test *kills* the mutant, a run past its
   time limit counts as killed too (*timeout*), passing tests let it *survive*.

A survivor whose behaviour at the ports is the original's under the block's documented
contract (the netlist differs, the function does not) is listed in `ARGUED` with the
argument and counted as *argued*, like an equivalent one. The score of a block is
killed / (killed + survived) over its first ``per_block`` valid, non-equivalent, not argued
mutants in a seeded random order. The runs go through the Dask runner of
the regression (`rpaccel.sim.regress.map_tasks`): a local cluster or a scheduler.
"""

from __future__ import annotations

import ast
import datetime
import functools
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .runner import REPO_ROOT

__all__ = ["Target", "TARGETS", "ARGUED", "argued", "argued_key", "Mutant", "mutants", "apply",
           "run_mutant", "mutate", "netlist_digest", "verdict_keys"]


@dataclass(frozen=True)
class Target:
    """A block under mutation.

    Attributes
    ----------
    block : str
        Name in the report.
    source : str
        Its source file, relative to the repository.
    tests : tuple of str
        pytest arguments that run its tests (one ``-k`` at most: pytest keeps the last).
    probes : tuple of str
        Python expressions building the block on the configurations its tests use
        (evaluated with ``get_config`` and the block's module in scope).
    """

    block: str
    source: str
    tests: tuple
    probes: tuple


def _cfg(name, **kw):
    kws = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    return f"get_config({name!r})" + (f".replace(name='probe', {kws})" if kw else "")


#: The blocks and their tests (`docs/verification.md` lists the scores).
TARGETS = {t.block: t for t in (
    Target("requant", "hw/requant.py",
           ("tests/test_requant.py", "-k", "not icarus and not waves"),
           ("RequantUnit(get_config('default'), lanes=1)",
            "RequantUnit(get_config('default'), lanes=4)")),
    Target("array", "hw/array.py", ("tests/test_array.py",),
           ("Mesh(get_config('default'))",
            "Mesh(" + _cfg("three-stage") + ")")),
    Target("issue_sequencer", "hw/issue_sequencer.py", ("tests/test_issue_sequencer.py",),
           ("IssueSequencer(" + _cfg("default", array_rows=4, sub_batch=8, max_width=64,
                                      weight_rows=256) + ", 8)",)),
    Target("weight_loader", "hw/weight_loader.py", ("tests/test_weight_loader.py",),
           ("WeightLoader(" + _cfg("default", sub_batch=8, max_width=64, weight_rows=256)
            + ", 8)",)),
    Target("output_path", "hw/output_path.py", ("tests/test_output_path.py",),
           ("OutputPath(" + _cfg("default", sub_batch=8, max_width=64, weight_rows=256)
            + ", 8)",
            "OutputPath(" + _cfg("default", sub_batch=8, max_width=64, weight_rows=256,
                                 block=2, partitions=4) + ", 8)")),
    Target("interaction", "hw/interaction.py", ("tests/test_interaction.py",),
           ("InteractionUnit(get_config('default'), 8, 16)",
            "InteractionUnit(" + _cfg("default", inter_pairs=4) + ", 8, 16)",
            "InteractionUnit(" + _cfg("three-stage", inter_pairs=2, inter_slots=2,
                                      inter_banks=4, max_pairs=256) + ", 16, 24)")),
    Target("topk", "hw/topk.py",
           ("tests/test_topk.py", "tests/test_formal.py", "-k", "queue and not verilator"),
           ("TopK(" + _cfg("default", topk_lanes=1, topk_k=3) + ")",
            "TopK(" + _cfg("default", topk_lanes=2, topk_k=3) + ")")),
    Target("topk_heap", "hw/topk_heap.py",
           ("tests/test_topk.py", "tests/test_formal.py", "-k", "heap and not verilator"),
           ("TopKHeap(" + _cfg("default", topk_lanes=1, topk_k=3, topk_impl="heap") + ")",
            "TopKHeap(" + _cfg("default", topk_lanes=2, topk_k=3, topk_impl="heap") + ")")),
    Target("approx_filter", "hw/approx_filter.py", ("tests/test_approx_filter.py",),
           ("ApproxFilter(get_config('default'))",
            "ApproxFilter(" + _cfg("default", topk_lanes=4) + ")")),
    Target("front_end", "hw/front_end.py",
           ("tests/test_front_end.py", "tests/test_formal.py", "-k", "front_end"),
           ("QueryFrontEnd(" + _cfg("default", sub_batch=4, max_items=16, cand_beats=8,
                                     topk_k=16) + ")",)),
    Target("replay", "hw/replay.py",
           ("tests/test_replay.py", "tests/test_formal.py", "-k", "replay"),
           ("ReplayUnit(" + _cfg("three-stage", sub_batch=4, max_items=16, cand_beats=8,
                                  topk_k=16) + ", 1)",
            "ReplayUnit(" + _cfg("three-stage", sub_batch=4, max_items=16, cand_beats=8,
                                  topk_k=16) + ", 2)")),
    Target("stage", "hw/stage.py",
           ("tests/test_stage_controller.py", "tests/test_formal.py", "-k", "controller"),
           ("StageController(get_config('default'), 0)",)),
    Target("bus", "hw/bus.py",
           ("tests/test_bus.py", "tests/test_formal.py", "-k", "bus or arbiter or csr"),
           ("AxiReadArbiter(3, 32, 64, 2)",
            "CsrBank(__import__('rpaccel.interface', fromlist=['csr_regs'])"
            ".csr_regs(get_config('default')))")),
    Target("dispatch", "hw/dispatch.py",
           ("tests/test_dispatch.py", "tests/test_formal.py", "-k", "dispatch or crossbar"),
           ("EngineCrossbar(" + _cfg("default", block=2, partitions=4, engines=4,
                                     sub_batch=4) + ")",)),
    Target("loader", "hw/loader.py",
           ("tests/test_loader.py", "tests/test_formal.py", "-k", "loader"),
           ("ModelLoader(get_config('default'), [235, 300, 64], 2)",)),
    Target("embedding", "hw/embedding.py",
           ("tests/test_embedding.py", "tests/test_formal.py", "tests/test_native.py", "-k",
            "verilator or embedding or lookup_bus"),
           ("EmbeddingUnit(get_config('default'))",)),
    Target("mlp_engine", "hw/mlp_engine.py",
           ("tests/test_engine.py", "-k", "verilator and not four"),
           ("ComputeEngine(get_config('default'))",)),
    Target("top", "hw/top.py",
           ("tests/test_native.py", "-k", "default_real or lookup_bus or load_bus"),
           ("RPAccel(get_config('default'))",)),
)}

#: Survivors argued equivalent: the same behaviour at every port under the block's
#: documented contract, though the netlist differs (`docs/verification.md` gives each
#: argument). Keyed by `argued_key`; not scored.
ARGUED = {
    ("requant", "lo_bits = 17", "17 -> 16", 18):
        "the split point of (acc + bias) * mult into two partial products: (p_hi << L) + p_lo is "
        "the same exact product for any L",
    ("requant", "with m.If(Mux(fits2[j], rounded[j] > hi, ~neg2[j])):",
     "Gt -> GtE in rounded[j] > hi", 40):
        "a value equal to the upper bound saturates to itself",
    ("requant", "with m.Elif(Mux(fits2[j], rounded[j] < lo, neg2[j])):",
     "Lt -> LtE in rounded[j] < lo", 42):
        "a value equal to the lower bound saturates to itself",
    ("requant", "with m.Elif(relu[-1] & Mux(fits2[j], rounded[j] < 0, neg2[j])):", "0 -> 1",
     66):
        "ReLU of 0 is 0 either way",
    ("array", "m.d.sync += self.out[p].valid.eq(0)", "m.d.sync += self.out[p].valid.eq(0)", 16):
        "a slot in use gets its valid from the last row every enabled cycle, and one not in use "
        "keeps the reset 0: the default differs only if the mode changes while an output is held,"
        " which the engine never does (mode changes while drained)",
    ("interaction",
     "m.d.sync += [buf.eq(merged[8 * A:]), fill.eq(new_fill - A),",
     "Sub -> Add in new_fill - A", 61):
        "fill has log2(A) + 1 bits (A, the lanes, a power of two): new_fill - A and new_fill + A "
        "are equal modulo 2A",
    ("interaction", "if F == 2:", "2 -> 1", 16):
        "the general rule for the words landed per cycle gives 2 with two memories too (2 "
        "unpacked, min(2, 2**pack) = 2 packed): the special case only skips its logic",
    ("interaction", "if F == 2:", "2 -> 3", 16):
        "as 2 -> 1: with two memories the general rule lands 2 words a cycle as the constant "
        "does",
    ("interaction", "if Q > 1:", "Gt -> GtE in Q > 1", 19):
        "with one slot nothing sets narrow (it stays at its reset 0), so Mux(narrow, ..., "
        "keep) is keep: the condition only skips the multiplexer",
    ("interaction", 'm.d.sync += [land["v"].eq((wk < fidx + c) & (wk < total)),',
     "Lt -> LtE in wk < fidx + c", 43):
        "the extra word fidx + c lands with the wrong data in its memory and address, and "
        "its own read lands it there again the next cycle, before the file counts as full; "
        "in an item's last read cycle wk < total masks it",
    ("interaction",
     "m.d.comb += go_on.eq((e_new <= A) & full[~e_bank] & (item + 1 != self.items))",
     "Add -> Sub in item + 1", 61):
        "after the last item's last operation no register file is full (the reader has "
        "stopped and handed both back), so go_on is 0 with or without the item test",
    ("interaction",
     "m.d.sync += acc[L].eq(Mux(narrow, sums[L // Q][L % Q], wide) if Q > 1 else wide)",
     "1 -> 0", 84):
        "with one slot nothing sets narrow (it stays at its reset 0), so Mux(narrow, ..., "
        "wide) is wide",
    ("interaction", "rq.i.valid.eq(s2_v & ~s2.copy)]", "BitAnd -> BitOr in s2_v & ~s2.copy", 35):
        "the pair requantizer never stalls (o.ready is 1) and its result is taken by the tag "
        "line exactly LATENCY cycles after s2_v: extra valid cycles requantize held "
        "accumulators nobody takes",
    ("front_end", "items = Mux(left > sub_batch, sub_batch, left)",
     "Gt -> GtE in left > sub_batch", 16):
        "at left == sub_batch both give sub_batch items",
    ("front_end", "(bag + ends >= self.tables if G > 1", "1 -> 0", 75):
        "emb_units > 0 takes the several-unit rule for one unit too, where ends is the beat's "
        "last bit, 1 inside this If: bag + 1 >= tables is bag == tables - 1 for bag < tables",
    ("topk", "rest = Const(0, 1)", "1 -> 2", 28):
        "the width of the constant 0 that starts an OR of 1-bit terms",
    ("topk", "a_wins = ~(vb > va)", "Gt -> GtE in vb > va", 23):
        "equal {key, valid} words are the same (id, score) or two invalid heads (a queue fills "
        "from its head, so nothing valid is behind an invalid head): either pick gives the same "
        "answer",
    ("topk_heap", "j[1:] if l > 1 else 0)),", "0 -> 1", 65):
        "level 1 of the heap has one row: its write address has no bits, so 1 truncates to the "
        "same empty address",
    ("topk_heap", "h.op_x.eq(Mux(popping, (1 << ew) - 1, in_x[q]))]", "1 -> 2", 57):
        "op_x is ew bits wide: (2 << ew) - 1 truncates to the same all-ones word",
    ("approx_filter", "with m.Elif(shifted >= nbins - 1):", "1 -> 0", 43):
        "at shifted == nbins - 1 the clamp and the pass-through give the same bin",
    ("front_end", "sub_end.eq(0), qbad.eq(0), padding.eq(0),", "0 -> 1", 44):
        "sub_end is not read before RUN sets it (cand + items) for the first sub-batch",
    ("topk_heap", "return Mux(v < 0, 0, v)[:len(stacks[0].raddr)]", "Lt -> LtE in v < 0",
     23):
        "clamping at 0: v == 0 gives 0 either way",
    ("approx_filter", "with m.If(n_items < k):", "Lt -> LtE in n_items < k", 26):
        "at n_items == k the total to emit is k either way",
    ("output_path", "off_max = (1 << len(otag.off)) - 1", "1 -> 0", 41):
        "off has log2(A) bits: with off_max = A no lane is at or past it, and every lane takes "
        "j >= off, which is true for the last lane (A - 1) whatever off is: the same enables",
    ("loader", "a.arburst.eq(1), a.arid.eq(0),", "0 -> 1", 48):
        "every request of the loader carries the same AXI ID, whichever it is: its R "
        "beats come back in order for one ID and the loader does not read rid",
}


def _code_line(source: str, line: int) -> str:
    lines = (REPO_ROOT / source).read_text().splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def argued_key(row: dict) -> tuple:
    """``(block, source line, change, column)`` of a mutant's row: what `ARGUED` is keyed
    by (the column tells apart equal changes on one line)."""
    cols = _columns((REPO_ROOT / row["source"]).read_text())
    return (row["block"], _code_line(row["source"], row["line"]), row["change"],
            cols[row["index"]])


@functools.lru_cache(maxsize=32)
def _columns(text: str) -> tuple:
    return tuple(node.col_offset for node, _, _ in _sites(ast.parse(text)))


def argued(row: dict) -> str | None:
    """The equivalence argument for a surviving mutant's row, if `ARGUED` holds one."""
    return ARGUED.get(argued_key(row))


_CMP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
        ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
        ast.BitXor: ast.BitOr, ast.LShift: ast.RShift, ast.RShift: ast.LShift}


@dataclass(frozen=True)
class Mutant:
    """One mutant: site ``index`` (in `_sites` order) of ``target``'s source."""

    block: str
    source: str
    index: int
    line: int
    kind: str
    change: str


def _hdl_functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            args = [a.arg for a in node.args.args]
            if node.name == "elaborate" or "m" in args[:2]:
                yield node


#: Calls whose arguments declare structure, not logic (widths, depths, shapes, loop
#: bounds, elaboration-time arithmetic): not mutated.
_DECLARATIONS = {"Signal", "like", "range", "unsigned", "signed", "Shape", "Memory",
                 "ArrayLayout", "StructLayout", "SyncFIFO", "SyncFIFOBuffered", "exact_log2",
                 "ceil_log2", "bits_for", "enumerate", "zip", "len", "max", "min"}


def _call_name(node) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _sites(tree) -> list:
    """``(node, kind, variant)`` of every mutation site, in a fixed order."""
    out, seen = [], set()
    for fn in _hdl_functions(tree):
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and _call_name(node) in _DECLARATIONS:
                seen.update(id(n) for n in ast.walk(node))
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and \
                    type(node.ops[0]) in _CMP:
                out.append((node, "compare", 0))
            elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
                out.append((node, "operator", 0))
            elif isinstance(node, ast.Constant) and type(node.value) is int:
                out.append((node, "constant", +1))
                if node.value > 0:
                    out.append((node, "constant", -1))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "Mux" and len(node.args) == 3:
                out.append((node, "mux", 0))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("If", "Elif") and len(node.args) == 1:
                out.append((node, "condition", 0))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
                out.append((node, "invert", 0))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "eq" and len(node.args) == 1 and \
                    not isinstance(node.args[0], ast.Constant):
                out.append((node, "stuck-0", 0))
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Attribute) \
                    and node.target.attr in ("sync", "comb"):
                out.append((node, f"drop-{node.target.attr}", 0))
    return out


def _describe(node, kind, variant) -> str:
    text = ast.unparse(node)
    if len(text) > 70:
        text = text[:67] + "..."
    if kind == "constant":
        return f"{node.value} -> {node.value + variant}"
    if kind == "compare":
        return f"{type(node.ops[0]).__name__} -> {_CMP[type(node.ops[0])].__name__} in {text}"
    if kind == "operator":
        return f"{type(node.op).__name__} -> {_BIN[type(node.op)].__name__} in {text}"
    return text


def mutants(target: Target) -> list:
    """Every mutant of ``target``'s source."""
    src = (REPO_ROOT / target.source).read_text()
    return [Mutant(target.block, target.source, i, node.lineno, kind,
                   _describe(node, kind, variant))
            for i, (node, kind, variant) in enumerate(_sites(ast.parse(src)))]


class _Apply(ast.NodeTransformer):
    def __init__(self, node, kind, variant):
        self.node, self.kind, self.variant = node, kind, variant

    def visit(self, node):
        if node is not self.node:
            return super().visit(node)
        k = self.kind
        if k == "compare":
            node.ops = [_CMP[type(node.ops[0])]()]
        elif k == "operator":
            node.op = _BIN[type(node.op)]()
        elif k == "constant":
            node.value += self.variant
        elif k == "mux":
            node.args = [node.args[0], node.args[2], node.args[1]]
        elif k == "condition":
            node.args = [ast.UnaryOp(ast.Invert(), node.args[0])]
        elif k == "invert":
            return node.operand
        elif k.startswith("drop-"):
            return ast.Pass()
        elif k == "stuck-0":
            node.args = [ast.Constant(0)]
        return node


def apply(source: str, index: int) -> str:
    """``source`` with mutation site ``index`` applied."""
    tree = ast.parse(source)
    node, kind, variant = _sites(tree)[index]
    tree = ast.fix_missing_locations(_Apply(node, kind, variant).visit(tree))
    return ast.unparse(tree) + "\n"


_PACKAGES = {"rpaccel": "rpaccel", "rpaccel/hw": "hw", "rpaccel/golden": "golden",
             "rpaccel/sim": "sim", "rpaccel/scripts": "scripts"}


def make_tree(dest: Path) -> Path:
    """A copy of the sources laid out as the installed ``rpaccel`` package, with the
    tests and the pytest configuration beside it (importable with ``dest`` on the path)."""
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for inside, repo in _PACKAGES.items():
        target = dest / inside
        target.mkdir(parents=True, exist_ok=True)
        for f in (REPO_ROOT / repo).iterdir():
            if f.is_file() and not f.name.endswith(".pyc"):
                shutil.copy2(f, target / f.name)
            elif f.is_dir() and f.name == "commands":
                shutil.copytree(f, target / f.name, ignore=ignore)
    shutil.copytree(REPO_ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(REPO_ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _src_path(tree: Path, source: str) -> Path:
    top, name = source.split("/", 1)
    inside = next(k for k, v in _PACKAGES.items() if v == top)
    return tree / inside / name


def netlist_digest(block: str) -> str:
    """Hash of ``block``'s netlists on its probe configurations (RTLIL without source
    locations), as the importable ``rpaccel`` builds them."""
    import importlib

    from amaranth import Signal, Value
    from amaranth.back import rtlil

    from ..config import get_config

    target = TARGETS[block]
    mod = importlib.import_module("rpaccel." + target.source[:-3].replace("/", "."))
    scope = {**vars(mod), "get_config": get_config}
    h = hashlib.sha256()
    for probe in target.probes:
        comp = eval(probe, scope)  # noqa: S307 (the kit's own expressions)
        # every port but the constant ones (an always-ready stream's ready)
        ports = [Value.cast(v) for _, _, v in comp.signature.flatten(comp)]
        text = rtlil.convert(comp, ports=[v for v in ports if isinstance(v, Signal)])
        h.update(re.sub(r"^\s*attribute \\src .*$", "", text, flags=re.M).encode())
    return h.hexdigest()


def _env(tree: Path, models: str) -> dict:
    env = dict(os.environ)
    path = [str(tree), *filter(None, [env.get("PYTHONPATH")])]
    env.update({"PYTHONPATH": os.pathsep.join(path), "RPACCEL_BUILD": str(tree / "build"),
                "RPACCEL_MODELS": models, "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def _digest_in(tree: Path, block: str, models: str, timeout: float) -> str | None:
    code = f"from rpaccel.sim.mutate import netlist_digest; print(netlist_digest({block!r}))"
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=tree, env=_env(tree, models),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return p.stdout.split()[-1] if p.returncode == 0 and p.stdout.split() else None


def _pytest(tree: Path, target: Target, models: str, timeout: float) -> tuple:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:xdist", *target.tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=_env(tree, models), capture_output=True,
                           text=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        rc = None
    return rc, out, time.perf_counter() - t0


def run_mutant(mutant: Mutant | None, block: str, work: str, models: str,
               reference: str | None, timeout: float) -> dict:
    """Build ``mutant``'s tree in ``work`` (``None``: the unmutated kit), classify it and
    run its block's tests; returns its report row (``status``: killed, survived, timeout,
    invalid, equivalent; for ``None``: baseline, with the digest and the tests' time)."""
    target = TARGETS[block]
    name = f"{block}-{mutant.index}" if mutant else f"{block}-baseline"
    tree = make_tree(Path(work) / name)
    row = asdict(mutant) if mutant else {"block": block}
    t0 = time.perf_counter()
    if mutant is not None:
        path = _src_path(tree, mutant.source)
        path.write_text(apply(path.read_text(), mutant.index))
    digest = _digest_in(tree, block, models, timeout)
    if mutant is None:
        rc, out, secs = _pytest(tree, target, models, timeout)
        row.update(status="baseline", digest=digest, passed=rc == 0, test_seconds=secs,
                   tail=out[-2000:] if rc != 0 else "")
    elif digest is None:
        row.update(status="invalid")
    elif digest == reference:
        row.update(status="equivalent")
    else:
        rc, out, secs = _pytest(tree, target, models, timeout)
        status = "timeout" if rc is None else "survived" if rc == 0 else "killed"
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
        row.update(status=status, test_seconds=round(secs, 1), killed_by=failed[:3])
    row["seconds"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(tree, ignore_errors=True)
    return row


def sample(target: Target, seed: int) -> list:
    """``target``'s mutants in a seeded random order (the prefix property: a larger run
    starts with a smaller run's mutants)."""
    ms = mutants(target)
    random.Random(f"{seed}:{target.block}").shuffle(ms)
    return ms


def _digest(files, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in files:
        path = REPO_ROOT / f
        h.update(f.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return h.hexdigest()[:16]


def verdict_keys(target: Target) -> tuple:
    """``(source key, tests key)``: digests of what a mutant's verdict depends on besides
    the mutation, the block's source (which fixes the mutants) and the test files it
    names with ``tests/conftest.py`` and its pytest arguments."""
    tests = ["tests/conftest.py", *(a for a in target.tests if a.endswith(".py"))]
    return _digest([target.source]), _digest(tests, " ".join(target.tests))


def _cached(cache: Path | None, keys: dict) -> dict:
    """Verdicts in ``cache`` still valid: same source and tests, or same source and not a
    survivor (tests are only ever added to: a mutant once killed stays killed). The
    unmutated run (index -1) holds while source and tests are the same."""
    rows = {}
    if cache is not None and cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line) if line.strip() else None
            if r is None or r["block"] not in keys:
                continue
            src, tests = keys[r["block"]]
            if r.get("source_key") == src and (r.get("tests_key") == tests or r["status"]
                                               not in ("survived", "baseline")):
                rows[(r["block"], r["index"])] = r
    return rows


def mutate(blocks=None, per_block: int = 30, seed: int = 0, scheduler: str | None = None,
           workers: int | None = None, models_dir=None, work=None, out=None,
           spare: float = 0.4, cache=None, fresh: bool = False, cached_only: bool = False,
           log=print) -> dict:
    """Run the mutants of ``blocks`` (all `TARGETS` by default) and gather the report.

    Each block first runs its tests unmutated (they must pass; their time sets the
    limit, four times it plus 30 s). Then ``per_block`` mutants and ``spare`` more in
    case some are invalid or equivalent; the score counts the first ``per_block`` valid,
    non-equivalent ones in sample order. Each verdict is appended to the JSON-lines file
    ``cache`` (default ``work``/results.jsonl) as it arrives, under the block's
    `verdict_keys`: a run that stops part-way resumes where it was; a changed source runs
    the block's mutants again, changed tests its survivors (``fresh``: run everything).
    ``cached_only``: run nothing, report what the cache holds (``pending`` per block
    counts the sampled mutants without a verdict).
    """
    from .regress import map_tasks
    from .runner import BUILD_ROOT

    blocks = list(blocks or TARGETS)
    for b in blocks:
        if b not in TARGETS:
            raise ValueError(f"block must be one of {sorted(TARGETS)}, not {b!r}")
    models = str(Path(models_dir or BUILD_ROOT / "models").resolve())
    work = str(Path(work or BUILD_ROOT / "mutate").resolve())
    t0 = time.perf_counter()
    cache = Path(cache) if cache else Path(work) / "results.jsonl"
    keys = {b: verdict_keys(TARGETS[b]) for b in blocks}
    done = {} if fresh else _cached(cache, keys)
    picked = {b: sample(TARGETS[b], seed)[:round(per_block * (1 + spare))] for b in blocks}
    # a block whose sampled verdicts are all cached is not run again (its tests passed
    # unmutated when they were made: the baseline is cached beside them)
    todo = [] if cached_only else [
        b for b in blocks if fresh or (b, -1) not in done
        or any((b, mt.index) not in done for mt in picked[b])]
    ran_base, _ = map_tasks(run_mutant, [(None, b, work, models, None, 3600) for b in todo],
                            scheduler, workers, unit="block", desc="baseline")
    base = {b: done.get((b, -1), {"passed": True, "digest": "", "test_seconds": 0})
            for b in blocks if b not in todo}
    base.update({r["block"]: r for r in ran_base})
    for b in todo:
        log(f"mutate: {b}: tests pass unmutated in {base[b]['test_seconds']:.0f} s"
            if base[b]["passed"] else f"mutate: {b}: tests fail unmutated")
    broken = [b for b in blocks if not base[b]["passed"] or base[b]["digest"] is None]
    for b in broken:
        log(f"mutate: {b}: the unmutated tests fail or do not elaborate:\n{base[b]['tail']}")
    cache.parent.mkdir(parents=True, exist_ok=True)

    def record(r):
        r["source_key"], r["tests_key"] = keys[r["block"]]
        with cache.open("a") as f:
            f.write(json.dumps(r) + "\n")

    for b in todo:
        if b not in broken:
            record(dict(base[b], index=-1))
    tasks, rows = [], []
    for b in blocks:
        if b in broken:
            continue
        limit = 4 * base[b]["test_seconds"] + 30
        for mt in picked[b]:
            if (b, mt.index) in done:
                rows.append(done[(b, mt.index)])
            elif not cached_only:
                tasks.append((mt, b, work, models, base[b]["digest"], limit))
    log(f"mutate: {len(tasks)} mutants of {len(blocks) - len(broken)} blocks to run, "
        f"{len(rows)} from {cache}, seed {seed}")

    def show(r):
        record(r)
        if r["status"] == "survived":
            log(f"mutate: {r['block']} #{r['index']} survived: line {r['line']} {r['kind']}: "
                f"{r['change']}")

    ran, nworkers = map_tasks(run_mutant, tasks, scheduler, workers, on_result=show,
                              unit="mutant", desc="mutants")
    rows += ran
    per = {}
    for b in blocks:
        order = {mt.index: i for i, mt in enumerate(sample(TARGETS[b], seed))}
        mine = sorted((r for r in rows if r["block"] == b), key=lambda r: order[r["index"]])
        for r in mine:
            why = argued(r) if r["status"] in ("survived", "argued") else None
            if why:
                r.update(status="argued", argument=why)
        scored = [r for r in mine if r["status"] in ("killed", "survived", "timeout")]
        scored = scored[:per_block]
        last = order[scored[-1]["index"]] if scored else -1
        shown = [r for r in mine if order[r["index"]] <= last]
        killed = sum(r["status"] in ("killed", "timeout") for r in scored)
        per[b] = {
            "source": TARGETS[b].source, "tests": list(TARGETS[b].tests),
            "sites": len(order), "baseline_test_seconds": round(base[b].get("test_seconds", 0), 1),
            "scored": len(scored), "killed": killed,
            "survived": sum(r["status"] == "survived" for r in scored),
            "timeout": sum(r["status"] == "timeout" for r in scored),
            "invalid": sum(r["status"] == "invalid" for r in shown),
            "equivalent": sum(r["status"] == "equivalent" for r in shown),
            "argued": sum(r["status"] == "argued" for r in shown),
            "score": round(killed / len(scored), 3) if scored else None,
            "pending": len({mt.index for mt in picked[b]} - {r["index"] for r in mine})
                       if len(scored) < per_block else 0,
            "survivors": [r for r in scored if r["status"] == "survived"],
            "mutants": shown}
    report = {"date": datetime.date.today().isoformat(), "host": platform.node(),
              "python": platform.python_version(), "seed": seed, "per_block": per_block,
              "workers": nworkers, "scheduler": scheduler or f"local cluster ({nworkers})",
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "resumed": len(rows) - len(ran), "broken": broken, "blocks": per}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report
