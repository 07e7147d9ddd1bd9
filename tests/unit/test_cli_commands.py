"""The CLI imports only the module of the command typed, and its table names every command."""

from __future__ import annotations

import argparse
import subprocess
import sys

from app.cli import MODULE_OF_COMMAND, build_parser


def commands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


def test_the_table_names_every_command_and_no_other() -> None:
    assert commands(build_parser([])) == set(MODULE_OF_COMMAND)


def test_a_typed_command_registers_itself_and_its_module_mates() -> None:
    for command, module in MODULE_OF_COMMAND.items():
        registered = commands(build_parser([command]))
        assert command in registered
        assert registered == {c for c, m in MODULE_OF_COMMAND.items() if m == module}


def test_a_wrong_command_gets_the_whole_list() -> None:
    registered = commands(build_parser(["stauts"]))
    assert registered == set(MODULE_OF_COMMAND)


def test_status_and_settings_do_not_import_the_daemon() -> None:
    script = (
        "import sys; from app.cli import build_parser; "
        "build_parser([sys.argv[1]]); "
        "print(sorted(m for m in ('aiohttp', 'docker', 'authlib') if m in sys.modules))"
    )
    for command in ("status", "ports", "settings"):
        done = subprocess.run(
            [sys.executable, "-c", script, command], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "[]", f"hostnet {command} imported {done.stdout.strip()}"
