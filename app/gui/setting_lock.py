"""How a control shows an administrator's lock: the same words everywhere."""

from __future__ import annotations

import json
from typing import Any


def lock_reason(entry: dict[str, Any]) -> str:
    """Why the setting ENTRY (one row of GET /v1/settings) cannot be changed, or ""."""
    if not entry.get("locked"):
        return ""
    value = entry.get("value")
    shown = ("on" if value else "off") if isinstance(value, bool) else json.dumps(value)
    origin = entry.get("origin") or "the admin settings file"
    return f"Locked {shown} by your administrator in {origin}."
