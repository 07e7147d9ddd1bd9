"""The ``hostnet`` command: one subcommand per module in ``app.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning the exit status.

Only the module of the command typed is imported: the daemon's modules (aiohttp, the
docker SDK) took a second to import, and ``hostnet settings get`` or ``hostnet status``
paid it on every run. The whole table is built for ``--help``, no command or a wrong one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.errors import HostnetError

MODULE_OF_COMMAND = {
    "forward": "forward",
    "daemon": "daemon",
    "status": "status",
    "ports": "status",
    "vm": "vm",
    "settings": "settings",
    "login": "login",
    "logout": "login",
    "whoami": "login",
    "agent": "agent",
    "docker-env": "docker_env",
}
"""Which module registers each command (tests/unit/test_cli_commands.py checks it)."""
COMMAND_MODULES = tuple(dict.fromkeys(MODULE_OF_COMMAND.values()))


def _name_each_command(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command parser records its own name ("hostnet vm up") for error messages."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(command_name=sub.prog)
                _name_each_command(sub)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: its command's module only when the first word names one."""
    parser = argparse.ArgumentParser(
        prog="hostnet",
        description="Host networking for a Linux VM. With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"hostnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    words = list(sys.argv[1:] if argv is None else argv)
    typed = MODULE_OF_COMMAND.get(words[0]) if words else None
    for name in (typed,) if typed is not None else COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(subparsers)
    _name_each_command(parser)
    return parser


# A reader that went away (``hostnet status | head -3``) ends a command the way it ends
# cat or grep: quietly, with the status a shell reports for a death by SIGPIPE.
EXIT_CLOSED_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a broken socket to the daemon or the VM is a real error
        _discard_stdout()
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        return 130


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    if args.command is None:
        from app.commands.gui import run_gui

        return int(run_gui())
    try:
        return int(args.func(args))
    except HostnetError as exc:
        report(getattr(args, "command_name", "hostnet"), exc)
        return exc.exit_code


def report(command_name: str, error: HostnetError) -> None:
    """The CLI's one place that turns an error into words: the problem, then the fix."""
    print(f"{command_name}: {error.problem}", file=sys.stderr)
    if error.fix and error.fix not in error.problem:
        print(error.fix, file=sys.stderr)


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe or socket whose reading end is closed."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
