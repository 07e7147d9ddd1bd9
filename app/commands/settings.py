"""``hostnet settings list|get|set|reset``: read and change the user's settings.

Problems found in the settings files (bad JSON, a bad value, a broken admin file) go to
stderr on every call; the command still answers with the defaults for what is bad. Changes go
through the settings writer: to the running daemon, which applies them at once, or to the
file when no daemon runs.
Exit status: 0 done, 2 bad key or value, 3 locked by the administrator, 4 sign-in needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from app.settings.effective import EffectiveSettings
from app.settings.errors import SettingValueError
from app.settings.parse import parse_value
from app.settings.problems import Problem
from app.settings.schema import resolve_key, specs
from app.settings.store import SettingsStore
from app.settings_writer import SettingsWriter, Written

SOURCE_LABELS = {
    "default": "default",
    "user": "user",
    "admin-default": "admin default",
    "admin-locked": "locked by admin",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "settings",
        help="show or change settings",
        description="Show or change hostnet's settings (settings-store.json).",
    )
    actions = parser.add_subparsers(dest="settings_action", metavar="ACTION", required=True)

    list_parser = actions.add_parser("list", help="every setting, its value and its source")
    list_parser.add_argument("--json", action="store_true", help="print JSON")

    get_parser = actions.add_parser("get", help="one setting's value")
    get_parser.add_argument("key", metavar="KEY")
    get_parser.add_argument("--json", action="store_true", help="print JSON with its source")

    set_parser = actions.add_parser(
        "set",
        help="change a setting",
        description="Change a setting. Booleans: true/false/on/off/1/0; lists: JSON or "
        "comma-separated (22,8000-8010); objects: JSON.",
    )
    set_parser.add_argument("key", metavar="KEY")
    set_parser.add_argument("value", metavar="VALUE")
    set_parser.add_argument(
        "more",
        nargs="*",
        metavar="KEY VALUE",
        help="more pairs, written together (VmBackend attach VmOptions '{...}')",
    )

    reset_parser = actions.add_parser(
        "reset", help="forget your value for a setting (back to the default)"
    )
    reset_parser.add_argument("key", metavar="KEY")

    parser.set_defaults(func=run)


def run(args: argparse.Namespace, store: SettingsStore | None = None) -> int:
    store = store if store is not None else SettingsStore()
    if args.settings_action == "list":
        return _list(store, as_json=args.json)
    if args.settings_action == "get":
        return _get(store, args.key, as_json=args.json)
    if args.settings_action == "set":
        return _set(store, [args.key, args.value, *args.more])
    if args.settings_action == "reset":
        return _reset(store, args.key)
    raise AssertionError(f"unknown settings action {args.settings_action!r}")


def _print_problems(effective: EffectiveSettings, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    for problem in effective.problems:
        print(f"hostnet: warning: {problem}", file=stream)


def _print_new_problems(before: EffectiveSettings, after: Written) -> None:
    for problem in map(Problem.from_json, after.problems):
        if problem not in before.problems:
            print(f"hostnet: warning: {problem}", file=sys.stderr)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _list(store: SettingsStore, *, as_json: bool) -> int:
    effective = store.load()
    _print_problems(effective)
    if as_json:
        print(json.dumps(effective.to_json(), indent=2))
        return 0
    rows = [
        (key, _show(entry.value), SOURCE_LABELS[entry.source])
        for key, entry in effective.entries.items()
    ]
    key_width = max(len(row[0]) for row in rows)
    value_width = min(max(len(row[1]) for row in rows), 40)
    for key, value, source in rows:
        print(f"{key:<{key_width}}  {value:<{value_width}}  {source}")
    return 0


def _canonical(name: str, store: SettingsStore) -> str:
    key = resolve_key(name)
    if key is None:
        store.check(name, None)  # raises UnknownSettingError with a suggestion
        raise AssertionError("unreachable")
    return key


def _get(store: SettingsStore, name: str, *, as_json: bool) -> int:
    key = _canonical(name, store)
    effective = store.load()
    _print_problems(effective)
    entry = effective.entry(key)
    if as_json:
        spec = specs()[key]
        out = {
            "key": key,
            **entry.to_json(),
            "default": spec.default,
            "description": spec.description,
            "restart_required": spec.restart_required,
        }
        print(json.dumps(out, indent=2))
    else:
        print(_show(entry.value))
    return 0


def _set(store: SettingsStore, words: list[str]) -> int:
    """Set one or more KEY VALUE pairs in one write: all are checked first."""
    if len(words) % 2:
        raise SettingValueError(
            Problem(None, f"{words[-1]!r} has no value.", "Give each KEY a VALUE after it.")
        )
    changes: dict[str, Any] = {}
    for name, text in zip(words[::2], words[1::2], strict=True):
        key = _canonical(name, store)
        changes[key] = parse_value(specs()[key], text)
    before = store.load()
    _print_problems(before)  # what the write is about to drop or fix, said first
    written = SettingsWriter(store).update(changes)
    _print_new_problems(before, written)
    note = " (needs a daemon restart to take effect)" if written.restart_required else ""
    for key in changes:
        entry = written.entry(key)
        locked = " (already the value your administrator locked)" if entry["locked"] else ""
        print(f"{key} = {_show(entry['value'])}{locked or note}")
    return 0


def _reset(store: SettingsStore, name: str) -> int:
    key = _canonical(name, store)
    before = store.load()
    _print_problems(before)
    written = SettingsWriter(store).reset(key)
    _print_new_problems(before, written)
    entry = written.entry(key)
    print(f"{key} = {_show(entry['value'])} ({SOURCE_LABELS[entry['source']]})")
    return 0
