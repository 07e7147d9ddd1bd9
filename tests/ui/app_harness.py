"""Running the real desktop app against a real daemon (tests and screenshots share this)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEventLoop

from app.gui.controller import Controller
from app.paths import Paths, user_paths
from app.signin.session import Session
from app.signin.state import write_session


def use_home(home: Path) -> Paths:
    """Point HOSTNET_HOME (and the admin file) at HOME for this process; its Paths."""
    os.environ["HOSTNET_HOME"] = str(home)
    os.environ["HOSTNET_ADMIN_SETTINGS"] = str(home / "admin-settings.json")
    return user_paths()


def record_session(paths: Paths, user: str = "alice") -> Session:
    """A session record with no secret behind it (this run only), for screenshots only: the
    tests sign in for real against the registry."""
    now = time.time()
    session = Session(
        provider="docker",
        user=user,
        server="https://registry-1.docker.io",
        signed_in_at=now,
        expires_at=now + 3600,
        refreshed_at=now,
        store="memory",
    )
    write_session(paths, session)
    return session


def write_user_settings(home: Path, settings: dict[str, Any]) -> None:
    """Replace the settings file the way an editor (or Docker Desktop) would."""
    path = home / "config" / "settings-store.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings))
    tmp.replace(path)


def pump_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Run the Qt event loop until CONDITION holds (the UI thread stays live meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def open_app(paths: Paths, use_tray: bool = False) -> Controller:
    controller = Controller(paths, use_tray=use_tray)
    controller.start()
    return controller


def settled(controller: Controller) -> bool:
    """The app has heard the daemon's status and settings."""
    link = controller.link
    return link.connected and bool(link.settings) and bool(link.status)
