"""The daemon decides again whenever an input of the gate changes: a setting, the sign-in, the
VM's state. A real daemon on a real namespace VM, the CLI's own main(), a real registry and
keyring.

A QEMU boot takes tens of seconds; here the namespace VM's boot is held for a few seconds
(within the agent's start timeout) by stopping its agent (SIGSTOP) before it is ready, so the
daemon sits in the same place of its startup sequence while the person signs in and turns
host networking on. test_qemu_gate_boot.py takes the same steps on a real QEMU VM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.control_client import ControlClient
from app.paths import user_paths
from app.signin.state import clear_session
from tests.integration.daemon_fixture import HOSTNET, RunningDaemon, start_daemon
from tests.integration.gate_helpers import TURN_IT_ON, answers, cli, login
from tests.integration.vm_helpers import free_port, start_server, tcp_open, wait_for
from tests.signin_peers.fixtures import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


def agent_pid(home: Path) -> int | None:
    """The pid of the agent the daemon for HOME is starting, if it has been spawned."""
    marker = str(home / "state" / "vm").encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(entry.path, "cmdline").read_bytes()
            if b"vm.agent" in cmdline and marker in cmdline:
                return int(entry.name)
    return None


@contextlib.contextmanager
def daemon_with_held_boot(home: Path) -> Iterator[tuple[subprocess.Popen[str], ControlClient]]:
    """A daemon whose VM boot is held (its agent stopped before it is ready) until the block
    ends; the block sees the daemon serving its control API meanwhile."""
    output = (home / "daemon.out").open("a")
    proc = subprocess.Popen([HOSTNET, "daemon"], stdout=output, stderr=subprocess.STDOUT, text=True)
    output.close()
    client = ControlClient(home / "run" / "control.sock")
    held: int | None = None
    try:
        deadline = time.monotonic() + 20
        while held is None:
            assert proc.poll() is None, (home / "daemon.out").read_text()
            assert time.monotonic() < deadline, "the daemon never started its agent"
            held = agent_pid(home)
        os.kill(held, signal.SIGSTOP)
        assert not (home / "state" / "vm" / "agent.ready").exists(), "held too late"
        wait_for(lambda: answers(client), 10, "the control API")
        assert client.get("/v1/status")["vm"]["state"] == "starting"
        yield proc, client
    finally:
        if held is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(held, signal.SIGCONT)


def status_now(client: ControlClient) -> dict[str, Any]:
    return dict(client.get("/v1/status"))


def test_enabling_while_the_vm_boots_is_applied_and_told_at_once(
    hostnet_home: Path,
    real_keyring: object,
    basic_registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 14: sign in and turn host networking on while the VM boots. Both are taken at
    once (status never says "turn it on" about a setting that is on), forwarding starts when
    the VM is up, and signing out turns it off at once."""
    with daemon_with_held_boot(hostnet_home) as (proc, client):
        try:
            signed_in = login(capsys, basic_registry)
            assert signed_in.returncode == 0, signed_in.stderr
            assert status_now(client)["signed_in"] is True  # at once, no poll
            turned_on = cli(capsys, "settings", "set", "HostNetworkingEnabled", "true")
            assert turned_on.returncode == 0, turned_on.stderr
            status = status_now(client)
            assert TURN_IT_ON not in status["message"]
            assert "the VM is starting" in status["message"]
            shown = cli(capsys, "status")
            assert TURN_IT_ON not in shown.stdout and "signed in: yes" in shown.stdout
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            raise
    daemon = RunningDaemon(hostnet_home, proc, dict(os.environ))
    try:
        wait_for(lambda: status_now(client)["agent"]["state"] == "connected", 20, "forwarding on")
        assert status_now(client)["state"] == "on"
        port = free_port()
        server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
        try:
            wait_for(lambda: tcp_open("127.0.0.1", port), 10, "the VM port on the host")
        finally:
            server.kill()
            server.wait()
        signed_out = cli(capsys, "logout")
        assert signed_out.returncode == 0, signed_out.stderr
        assert "Host networking is now off." in signed_out.stderr
        status = status_now(client)  # at once: the daemon applied the sign-out
        assert status["state"] == "off" and status["signed_in"] is False
        assert cli(capsys, "settings", "get", "HostNetworkingEnabled").stdout == "false\n"
        # Signed out by another program (the app): the daemon sees the session record go,
        # and a `hostnet logout` told late still hears what the sign-out did.
        assert login(capsys, basic_registry).returncode == 0
        assert cli(capsys, "settings", "set", "HostNetworkingEnabled", "true").returncode == 0
        assert status_now(client)["state"] == "on"
        clear_session(user_paths())
        wait_for(lambda: status_now(client)["state"] == "off", 5, "the watcher to see it")
        assert status_now(client)["signed_in"] is False
        told = client.call("POST", "/v1/session", {"signed_out": True})
        assert told == {"signed_in": False, "note": "Host networking is now off."}
    finally:
        daemon.stop()


