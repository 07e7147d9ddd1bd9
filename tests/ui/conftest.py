"""UI tests: the real app (offscreen Qt) against a real daemon on a real namespace VM."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from app.gui.controller import Controller
from app.paths import Paths
from app.signin import manager
from app.signin.session import Session
from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry
from tests.ui.app_harness import open_app, pump_until, settled, use_home

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace VM needs root")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """HOSTNET_HOME and the admin file, shared by this process (the app) and the daemon."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOSTNET_HOME", str(folder))
    monkeypatch.setenv("HOSTNET_ADMIN_SETTINGS", str(folder / "admin-settings.json"))
    return use_home(folder)


@pytest.fixture
def daemon_factory(home: Paths) -> Iterator[Callable[..., RunningDaemon]]:
    started: list[RunningDaemon] = []
    folder = home.config_dir.parent

    def start(
        settings: dict[str, Any] | None = None, admin: dict[str, Any] | None = None
    ) -> RunningDaemon:
        daemon = start_daemon(folder, settings or {"HostNetworkingEnabled": False}, admin)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def app_factory(qapp: Any, home: Paths) -> Iterator[Callable[[], Controller]]:
    from app.gui.theme import apply_theme

    apply_theme(qapp)
    opened: list[Controller] = []

    def start() -> Controller:
        controller = open_app(home)
        opened.append(controller)
        pump_until(lambda: settled(controller), 15, "the app to hear the daemon")
        return controller

    yield start
    for controller in opened:
        controller.shutdown()
        proc = controller.daemon_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(15)


@pytest.fixture
def signed_in(home: Paths, basic_registry: Registry, real_keyring: object) -> Iterator[Session]:
    """A real Docker sign-in against the registry, the secret in the real keyring."""
    outcome = asyncio.run(
        manager.login_docker(home, DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url)
    )
    yield outcome.session
