"""The ``hostnet`` command: one subcommand per module in ``app.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from proxy import __version__

COMMAND_MODULES = (
    "forward",
    "daemon",
    "status",
    "vm",
    "settings",
    "login",
    "agent",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostnet",
        description="Host networking for a Linux VM. With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"hostnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"app.commands.{name}":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.commands.gui import run_gui

        return int(run_gui())
    try:
        status = int(args.func(args))
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