@dataclass
class EventLog:
    """Every event the daemon's stream sends, as (type, time) pairs, read on a thread."""

    sock: socket.socket
    events: list[tuple[str, float]] = field(default_factory=list)

    def read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"event: "):
                        self.events.append((line[7:].decode().strip(), time.monotonic()))

    def since(self, moment: float, kind: str) -> int:
        return sum(1 for name, at in self.events if name == kind and at >= moment)


@contextlib.contextmanager
def event_log(daemon: RunningDaemon) -> Iterator[EventLog]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.home / "run" / "control.sock"))
    sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: hostnet\r\n\r\n")
    log = EventLog(sock)
    reader = threading.Thread(target=log.read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: log.since(0, "ports") > 0, 5, "the event stream")
        opened = time.monotonic()

        def settled() -> bool:
            """A second with no status event: the start-up (the kernel path's rules, the
            hold tables) is over, so what follows comes from the change under test."""
            now = time.monotonic()
            return now - opened > 1.0 and log.since(now - 1.0, "status") == 0

        wait_for(settled, 15, "the daemon to settle")
        yield log
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        reader.join(5)


@pytest.fixture
def forwarding_daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    daemon = start_daemon(tmp_path / "home", {"HostNetworkingEnabled": True})
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the agent",
        )
        yield daemon
    finally:
        daemon.stop()


def test_a_change_is_applied_once(forwarding_daemon: RunningDaemon) -> None:
    """A change through the control API, then one from the CLI: each one "settings" event and
    one "status" event, though the file watcher also sees the file change afterwards."""
    daemon = forwarding_daemon
    with event_log(daemon) as log:
        start = time.monotonic()
        daemon.client.call("PUT", "/v1/settings", {"HostNetworkingUdpIdleTimeoutSeconds": 7})
        time.sleep(2.0)  # four watcher intervals
        assert (log.since(start, "settings"), log.since(start, "status")) == (1, 1)
        start = time.monotonic()
        result = daemon.cli("settings", "set", "HostNetworkingUdpIdleTimeoutSeconds", "9")
        assert result.returncode == 0, result.stderr
        time.sleep(2.0)
        assert (log.since(start, "settings"), log.since(start, "status")) == (1, 1)
    assert (
        daemon.client.get("/v1/settings")["settings"]["HostNetworkingUdpIdleTimeoutSeconds"][
            "value"
        ]
        == 9
    )


def test_cli_changes_reach_the_daemon_before_the_command_returns(
    forwarding_daemon: RunningDaemon,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`hostnet settings set` and `reset` go through the daemon: status is right at once."""
    daemon = forwarding_daemon
    for key, value in daemon.env.items():
        monkeypatch.setenv(key, value)
    result = cli(capsys, "settings", "set", "EnhancedContainerIsolation", "true")
    assert result.returncode == 0, result.stderr
    status = daemon.client.get("/v1/status")
    assert status["state"] == "refused"
    assert [r["setting"] for r in status["reasons"]] == ["EnhancedContainerIsolation"]
    result = cli(capsys, "settings", "reset", "EnhancedContainerIsolation")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "EnhancedContainerIsolation = false (default)\n"
    assert daemon.client.get("/v1/status")["state"] == "on"
    refused = cli(capsys, "settings", "set", "SettingsVersion", "3")
    assert refused.returncode == 2 and "hostnet manages this key itself" in refused.stderr
    unknown = cli(capsys, "settings", "set", "HostNetworkingEnabld", "true")
    assert unknown.returncode == 2 and "Did you mean HostNetworkingEnabled" in unknown.stderr
    signed_out = cli(capsys, "settings", "set", "HostNetworkingEnabled", "true")
    assert signed_out.returncode == 4 and "hostnet login" in signed_out.stderr
