"""Read the user's settings-store.json: migrate it, check every key, keep what is good."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings.jsonfile import BadJson, keep_bad_copy, parse_json
from app.settings.migrate import migrate
from app.settings.problems import Problem
from app.settings.schema import SettingSpec, specs
from app.settings.validate import example_text, value_error


@dataclass
class UserSettings:
    """The user file as read.

    ``document`` is everything the file holds after migration, unknown keys included: what a
    write starts from. ``values`` holds only the known keys whose values are good: what
    takes effect. ``bad_keys`` are known keys with bad values; they fall back to their
    defaults and a write drops them (the file's copy beside it keeps them).
    """

    path: Path
    exists: bool = False
    document: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    bad_keys: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    migration_notes: list[str] = field(default_factory=list)
    bad_copy: Path | None = None


def _set_command(spec: SettingSpec) -> str:
    return f"`hostnet settings set {spec.key} {example_text(spec)}`"


def read_user_settings(path: Path, *, keep_copy: bool = True) -> UserSettings:
    result = UserSettings(path=path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    except OSError as exc:
        result.exists = True
        result.problems.append(
            Problem(
                None,
                f"cannot read the settings file ({exc.strerror}); using the defaults.",
                f"Check that {path} is a file you can read.",
                path,
            )
        )
        return result
    result.exists = True

    def copy_note() -> str:
        if keep_copy and result.bad_copy is None:
            result.bad_copy = keep_bad_copy(path, data)
        return f" A copy of the file is in {result.bad_copy}." if result.bad_copy else ""

    try:
        raw = parse_json(data)
    except BadJson as exc:
        note = copy_note()
        result.problems.append(
            Problem(
                None,
                f"{exc}; using the defaults.{note}",
                "Fix the file by hand, or set any value with `hostnet settings set` to "
                "write a fresh file.",
                path,
            )
        )
        return result
    if not isinstance(raw, dict):
        note = copy_note()
        result.problems.append(
            Problem(
                None,
                f"the file holds a JSON {type(raw).__name__}, not an object; "
                f"using the defaults.{note}",
                'The file must look like {"HostNetworkingEnabled": true}. '
                "Set any value with `hostnet settings set` to write a fresh file.",
                path,
            )
        )
        return result

    migration = migrate(raw)
    result.document = migration.document
    result.migration_notes = migration.notes
    if migration.newer:
        result.problems.append(
            Problem(
                "SettingsVersion",
                f"the file was written by a newer hostnet (version {migration.from_version}); "
                "keys this version knows are used, the rest are kept untouched.",
                "Update hostnet to use every setting in the file.",
                path,
            )
        )

    bad: list[tuple[SettingSpec, str]] = []
    for key, spec in specs().items():
        if key not in migration.document:
            continue
        value = migration.document[key]
        if spec.admin_only:
            result.problems.append(
                Problem(
                    key,
                    "only an administrator can set this; the value in your file is ignored.",
                    f"Remove {key} from {path}; ask your administrator to set it in "
                    "admin-settings.json.",
                    path,
                )
            )
            continue
        error = value_error(spec, value)
        if error is None:
            result.values[key] = value
        else:
            bad.append((spec, error))
    if bad:
        note = copy_note()
        for spec, error in bad:
            result.bad_keys.add(spec.key)
            result.problems.append(
                Problem(
                    spec.key,
                    f"{error}; using the default, {_show(spec.default)}.{note}",
                    f"Set it with {_set_command(spec)}.",
                    path,
                )
            )
    return result


def _show(value: Any) -> str:
    return json.dumps(value)
