"""nextpnr's placers and routers the flows offer (no HDL imports: the CLI's parsers use
them)."""

__all__ = ["PLACERS", "ROUTERS", "check_flow"]

#: nextpnr's placers (analytic HeAP, electrostatic) and routers.
PLACERS = ("heap", "static")
ROUTERS = ("router1", "router2")


def check_flow(placer: str, router: str) -> None:
    """Raise ValueError naming ``placer`` or ``router`` if nextpnr has no such one."""
    if router not in ROUTERS:
        raise ValueError(f"router must be 'router1' or 'router2', not {router!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be 'heap' or 'static', not {placer!r}")
