"""Read admin-settings.json, Docker Desktop's Settings Management shape.

``{"configurationFileVersion": 2, "<key>": {"locked": bool, "value": ...}, ...}``. A locked
value wins over the user's and cannot be changed; an unlocked one is the user's default.
Keys hostnet does not know (Docker has many) are ignored. Docker's camelCase spellings are
accepted.

A broken admin file is treated as strictly as is safe:

- unreadable, not JSON, not an object, or an unknown ``configurationFileVersion``: no entry is
  trusted, ``problems`` says why, and the policy gate refuses host networking until the file
  is fixed (the administrator's intent is unknown, so we do not guess it is permissive);
- one malformed entry (no ``locked`` boolean, or a bad ``value``): the other entries apply,
  that key is locked at its default (the user cannot change it), and the gate refuses.

Changes the user makes to keys with no readable lock stay possible: turning things off is
always safe, and the gate still refuses while the admin file is broken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings.jsonfile import BadJson, parse_json
from app.settings.problems import Problem
from app.settings.schema import SettingSpec, resolve_key, specs
from app.settings.validate import value_error

SUPPORTED_VERSIONS = (1, 2)
ADMIN_FIX = "Host networking stays refused until it is fixed. Ask your administrator to fix {path}."


@dataclass(frozen=True)
class AdminEntry:
    key: str
    locked: bool
    value: Any
    malformed: bool = False


@dataclass
class AdminSettings:
    path: Path
    exists: bool = False
    entries: dict[str, AdminEntry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def broken(self) -> bool:
        return bool(self.problems)

    def locked(self, key: str) -> AdminEntry | None:
        entry = self.entries.get(key)
        return entry if entry is not None and entry.locked else None


def _problem(path: Path, key: str | None, message: str) -> Problem:
    return Problem(
        key,
        message,
        ADMIN_FIX.format(path=path),
        path,
    )


def read_admin_settings(path: Path) -> AdminSettings:
    result = AdminSettings(path=path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return result
    except OSError as exc:
        result.exists = True
        result.problems.append(_problem(path, None, f"it cannot be read ({exc.strerror})."))
        return result
    result.exists = True
    try:
        raw = parse_json(data)
    except BadJson as exc:
        result.problems.append(_problem(path, None, f"{exc}."))
        return result
    if not isinstance(raw, dict):
        result.problems.append(_problem(path, None, "it does not hold a JSON object."))
        return result
    version = raw.get("configurationFileVersion")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        result.problems.append(
            _problem(
                path,
                "configurationFileVersion",
                f"configurationFileVersion is {version!r}; hostnet understands "
                f"{' or '.join(map(str, SUPPORTED_VERSIONS))}.",
            )
        )
        return result

    table = specs()
    for name, entry in raw.items():
        if name == "configurationFileVersion":
            continue
        key = resolve_key(name)
        if key is None:
            continue  # a Docker Desktop setting hostnet does not use
        spec = table[key]
        if spec.read_only:
            continue
        error: str | None = None
        if not isinstance(entry, dict):
            error = f'the entry is not an object like {{"locked": true, "value": {_example(spec)}}}'
        elif not isinstance(entry.get("locked"), bool):
            error = '"locked" must be true or false'
        elif "value" not in entry:
            error = '"value" is missing'
        else:
            error = value_error(spec, entry["value"])
        if error is not None:
            result.entries[key] = AdminEntry(key, True, spec.default, malformed=True)
            result.problems.append(
                _problem(path, key, f"{name}: {error}; it is locked at {_example_default(spec)}.")
            )
            continue
        assert isinstance(entry, dict)
        result.entries[key] = AdminEntry(key, bool(entry["locked"]), entry["value"])
    return result


def _example(spec: SettingSpec) -> str:
    return json.dumps(spec.example)


def _example_default(spec: SettingSpec) -> str:
    return "its default, " + json.dumps(spec.default)
