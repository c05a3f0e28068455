"""The block registry: every block that can be generated, linted, verified and
synthesized on its own, in one place.

`rpaccel generate`, `rpaccel lint`, `rpaccel verify`, `rpaccel synth` and the demo read
`BLOCKS`; a block is added here and nowhere else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .config import RPAccelConfig

__all__ = ["Block", "BLOCKS", "get_block"]


@dataclass(frozen=True)
class Block:
    """One block of the kit.

    Attributes
    ----------
    name : str
        The name on the command line and of the generated Verilog module.
    component : str
        ``module:callable`` building the block's Component from an `RPAccelConfig`.
    description : str
        What it is, one line.
    testbench : str or None
        The cocotb testbench module run against golden (`rpaccel verify`), if any.
    stimulus : str
        What that testbench drives (shown by the demo).
    synth : dict
        Defaults of `rpaccel synth` for the block (``config``, ``target``, ``freq_mhz``,
        ``router``).
    """

    name: str
    component: str
    description: str
    testbench: str | None = None
    stimulus: str = ""
    synth: dict = field(default_factory=lambda: dict(SYNTH_DEFAULTS))

    def build(self, config: RPAccelConfig):
        """The block's Component for ``config``."""
        module, attr = self.component.split(":")
        return getattr(importlib.import_module(module), attr)(config)


#: `rpaccel synth` defaults: the FPGA config on the ECP5-85F, a high nextpnr target so the
#: report shows the achievable fmax, nextpnr's default router.
SYNTH_DEFAULTS = {"config": "fpga-ecp5", "target": "ecp5-85f", "freq_mhz": 200.0,
                  "router": "router1"}

BLOCKS: dict[str, Block] = {b.name: b for b in (
    Block("rpaccel", "rpaccel.hw.top:RPAccel",
          "the whole accelerator: CSRs, loader, front end, stages, replay, top-k, AXI"),
    Block("rpaccel_axis", "rpaccel.hw.axis:RPAccelAxis",
          "the whole accelerator with AXI4-Stream query / result ports (tkeep, tlast)"),
    Block("requant", "rpaccel.hw.requant:RequantUnit",
          "int32 -> int8 requantizer (bias, multiplier, shift, ReLU, saturation)",
          "rpaccel.sim.tb_requant", "random beats x 4 lanes (every field over its range)"),
    Block("topk", "rpaccel.hw.topk:make_topk", "top-k unit (queue or heap, by config)",
          "rpaccel.sim.tb_topk",
          "queries: random/equal/sorted/tied scores, N around k, back to back"),
    Block("approx_filter", "rpaccel.hw.approx_filter:ApproxFilter",
          "approximate top-k filter (score histogram threshold)", "rpaccel.sim.tb_approx",
          "queries through the histogram filter"),
    Block("mesh", "rpaccel.hw.array:Mesh", "reconfigurable int8 systolic array",
          "rpaccel.sim.tb_array",
          "8x8 array as 1 and 2 partitions, weight tiles swapped in flight"),
    Block("engine", "rpaccel.hw.mlp_engine:ComputeEngine",
          "the array with one MLP engine per partition slot", "rpaccel.sim.tb_engine",
          "random MLPs (K/N tiling) on both partitions at once"),
    Block("embedding", "rpaccel.hw.emb_cluster:make_embedding",
          "embedding unit (a cluster of emb_units units, by config): static + dynamic "
          "caches, AXI4 reads, pooling",
          "rpaccel.sim.tb_embedding",
          "Zipf bags, static + dynamic cache, AXI RAM (cocotbext-axi) with random stalls, "
          "a bad id; counters == golden cache model"),
)}


def get_block(name: str, *, testbench: bool = False, param: str = "block") -> Block:
    """The registered block ``name`` (with ``testbench``: one that has a testbench).

    Raises
    ------
    ValueError
        Naming ``param`` (the argument it came from) and the blocks there are.
    """
    names = sorted(n for n, b in BLOCKS.items() if b.testbench or not testbench)
    if name not in names:
        raise ValueError(f"{param} must be one of {names}, not {name!r}")
    return BLOCKS[name]
