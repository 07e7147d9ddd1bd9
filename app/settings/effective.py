"""The settings in effect: each key's value and where it came from.

Precedence: an admin lock, then the user's file, then an unlocked admin value (the admin's
default), then the schema's default. Admin-only keys (SignInRequired) come only from the
admin file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.policy.gate import Decision, GateSetting, Source, evaluate
from app.settings.admin import AdminSettings
from app.settings.problems import Problem
from app.settings.schema import specs
from app.settings.user_store import UserSettings


@dataclass(frozen=True)
class EffectiveValue:
    key: str
    value: Any
    source: Source
    origin: Path | None  # the file the value came from; None for a schema default

    @property
    def locked(self) -> bool:
        return self.source == "admin-locked"

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "source": self.source,
            "origin": str(self.origin) if self.origin else None,
            "locked": self.locked,
        }


@dataclass(frozen=True)
class EffectiveSettings(Mapping[str, Any]):
    """A read-only mapping of key to value, with sources, problems and the gate."""

    entries: Mapping[str, EffectiveValue]
    problems: tuple[Problem, ...]
    user_file: Path
    admin_file: Path
    admin_problems: tuple[Problem, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.entries[key].value

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, key: str) -> EffectiveValue:
        return self.entries[key]

    def source(self, key: str) -> Source:
        return self.entries[key].source

    def locked(self, key: str) -> bool:
        return self.entries[key].locked

    def values_only(self) -> dict[str, Any]:
        return {key: entry.value for key, entry in self.entries.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": {key: entry.to_json() for key, entry in self.entries.items()},
            "problems": [problem.to_json() for problem in self.problems],
            "user_file": str(self.user_file),
            "admin_file": str(self.admin_file),
        }

    def gate_settings(self) -> dict[str, GateSetting]:
        return {
            key: GateSetting(entry.value, entry.source, str(entry.origin) if entry.origin else None)
            for key, entry in self.entries.items()
        }

    def gate(self, *, signed_in: bool) -> Decision:
        """The policy gate's answer for these settings."""
        return evaluate(
            self.gate_settings(),
            signed_in=signed_in,
            admin_problems=tuple(f"{p.message}" for p in self.admin_problems),
            admin_location=str(self.admin_file),
        )

    def changed_keys(self, other: EffectiveSettings) -> tuple[str, ...]:
        """Keys whose value or source differs between OTHER (before) and self (after)."""
        keys = list(self.entries) + [k for k in other.entries if k not in self.entries]
        return tuple(key for key in keys if self._differs(other, key))

    def _differs(self, other: EffectiveSettings, key: str) -> bool:
        if key not in self.entries or key not in other.entries:
            return True
        mine, theirs = self.entries[key], other.entries[key]
        if type(mine.value) is not type(theirs.value) or mine.value != theirs.value:
            return True
        # SettingsVersion moving from "default" to "user" on the first write is no change
        return key != "SettingsVersion" and mine != theirs

    def restart_required_since(self, before: EffectiveSettings) -> bool:
        """True when a key that needs a daemon restart has a different value than BEFORE."""
        return any(
            spec.restart_required and (key not in before.entries or before[key] != self[key])
            for key, spec in specs().items()
            if key in self.entries
        )


def combine(user: UserSettings, admin: AdminSettings) -> EffectiveSettings:
    entries: dict[str, EffectiveValue] = {}
    for key, spec in specs().items():
        admin_entry = admin.entries.get(key)
        if admin_entry is not None and (admin_entry.locked or spec.admin_only):
            source: Source = "admin-locked" if admin_entry.locked else "admin-default"
            entries[key] = EffectiveValue(key, admin_entry.value, source, admin.path)
        elif key in user.values and not spec.admin_only:
            entries[key] = EffectiveValue(key, user.values[key], "user", user.path)
        elif admin_entry is not None:
            entries[key] = EffectiveValue(key, admin_entry.value, "admin-default", admin.path)
        else:
            entries[key] = EffectiveValue(key, spec.default, "default", None)
    return EffectiveSettings(
        entries=entries,
        problems=tuple(admin.problems) + tuple(user.problems),
        user_file=user.path,
        admin_file=admin.path,
        admin_problems=tuple(admin.problems),
    )
