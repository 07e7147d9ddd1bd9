"""Shared fixtures: an isolated HOSTNET_HOME per test and uvloop as the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run async tests on uvloop, as hostnet itself runs."""
    if uvloop is not None:
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def hostnet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private HOSTNET_HOME and admin settings path for one test."""
    home = tmp_path / "hostnet-home"
    home.mkdir()
    monkeypatch.setenv("HOSTNET_HOME", str(home))
    monkeypatch.setenv("HOSTNET_ADMIN_SETTINGS", str(tmp_path / "admin-settings.json"))
    yield home


def open_fds() -> set[int]:
    """The file descriptors this process has open now."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


# sign-in peers (registry, token server, OIDC provider, keyring): tests/signin_peers/fixtures.py
pytest_plugins = ["tests.signin_peers.fixtures"]
