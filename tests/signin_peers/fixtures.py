"""pytest fixtures for the sign-in tests; loaded from tests/conftest.py via ``pytest_plugins``.

Each peer starts once per session: the distribution registry with htpasswd (Basic), a second
one with token auth and its token server (Bearer), the OIDC provider, a keyring daemon.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.signin_peers.keyring_daemon import KeyringDaemon, start_keyring
from tests.signin_peers.registry import start_registry, stop
from tests.signin_peers.token_server import ISSUER, SERVICE, TokenServer

PEERS = Path(__file__).resolve().parent
DOCKER_USER, DOCKER_PASSWORD = "alice", "correct-horse"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed: run `make setup`")


@dataclass
class Registry:
    url: str
    tokens: TokenServer | None = None


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _need("docker-registry")
    _need("htpasswd")
    folder = tmp_path_factory.mktemp("registry-basic")
    htpasswd = folder / "htpasswd"
    subprocess.run(
        ["htpasswd", "-Bbc", str(htpasswd), DOCKER_USER, DOCKER_PASSWORD],
        check=True,
        capture_output=True,
    )
    proc, url = start_registry(
        folder, f"  htpasswd:\n    realm: hostnet-test\n    path: {htpasswd}\n"
    )
    yield Registry(url)
    stop(proc)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _need("docker-registry")
    folder = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(folder)
    tokens.users[DOCKER_USER] = DOCKER_PASSWORD
    auth = (
        f"  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.cert_file}\n"
    )
    proc, url = start_registry(folder, auth)
    yield Registry(url, tokens)
    stop(proc)
    tokens.close()


@pytest.fixture
def tokens(token_registry: Registry) -> Iterator[TokenServer]:
    """The token server, reset to one good user after each test."""
    assert token_registry.tokens is not None
    yield token_registry.tokens
    token_registry.tokens.users.clear()
    token_registry.tokens.users[DOCKER_USER] = DOCKER_PASSWORD
    token_registry.tokens.hang.clear()
    token_registry.tokens.hang_released.set()
    token_registry.tokens.hang_released.clear()


@pytest.fixture(scope="session")
def oidc_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need("node")
    if not (PEERS.parent / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("the oidc-provider npm package is missing: run `make setup`")
    log = (tmp_path_factory.mktemp("oidc") / "provider.log").open("wb")
    proc = subprocess.Popen(
        ["node", str(PEERS / "oidc_provider.mjs")], stdout=subprocess.PIPE, stderr=log
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        pytest.fail("the OIDC provider did not start")
    yield str(json.loads(line)["issuer"])
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="session")
def keyring_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyringDaemon]:
    _need("gnome-keyring-daemon")
    _need("dbus-daemon")
    daemon = start_keyring(tmp_path_factory.mktemp("keyring"))
    yield daemon
    daemon.stop()


@pytest.fixture
def real_keyring(
    keyring_daemon: KeyringDaemon, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KeyringDaemon]:
    """The test talks to the private, unlocked gnome-keyring; hostnet's entries removed after."""
    for key, value in keyring_daemon.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    yield keyring_daemon
    import keyring
    import keyring.core

    keyring.core.init_backend()
    for name in ("docker", "oidc"):
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password("hostnet", name)


@pytest.fixture
def no_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keyring at all: no session bus, so keyring finds only its fail backend."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
