"""``hostnet agent``: run the guest agent (normally inside the VM, as root)."""

from __future__ import annotations

import argparse

from vm.agent.__main__ import add_arguments, run_agent


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run the guest agent (inside the VM)",
        description="Run the hostnet guest agent: reports the VM's listeners to the daemon, "
        "serves streams to them and mirrors the host's listeners.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_agent)
