"""The ``rpaccel`` command line: dispatch to one module per command
(`rpaccel.scripts.commands`)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..config import ConfigError
from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpaccel", description="The RPAccel kit: golden "
                                "models, RTL generator, verification, synthesis, performance.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..golden.model import BatchError, ModelError

    try:
        return args.func(args)
    except (ConfigError, ModelError, BatchError, FileNotFoundError, ValueError) as e:
        print(f"rpaccel {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
