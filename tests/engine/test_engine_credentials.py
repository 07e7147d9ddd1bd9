"""One sign-in for both: ``docker pull`` from the registry hostnet is signed in to works with
no ``docker login``, through docker-credential-hostnet; after ``hostnet logout`` the helper
knows nothing. The registry is Debian's docker-registry with htpasswd, on the host's loopback,
reached from the engine in the VM through host networking."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.paths import user_paths
from app.signin import manager
from tests.engine.engine_fixture import EngineSession, needs_engine
from tests.integration.vm_helpers import wait_for
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry
from tests.signin_peers.keyring_daemon import KeyringDaemon

pytestmark = needs_engine

VENV_BIN = str(Path(sys.executable).parent)


def helper(env: dict[str, str], action: str, data: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-credential-hostnet", action],
        input=data,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_docker_pulls_with_hostnets_sign_in_until_logout(
    engine: EngineSession,
    real_keyring: KeyringDaemon,
    basic_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = engine.daemon.home
    monkeypatch.setenv("HOSTNET_HOME", str(home))
    asyncio.run(
        manager.login_docker(
            user_paths(), DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url
        )
    )
    registry = basic_registry.url.removeprefix("http://")
    config = home / "docker" / "config.json"

    def helper_named() -> bool:
        try:
            return bool(json.loads(config.read_text())["credHelpers"][registry] == "hostnet")
        except (OSError, ValueError, KeyError):
            return False

    wait_for(helper_named, 10, "the daemon to name the credential helper for the registry")
    env = {
        **engine.daemon.env,
        **real_keyring.env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "DOCKER_HOST": engine.docker_host,
        "DOCKER_CONFIG": str(home / "docker"),
    }
    env.pop("PYTHON_KEYRING_BACKEND", None)
    answer = helper(env, "get", registry)
    assert answer.returncode == 0, answer.stdout
    assert json.loads(answer.stdout) == {
        "ServerURL": registry,
        "Username": DOCKER_USER,
        "Secret": DOCKER_PASSWORD,
    }
    tagged = f"{registry}/hostnet-test/netshoot:signed-in"

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, timeout=120
        )

    assert docker("tag", engine.image, tagged).returncode == 0
    pushed = docker("push", tagged)
    assert pushed.returncode == 0, pushed.stderr
    assert docker("rmi", tagged).returncode == 0
    pulled = docker("pull", tagged)
    assert pulled.returncode == 0, pulled.stderr
    assert docker("rmi", tagged).returncode == 0

    logout = subprocess.run(
        ["hostnet", "logout"], env=env, capture_output=True, text=True, timeout=30
    )
    try:
        assert logout.returncode == 0, logout.stderr
        gone = helper(env, "get", registry)
        assert (gone.returncode, gone.stdout.strip()) == (
            1,
            "credentials not found in native keychain",
        )
        assert helper(env, "erase", registry).returncode == 0
        assert json.loads(helper(env, "list", "").stdout) == {}
    finally:
        engine.settings()  # logout turned host networking off: on again for the next tests
