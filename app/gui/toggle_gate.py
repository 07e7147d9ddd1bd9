"""May the person turn host networking on or off from the GUI right now, and if not, why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.gui.setting_lock import lock_reason

ENABLED = "HostNetworkingEnabled"


@dataclass(frozen=True)
class ToggleGate:
    enabled: bool
    reasons: tuple[str, ...] = ()
    needs_sign_in: bool = False
    locked: bool = False

    @property
    def reason_text(self) -> str:
        return " ".join(self.reasons)


def toggle_gate(
    *, connected: bool, status: dict[str, Any], enabled_setting: dict[str, Any]
) -> ToggleGate:
    """The gate for the "Enable host networking" toggle, from the daemon's own answers."""
    if not connected:
        return ToggleGate(False, ("The hostnet daemon is not running.",))
    if enabled_setting.get("locked"):
        return ToggleGate(False, (lock_reason(enabled_setting),), locked=True)
    reasons = tuple(
        f"Blocked by {r.get('setting', 'a setting')}: {r.get('fix', '')}".strip()
        for r in status.get("reasons") or []
        if isinstance(r, dict) and r.get("setting") != "SignInRequired"
    )
    signed_in = bool(status.get("signed_in"))
    if reasons:
        return ToggleGate(False, reasons, needs_sign_in=not signed_in)
    if not signed_in:
        return ToggleGate(False, ("Host networking needs a signed-in account.",), True)
    return ToggleGate(True)
