"""What the app says after it changed one setting at once."""

from __future__ import annotations

import json
from typing import Any

LINUX_ONLY = (
    "hostnet runs Linux containers only: host networking is refused while Windows "
    "containers are on."
)
ECI_REFUSES = (
    "Host networking is refused while Enhanced Container Isolation is on: it keeps "
    "containers away from the host's network."
)


def setting_notice(key: str, value: Any) -> str:
    if key == "UseWindowsContainers":
        return LINUX_ONLY if value else "Windows containers are off: Linux containers only."
    if key == "EnhancedContainerIsolation":
        return ECI_REFUSES if value else "Enhanced Container Isolation is off."
    shown = ("on" if value else "off") if isinstance(value, bool) else json.dumps(value)
    return f"{key} is now {shown}."
