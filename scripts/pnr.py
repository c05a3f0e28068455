"""nextpnr's placers and routers the flows offer, and Yosys' classic LUT mapping (no HDL
imports: the CLI's parsers use them)."""

__all__ = ["PLACERS", "ROUTERS", "CLASSIC_LUT_MAP", "check_flow"]

#: Yosys' classic ABC LUT mapper, run between ``synth_ecp5 -run :map_luts`` and
#: ``synth_ecp5 -run map_cells:`` in place of synth_ecp5's ABC9, on which YoWASP Yosys 0.70
#: trips an internal assert (ABC_OPS_REINTEGRATE) for some designs (the whole fpga-ecp5
#: board among them).
CLASSIC_LUT_MAP = "techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean"

#: nextpnr's placers (analytic HeAP, electrostatic) and routers.
PLACERS = ("heap", "static")
ROUTERS = ("router1", "router2")


def check_flow(placer: str, router: str) -> None:
    """Raise ValueError naming ``placer`` or ``router`` if nextpnr has no such one."""
    if router not in ROUTERS:
        raise ValueError(f"router must be 'router1' or 'router2', not {router!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be 'heap' or 'static', not {placer!r}")
