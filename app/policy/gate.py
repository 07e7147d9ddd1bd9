"""The policy gate: may host networking run with these settings?

A pure function of plain values. The caller passes each relevant setting's value, where it
came from (``default``, ``user``, ``admin-default`` or ``admin-locked``) and the file it came
from; the answer is one of three states:

- ``Off``: HostNetworkingEnabled is false. Nothing is wrong; ``blockers`` lists what would
  refuse it if it were turned on (the GUI can say so next to the toggle).
- ``Allow``: run.
- ``Refuse``: do not run (or stop); every reason names the setting, where its value came
  from and how to fix it.

Product policy, so it lives in ``app``: the daemon decides with it, and the GUI and the CLI
show its reasons. Sign-in enters only through ``app.policy.sign_in``, the rule's one home.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from app.policy.reasons import ADMIN_FILE, SOURCES, GateSetting, Reason, Source
from app.policy.sign_in import ENABLED, SIGN_IN_REQUIRED, sign_in_reason

__all__ = [
    "ADMIN_FILE",
    "ECI",
    "ENABLED",
    "SIGN_IN_REQUIRED",
    "SOURCES",
    "WINDOWS_CONTAINERS",
    "Allow",
    "Decision",
    "GateSetting",
    "Off",
    "Reason",
    "Refuse",
    "Source",
    "blockers",
    "evaluate",
]

ECI: Final = "EnhancedContainerIsolation"
WINDOWS_CONTAINERS: Final = "UseWindowsContainers"


@dataclass(frozen=True)
class Off:
    source: Source = "default"
    location: str | None = None
    blockers: tuple[Reason, ...] = ()
    state: Literal["off"] = field(default="off", init=False)

    @property
    def message(self) -> str:
        if self.source == "admin-locked":
            return (
                f"Host networking is off (locked off by your administrator in "
                f"{self.location or ADMIN_FILE})."
            )
        return (
            "Host networking is off. Turn it on with "
            "`hostnet settings set HostNetworkingEnabled true`."
        )


@dataclass(frozen=True)
class Allow:
    state: Literal["allowed"] = field(default="allowed", init=False)

    @property
    def message(self) -> str:
        return "Host networking is on."


@dataclass(frozen=True)
class Refuse:
    reasons: tuple[Reason, ...]
    state: Literal["refused"] = field(default="refused", init=False)

    @property
    def message(self) -> str:
        lines = ["Host networking is refused:"]
        lines.extend(f"- {reason.message}" for reason in self.reasons)
        return "\n".join(lines)


Decision = Off | Allow | Refuse


def _setting(settings: Mapping[str, GateSetting], key: str) -> GateSetting:
    return settings.get(key, GateSetting(False))


def _origin(setting: GateSetting) -> str:
    where = setting.location
    if setting.source == "admin-locked":
        return f"locked by your administrator in {where or ADMIN_FILE}"
    if setting.source == "admin-default":
        return f"your administrator's default, from {where or ADMIN_FILE}, not locked"
    if setting.source == "user":
        return f"set in {where}" if where else "set in your settings"
    return "the default"


def _turn_off_fix(key: str, setting: GateSetting, what: str) -> str:
    if setting.source == "admin-locked":
        where = setting.location or ADMIN_FILE
        return (
            f"Ask your administrator to set {key} to false, or to unlock it, in {where}; or {what}."
        )
    return f"Turn it off with `hostnet settings set {key} false`, or {what}."


def blockers(
    settings: Mapping[str, GateSetting],
    *,
    signed_in: bool,
    admin_problems: tuple[str, ...] = (),
    admin_location: str | None = None,
) -> tuple[Reason, ...]:
    """Everything that refuses host networking, whether or not it is turned on."""
    reasons: list[Reason] = []
    eci = _setting(settings, ECI)
    if eci.value is True:
        reasons.append(
            Reason(
                ECI,
                eci.source,
                eci.location,
                f"{ECI} is on ({_origin(eci)}): host networking cannot run with Enhanced "
                "Container Isolation, which keeps containers away from the host's network.",
                _turn_off_fix(ECI, eci, "leave host networking off"),
            )
        )
    windows = _setting(settings, WINDOWS_CONTAINERS)
    if windows.value is True:
        reasons.append(
            Reason(
                WINDOWS_CONTAINERS,
                windows.source,
                windows.location,
                f"{WINDOWS_CONTAINERS} is on ({_origin(windows)}): host networking needs "
                "Linux containers.",
                _turn_off_fix(WINDOWS_CONTAINERS, windows, "switch to Linux containers"),
            )
        )
    sign_in = sign_in_reason(_setting(settings, SIGN_IN_REQUIRED), signed_in=signed_in)
    if sign_in is not None:
        reasons.append(sign_in)
    for problem in admin_problems:
        where = admin_location or ADMIN_FILE
        reasons.append(
            Reason(
                ADMIN_FILE,
                None,
                where,
                f"The admin settings file {where} has a problem: {problem}",
                f"Ask your administrator to fix {where}.",
            )
        )
    return tuple(reasons)


def evaluate(
    settings: Mapping[str, GateSetting],
    *,
    signed_in: bool,
    admin_problems: tuple[str, ...] = (),
    admin_location: str | None = None,
) -> Decision:
    """Off, Allow or Refuse for SETTINGS (keys missing from SETTINGS count as false defaults)."""
    found = blockers(
        settings,
        signed_in=signed_in,
        admin_problems=admin_problems,
        admin_location=admin_location,
    )
    enabled = _setting(settings, ENABLED)
    if enabled.value is not True:
        return Off(enabled.source, enabled.location, found)
    if found:
        return Refuse(found)
    return Allow()
