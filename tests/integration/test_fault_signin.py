"""Sign-in services failing under a running daemon: the keyring goes away, the registry goes
down. Forwarding must not notice, the daemon's refresh must fail cleanly (a log line, no
traceback, the session kept until it really expires), and sign-in works again as soon as
the service is back.

Real peers: a gnome-keyring on a private D-Bus bus at a fixed address (so the daemon finds
the same bus when it comes back) and Debian's docker-registry on a fixed port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.paths import user_paths
from app.signin import manager
from app.signin.errors import SignInError
from tests.integration.daemon_fixture import HOSTNET, RunningDaemon, start_daemon
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.reliability.figures import RECOVERY_LIMIT, record
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER
from tests.signin_peers.keyring_daemon import PASSWORD as KEYRING_PASSWORD
from tests.signin_peers.keyring_daemon import _pids_using
from tests.signin_peers.registry import free_port as free_local_port
from tests.signin_peers.registry import write_config

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("docker-registry", "htpasswd", "gnome-keyring-daemon")),
        reason="the sign-in peers are not installed: run `make setup`",
    ),
]


@dataclass
class Peers:
    """A keyring and a registry the test can stop and start again at the same addresses."""

    folder: Path
    env: dict[str, str]
    registry_port: int
    bus: subprocess.Popen[bytes] | None = None
    registry: subprocess.Popen[bytes] | None = None

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def start_keyring(self) -> None:
        address = self.env["DBUS_SESSION_BUS_ADDRESS"]
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}"]
        )
        wait_for((self.folder / "bus").exists, 5, "the session bus")
        subprocess.run(
            [
                "gnome-keyring-daemon",
                "--unlock",
                "--components=secrets",
                "--daemonize",
                f"--control-directory={self.folder / 'run' / 'keyring'}",
            ],
            input=KEYRING_PASSWORD,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            env={**os.environ, **self.env},
        )

    def stop_keyring(self) -> None:
        for pid in _pids_using(self.folder / "run" / "keyring"):
            os.kill(pid, 9)
        if self.bus is not None:
            self.bus.kill()
            self.bus.wait()
        (self.folder / "bus").unlink(missing_ok=True)

    def start_registry(self) -> None:
        htpasswd = self.folder / "htpasswd"
        config = write_config(
            self.folder,
            self.registry_port,
            f"  htpasswd:\n    realm: hostnet-test\n    path: {htpasswd}\n",
        )
        self.registry = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_registry(self) -> None:
        if self.registry is not None:
            self.registry.kill()
            self.registry.wait()


@pytest.fixture
def peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Peers]:
    folder = tmp_path / "peers"
    for sub in ("data", "run", "config"):
        (folder / sub).mkdir(parents=True, mode=0o700)
    env = {
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_RUNTIME_DIR": str(folder / "run"),
        "XDG_CONFIG_HOME": str(folder / "config"),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={folder / 'bus'}",
        "HOSTNET_HOME": str(tmp_path / "home"),
        "HOSTNET_ADMIN_SETTINGS": str(tmp_path / "home" / "admin-settings.json"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    subprocess.run(
        ["htpasswd", "-Bbc", str(folder / "htpasswd"), DOCKER_USER, DOCKER_PASSWORD],
        check=True,
        capture_output=True,
    )
    running = Peers(folder, env, free_local_port())
    running.start_keyring()
    running.start_registry()
    try:
        yield running
    finally:
        running.stop_registry()
        running.stop_keyring()


def refreshes() -> bool:
    """A forced refresh through the keyring and the registry succeeds, right now."""
    try:
        return asyncio.run(manager.refresh_session(user_paths(), force=True, timeout=1)) is not None
    except SignInError:
        return False


@pytest.fixture
def signed_in_daemon(peers: Peers, tmp_path: Path) -> Iterator[RunningDaemon]:
    """Signed in with the real registry (secret in the keyring), the admin requiring sign-in,
    a daemon forwarding, and the session due for its refresh now."""
    home = tmp_path / "home"
    env = {**os.environ, **peers.env}
    wait_for(registry_up(peers), 10, "the registry")
    login = subprocess.run(
        [HOSTNET, "login", "--registry", peers.registry_url, "-u", DOCKER_USER, "--password-stdin"],
        input=DOCKER_PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    record_file = home / "state" / "session.json"
    session = json.loads(record_file.read_text())
    assert session["store"] == "keyring"
    now = time.time()
    session.update(refreshed_at=now - 86400, expires_at=now + 120)  # due for refresh at once
    record_file.write_text(json.dumps(session))
    admin = {"configurationFileVersion": 2, "SignInRequired": {"locked": True, "value": True}}
    daemon = start_daemon(home, {"HostNetworkingEnabled": True}, admin)
    try:
        wait_for(lambda: daemon.client.get("/v1/status")["state"] == "on", 10, "forwarding on")
        yield daemon
    finally:
        daemon.stop()


def registry_up(peers: Peers) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(f"{peers.registry_url}/v2/", timeout=1).status_code == 401
        except httpx.HTTPError:
            return False

    return check


def outage(daemon: RunningDaemon, port: int, seconds: float) -> list[float]:
    """Poll the mirror through the outage; the moments it did not answer."""
    misses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ok = host_answer("tcp", "127.0.0.1", port, b"x", timeout=0.5) == b"echo:x"
        except OSError:
            ok = False
        if not ok:
            misses.append(time.monotonic())
        time.sleep(0.05)
    return misses


@pytest.mark.parametrize("service", ["keyring", "registry"])
def test_signin_service_down_while_forwarding(
    peers: Peers, signed_in_daemon: RunningDaemon, service: str
) -> None:
    daemon = signed_in_daemon
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    log = daemon.home / "log" / "daemon.log"
    try:
        wait_for(lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active", 5)
        log_size = log.stat().st_size if log.exists() else 0
        if service == "keyring":
            peers.stop_keyring()
        else:
            peers.stop_registry()
        misses = outage(daemon, port, 1.5)
        assert not misses, f"forwarding missed {len(misses)} times while the {service} was down"
        assert not refreshes(), f"a refresh cannot work without the {service}"
        status = daemon.client.get("/v1/status")
        assert status["state"] == "on" and status["signed_in"] is True
        whoami = daemon.cli("whoami")
        assert "Traceback" not in whoami.stdout + whoami.stderr
        start = time.monotonic()
        if service == "keyring":
            peers.start_keyring()
        else:
            peers.start_registry()
        wait_for(refreshes, 10, f"a refresh once the {service} is back")
        took = time.monotonic() - start
        assert took < RECOVERY_LIMIT + 1.0  # includes starting the service itself
        text = log.read_text()[log_size:] if log.exists() else ""
        assert "Traceback" not in text
    finally:
        server.kill()
        server.wait()
    name = "keyring unavailable" if service == "keyring" else "sign-in server down"
    record("fault", name, 0.0, "s", f"no forwarding gap; sign-in back {took:.2f} s after restart")
