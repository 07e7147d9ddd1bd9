"""The settings store: read the effective settings, and change the user's file safely.

Changes are checked before anything is written: known key, user-settable, right type, not
locked by the administrator. (The sign-in rule is not the store's: every change goes through
``app.settings_writer``, which asks ``app.policy.sign_in`` first.) The write re-reads the
file under an flock (so two writers do not lose each other's changes), keeps unknown keys,
drops known keys whose values were bad (a copy of the bad file is kept beside it), and
replaces the file atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.paths import Paths, admin_settings_path, user_paths
from app.settings.admin import AdminSettings, read_admin_settings
from app.settings.atomic import remove_stale_temps, write_atomically
from app.settings.effective import EffectiveSettings, combine
from app.settings.errors import (
    ReadOnlySettingError,
    SettingLockedError,
    SettingsWriteError,
    SettingValueError,
    UnknownSettingError,
)
from app.settings.jsonfile import dump_json
from app.settings.migrate import file_version
from app.settings.problems import Problem
from app.settings.schema import current_version, resolve_key, specs
from app.settings.user_store import UserSettings, read_user_settings
from app.settings.validate import example_text, value_error
from app.settings.vm_options import BACKEND, OPTIONS, vm_options_problem

ChangeGuard = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class SettingsChange:
    """New effective settings, the keys whose value or source changed, and whether any of
    them needs the daemon to restart."""

    effective: EffectiveSettings
    changed: tuple[str, ...]
    restart_required: bool
    problems_changed: bool = False
    files: tuple[Path, ...] = ()  # for the watcher: which watched files changed


class SettingsStore:
    def __init__(
        self,
        paths: Paths | None = None,
        *,
        admin_file: Path | None = None,
    ) -> None:
        self.paths = paths if paths is not None else user_paths()
        self.user_file = self.paths.settings_file
        self.admin_file = admin_file if admin_file is not None else admin_settings_path()

    # reading

    def read_user(self, *, keep_copy: bool = True) -> UserSettings:
        return read_user_settings(self.user_file, keep_copy=keep_copy)

    def read_admin(self) -> AdminSettings:
        return read_admin_settings(self.admin_file)

    def load(self) -> EffectiveSettings:
        return combine(self.read_user(), self.read_admin())

    # changing

    def set(self, key: str, value: Any) -> SettingsChange:
        return self.update({key: value})

    def update(
        self, changes: Mapping[str, Any], *, guard: ChangeGuard | None = None
    ) -> SettingsChange:
        """Check then write every change at once; nothing is written if any is refused.

        GUARD sees the checked changes (canonical keys) before anything is written and may
        refuse them by raising a SettingsError."""
        admin = self.read_admin()
        before = combine(self.read_user(), admin)
        resolved: dict[str, Any] = {}
        for name, value in changes.items():
            key = self.check(name, value, admin=admin)
            resolved[key] = value
        _check_vm_options(resolved, before)
        if guard is not None:
            guard(resolved)
        # a value equal to the admin's lock is accepted but not written
        writes = {k: v for k, v in resolved.items() if admin.locked(k) is None}

        def apply(document: dict[str, Any]) -> None:
            document.update(writes)

        if writes:
            self._rewrite(apply)
        after = combine(self.read_user(), admin)
        changed = after.changed_keys(before)
        return SettingsChange(after, changed, after.restart_required_since(before))

    def reset(self, key: str) -> SettingsChange:
        """Remove the user's value for KEY, so the admin's default or the schema's applies."""
        admin = self.read_admin()
        canonical = self._known(key)
        self._refuse_if_locked(canonical, admin)
        before = combine(self.read_user(), admin)
        self._rewrite(lambda document: document.pop(canonical, None))
        after = combine(self.read_user(), admin)
        return SettingsChange(
            after, after.changed_keys(before), after.restart_required_since(before)
        )

    def check(self, name: str, value: Any, *, admin: AdminSettings | None = None) -> str:
        """The canonical key if NAME may be set to VALUE; raises a SettingsError otherwise."""
        key = self._known(name)
        spec = specs()[key]
        if spec.read_only:
            raise ReadOnlySettingError(
                Problem(key, "hostnet manages this key itself.", "Leave it as it is.")
            )
        if spec.admin_only:
            raise ReadOnlySettingError(
                Problem(
                    key,
                    "only an administrator can set this.",
                    f"Ask your administrator to set it in {self.admin_file}.",
                )
            )
        error = value_error(spec, value)
        if error is not None:
            raise SettingValueError(
                Problem(
                    key,
                    f"{error}.",
                    f"Example: `hostnet settings set {key} {example_text(spec)}`.",
                )
            )
        admin = admin if admin is not None else self.read_admin()
        entry = admin.locked(key)
        if entry is not None and not _same(entry.value, value):
            self._refuse_if_locked(key, admin)
        return key

    def _known(self, name: str) -> str:
        key = resolve_key(name)
        if key is None:
            import difflib

            close = difflib.get_close_matches(name, list(specs()), n=1)
            hint = f"Did you mean {close[0]}? " if close else ""
            raise UnknownSettingError(
                Problem(
                    None,
                    f"there is no setting called {name!r}.",
                    f"{hint}`hostnet settings list` shows them all.",
                )
            )
        return key

    def _refuse_if_locked(self, key: str, admin: AdminSettings) -> None:
        entry = admin.locked(key)
        if entry is None:
            return
        raise SettingLockedError(
            Problem(
                key,
                f"locked by your administrator (to {json.dumps(entry.value)}, in {admin.path}).",
                "Ask your administrator if it needs to change.",
            )
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        folder = self.user_file.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.user_file.with_name(self.user_file.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _rewrite(self, edit: Any) -> None:
        try:
            with self._locked():
                current = self.read_user()
                document = {k: v for k, v in current.document.items() if k not in current.bad_keys}
                edit(document)
                version = file_version(document)
                document["SettingsVersion"] = max(current_version(), version or 0)
                write_atomically(self.user_file, dump_json(document))
                remove_stale_temps(self.user_file)
        except OSError as exc:
            raise SettingsWriteError(
                Problem(
                    None,
                    f"cannot write {self.user_file} ({exc.strerror}).",
                    f"Check that {self.user_file.parent} exists and you can write to it.",
                    self.user_file,
                )
            ) from None


def _check_vm_options(changes: Mapping[str, Any], before: EffectiveSettings) -> None:
    """VmOptions must fit the backend that will read them (see vm_options)."""
    if OPTIONS not in changes and BACKEND not in changes:
        return
    backend = changes.get(BACKEND, before[BACKEND])
    problem = vm_options_problem(
        backend,
        changes.get(OPTIONS, before[OPTIONS]),
        key=OPTIONS if OPTIONS in changes else BACKEND,
    )
    if problem is not None:
        raise SettingValueError(problem)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
