"""Bring a settings document from an older layout to the current one.

Layout history (``SettingsVersion``):

- missing or 0: no version; keys may use Docker Desktop's older camelCase spellings
  (``hostNetworkingEnabled``, ``enhancedContainerIsolation``, ``useWindowsContainers``, ...),
  as in Docker's ``settings.json`` before ``settings-store.json``.
- 1: canonical PascalCase keys, but ``HostNetworkingExcludedPorts`` was one string,
  ``"22, 8000-8010"``.
- 2 (current): ``HostNetworkingExcludedPorts`` is a JSON list of ports and ``"LOW-HIGH"`` ranges.

Spelling migration runs at every version (a hand-edited file may use camelCase). A file from a
newer hostnet is read as far as it is understood and keeps its version number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.settings.schema import alias_map, current_version


@dataclass
class Migration:
    document: dict[str, Any]
    from_version: int | None
    notes: list[str] = field(default_factory=list)
    newer: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.notes)


def file_version(document: dict[str, Any]) -> int | None:
    version = document.get("SettingsVersion")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        return version
    return None


def _rename_aliases(document: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    aliases = alias_map()
    out: dict[str, Any] = {}
    for key, value in document.items():
        canonical = aliases.get(key)
        if canonical is None:
            out[key] = value
        elif canonical in document:
            notes.append(f"dropped {key} (older spelling) because {canonical} is also set")
        else:
            out[canonical] = value
            notes.append(f"renamed {key} to {canonical}")
    return out


def _ports_string_to_list(document: dict[str, Any], notes: list[str]) -> None:
    value = document.get("HostNetworkingExcludedPorts")
    if not isinstance(value, str):
        return
    items: list[int | str] = []
    for part in value.replace(";", ",").split(","):
        part = part.strip().replace(" ", "")
        if not part:
            continue
        items.append(int(part) if part.isdigit() else part)
    document["HostNetworkingExcludedPorts"] = items
    notes.append("HostNetworkingExcludedPorts: string turned into a list")


def migrate(document: dict[str, Any]) -> Migration:
    """Return the document in the current layout (a new dict; the input is left alone)."""
    current = current_version()
    version = file_version(document)
    notes: list[str] = []
    migrated = _rename_aliases(document, notes)
    start = version if version is not None else 0
    if start <= 1:
        _ports_string_to_list(migrated, notes)
    if start > current:
        return Migration(migrated, version, notes, newer=True)
    if version != current:
        migrated["SettingsVersion"] = current
        notes.append(f"SettingsVersion {version if version is not None else 'none'} -> {current}")
    return Migration(migrated, version, notes)
