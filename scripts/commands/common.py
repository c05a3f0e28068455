"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["models_dir", "console", "emit", "int_list"]


def models_dir(arg) -> Path:
    """``--models``, else ``$RPACCEL_MODELS``, else ``build/models``."""
    return Path(arg or os.environ.get("RPACCEL_MODELS", Path("build") / "models"))


def console():
    """A rich console (130 columns when the output is not a terminal)."""
    from rich.console import Console

    # tables need about 120 columns; a pipe or a CI log would otherwise get 80
    return Console() if sys.stdout.isatty() else Console(width=130)


def emit(obj, as_json: bool, table=None) -> None:
    """Print ``obj`` as JSON, or ``table`` (a rich table) when not ``as_json``."""
    if as_json or table is None:
        print(json.dumps(obj, indent=2))
    else:
        console().print(table)


def int_list(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers, not {text!r}") from None
