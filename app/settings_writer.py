"""The one way settings change, and the sign-in rule applied on the way.

When a daemon runs, a change goes through its control API: the daemon writes the file and
applies the change once, before it answers, so ``hostnet status`` is right the moment the
command returns. With no daemon, the change goes to the store here. Both paths call
``checked_update``, which asks the sign-in rule (``app.policy.sign_in``) before the store
writes anything; a sign-in or sign-out is told the same way (``sign_in_changed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from app.control_client import ControlClient, ControlError, DaemonUnavailable
from app.paths import Paths
from app.policy.sign_in import ENABLED, after_sign_out, turning_on_refusal
from app.settings.errors import (
    SettingLockedError,
    SettingsError,
    SettingsWriteError,
    SettingValueError,
    SignInNeededError,
    UnknownSettingError,
)
from app.settings.problems import Problem
from app.settings.store import SettingsChange, SettingsStore
from app.signin.state import is_signed_in

# The errors a daemon's refusal stands for, by the control API's "error" field.
ERRORS_BY_KIND: dict[str, type[SettingsError]] = {
    error.kind: error
    for error in (SettingLockedError, SignInNeededError, UnknownSettingError, SettingValueError)
}


def checked_update(store: SettingsStore, changes: Mapping[str, Any]) -> SettingsChange:
    """Write CHANGES through STORE if the sign-in rule allows them (SignInNeededError if not)."""

    def sign_in_rule(resolved: Mapping[str, Any]) -> None:
        refusal = turning_on_refusal(resolved, signed_in=is_signed_in(store.paths))
        if refusal is not None:
            raise SignInNeededError(Problem(ENABLED, refusal.problem, refusal.fix))

    return store.update(changes, guard=sign_in_rule)


def apply_sign_out(store: SettingsStore) -> tuple[SettingsChange | None, str]:
    """What signing out does to the settings, written through STORE: the change (None when
    there is none) and a note for the person."""
    try:
        effective = store.load()
        effect = after_sign_out(
            enabled=effective[ENABLED] is True, locked=effective.locked(ENABLED)
        )
        if not effect.turn_off:
            return None, effect.note
        return store.set(ENABLED, False), effect.note
    except SettingsError as exc:
        return None, f"Could not turn host networking off: {exc}"


@dataclass(frozen=True)
class Written:
    """The answer to a change: the keys that changed, whether one needs a daemon restart, and
    the settings now in effect (``EffectiveSettings.to_json()``)."""

    changed: tuple[str, ...]
    restart_required: bool
    settings: dict[str, Any] = field(repr=False)
    by_daemon: bool = False

    def entry(self, key: str) -> dict[str, Any]:
        return dict(self.settings["settings"][key])

    @property
    def problems(self) -> list[dict[str, Any]]:
        return list(self.settings.get("problems") or [])

    @classmethod
    def from_change(cls, change: SettingsChange) -> Written:
        return cls(change.changed, change.restart_required, change.effective.to_json())

    @classmethod
    def from_answer(cls, answer: Any) -> Written:
        return cls(
            tuple(answer["changed"]), bool(answer["restart_required"]), answer["settings"], True
        )


def settings_error(exc: ControlError) -> SettingsError:
    """The SettingsError a daemon's refusal stands for, with its problem and fix."""
    return ERRORS_BY_KIND.get(exc.kind, SettingsWriteError)(Problem(None, exc.problem, exc.fix))


def _no_answer(exc: OSError) -> SettingsWriteError:
    return SettingsWriteError(
        Problem(
            None,
            f"the hostnet daemon did not answer ({exc}); the change may not have been made.",
            "See `hostnet status` and `hostnet settings list`, then try again if needed.",
        )
    )


class SettingsWriter:
    """Changes settings through the running daemon, or through the store when none runs."""

    def __init__(self, store: SettingsStore, *, timeout: float = 10.0) -> None:
        self.store = store
        self.client = ControlClient(store.paths.control_socket, timeout)

    @classmethod
    def for_user(cls, paths: Paths | None = None) -> SettingsWriter:
        return cls(SettingsStore(paths))

    def _ask_daemon(self, method: str, path: str, body: Any = None) -> Any:
        """The daemon's answer; DaemonUnavailable when none runs."""
        try:
            return self.client.call(method, path, body)
        except DaemonUnavailable:
            raise
        except ControlError as exc:
            raise settings_error(exc) from None
        except OSError as exc:
            raise _no_answer(exc) from None

    def update(self, changes: Mapping[str, Any]) -> Written:
        try:
            answer = self._ask_daemon("PUT", "/v1/settings", dict(changes))
        except DaemonUnavailable:
            return Written.from_change(checked_update(self.store, changes))
        return Written.from_answer(answer)

    def set(self, key: str, value: Any) -> Written:
        return self.update({key: value})

    def reset(self, key: str) -> Written:
        try:
            answer = self._ask_daemon("DELETE", f"/v1/settings/{quote(key, safe='')}")
        except DaemonUnavailable:
            return Written.from_change(self.store.reset(key))
        return Written.from_answer(answer)

    def sign_in_changed(self, *, signed_out: bool) -> str:
        """Tell the daemon that someone signed in or out (SIGNED_OUT); with no daemon, apply
        what signing out does here. A note for the person, or ''."""
        try:
            answer = self._ask_daemon("POST", "/v1/session", {"signed_out": signed_out})
        except DaemonUnavailable:
            return apply_sign_out(self.store)[1] if signed_out else ""
        except SettingsError as exc:
            return f"The daemon did not take the sign-in change: {exc}"
        return str(answer.get("note") or "")
