"""The app's SVG icons, from resources/icons (the repository or an installed bundle)."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

REPO_ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


def icons_dir() -> Path:
    """resources/icons next to the code; in a PyInstaller bundle, under its data folder."""
    bundle = getattr(sys, "_MEIPASS", None)
    candidates = [Path(bundle) / "resources" / "icons"] if bundle else []
    override = os.environ.get("HOSTNET_RESOURCES")
    if override:
        candidates.insert(0, Path(override) / "icons")
    candidates.append(REPO_ICONS)
    for folder in candidates:
        if folder.is_dir():
            return folder
    return REPO_ICONS


def icon_path(name: str) -> Path:
    return icons_dir() / f"{name}.svg"


@cache
def icon(name: str) -> QIcon:
    """The icon NAME (file NAME.svg); an empty icon when the file is missing."""
    path = icon_path(name)
    return QIcon(str(path)) if path.exists() else QIcon()


def tray_icon_name(state: str, connected: bool) -> str:
    """The tray icon for the daemon's state: on, off, refused, error (also: daemon lost)."""
    if not connected or state == "error":
        return "tray-error"
    if state == "refused":
        return "tray-refused"
    return "tray-on" if state == "on" else "tray-off"
