"""Who can reach what: the control socket and the secrets are the user's alone, the agent
refuses anyone without the VM's secret at no cost, mirrors are on loopback only, admin
locks hold against every client, and no secret reaches a log.

All against a real daemon with its real namespace VM and agent. "Another user" is a real
one: ``setpriv --reuid 65534`` (nobody) runs the probe. The agent's refusal of a wrong or
missing secret in-process, and its refusal to connect to a port that does not listen or to
an address other than the listener's, are in tests/integration/test_agent_security.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.wire import ErrorCode, ProtocolError
from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.reliability.figures import record
from tests.reliability.leaks import fd_count
from tests.reliability.secret_scan import is_log, scan_for_secrets
from vm.transport.wire_socket import connect_wire

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and setpriv need root")

NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
PROBE = r"""
import errno, socket, sys
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "connect":
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"GET /v1/status HTTP/1.0\r\n\r\n")
        print("OK", s.recv(100).split(b"\r\n")[0].decode())
    else:
        print("OK", len(open(path, "rb").read()))
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc.errno)))
"""


def as_nobody(kind: str, path: Path) -> str:
    """What user nobody gets when it connects to or reads ``path``: ``OK ...`` or an errno."""
    result = subprocess.run(
        [*SETPRIV_NOBODY, "/usr/bin/python3", "-c", PROBE, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@contextlib.contextmanager
def folders_passable(path: Path) -> Iterator[None]:
    """Let others through every folder above ``path`` (o+x), so what is checked is the mode
    of ``path`` itself, not of a folder on the way; restored afterwards."""
    changed: list[tuple[Path, int]] = []
    for folder in path.parents:
        mode = stat.S_IMODE(folder.stat().st_mode)
        if not mode & stat.S_IXOTH:
            changed.append((folder, mode))
            folder.chmod(mode | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    yield from daemon_session(tmp_path / "home", {"HostNetworkingEnabled": True})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_control_socket_and_secrets_are_refused_to_another_user(daemon: RunningDaemon) -> None:
    control = daemon.home / "run" / "control.sock"
    secret = daemon.home / "state" / "vm" / "secret"
    agent_socket = daemon.home / "state" / "vm" / "agent.sock"
    assert mode_of(control) == 0o600
    assert mode_of(secret) == 0o600
    assert mode_of(agent_socket) == 0o600
    # as hostnet lays it out, the folders already keep others out...
    assert as_nobody("connect", control) == "EACCES"
    assert as_nobody("read", secret) == "EACCES"
    with folders_passable(secret), folders_passable(control):
        # ...and with every folder open, the files' own modes still do
        assert as_nobody("connect", control) == "EACCES"
        assert as_nobody("connect", agent_socket) == "EACCES"
        assert as_nobody("read", secret) == "EACCES"
        # the probe itself can tell: the same socket made reachable answers it
        control.chmod(0o666)
        try:
            assert as_nobody("connect", control).startswith("OK HTTP/1.")
        finally:
            control.chmod(0o600)
        readable = secret.with_name("readable-copy")
        readable.write_bytes(b"x" * 32)
        readable.chmod(0o644)
        try:
            assert as_nobody("read", readable) == "OK 32"
        finally:
            readable.unlink()
    assert daemon.client.get("/v1/status")["agent"]["state"] == "connected"


def agent_holdings(pid: int) -> tuple[int, int, int]:
    """The agent's open descriptors, threads and resident memory (kB)."""
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fd_count(pid), threads, rss


async def bad_clients(agent_socket: Path, secret: bytes, rounds: int) -> dict[str, int]:
    """Connections to the agent that must all be refused: a wrong secret, garbage, a Hello
    that names the agent as the caller, an immediate close. Counts how each was refused."""
    from proxy.wire import Connection

    refused = {"wrong secret": 0, "garbage": 0, "bad hello": 0, "closed": 0}
    loop = asyncio.get_running_loop()

    async def raw(data: bytes) -> bytes:
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(agent_socket))
            if data:
                await loop.sock_sendall(sock, data)
            sock.shutdown(socket.SHUT_WR)
            out = b""
            async with asyncio.timeout(10):
                while chunk := await loop.sock_recv(sock, 65536):
                    out += chunk
            return out
        finally:
            sock.close()

    for _ in range(rounds):
        with pytest.raises(ProtocolError) as caught:
            await connect_wire(
                await asyncio.wait_for(_unix(agent_socket), 5), "daemon", "control", os.urandom(32)
            )
        assert caught.value.code is ErrorCode.AUTH_FAILED
        refused["wrong secret"] += 1
        await raw(os.urandom(200))  # the agent answers or just closes; it must close
        refused["garbage"] += 1
        await raw(Connection("agent", "control", secret).initiate())  # the agent's own role
        refused["bad hello"] += 1
        await raw(b"")
        refused["closed"] += 1
    return refused


async def _unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, str(path))
    return sock


@pytest.mark.slow
async def test_wrong_secret_and_unauthenticated_connections_cost_the_agent_nothing(
    daemon: RunningDaemon,
) -> None:
    """Hundreds of refused connections, then silent ones that never finish the handshake:
    the agent's descriptors and threads come back to where they were, its memory does not
    grow, and the daemon's own link and mirrors go on working throughout."""
    agent = int(daemon.netns["agent_pid"])
    agent_socket = daemon.home / "state" / "vm" / "agent.sock"
    secret = (daemon.home / "state" / "vm" / "secret").read_bytes()
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: answers(port), 5, "the mirror")
        await bad_clients(agent_socket, secret, 10)  # warm up: first-use allocations
        samples = []
        for _ in range(10):  # the agent's own short-lived sockets come and go: take the top
            samples.append(agent_holdings(agent))
            await asyncio.sleep(0.05)
        fds, threads, rss = (max(column) for column in zip(*samples, strict=True))
        start = time.monotonic()
        refused = await bad_clients(agent_socket, secret, 100)
        # silent clients: connected, then nothing; the handshake timeout must drop them
        silent = [await _unix(agent_socket) for _ in range(50)]
        await asyncio.to_thread(
            wait_for, lambda: fd_count(agent) >= fds + 40, 5, "the agent to accept the silent"
        )
        assert answers(port), "forwarding stopped under the attempts"
        seen: list[int] = []
        while (count := fd_count(agent)) > fds:
            seen.append(count)
            assert time.monotonic() - start < 20, f"the agent still holds them: {seen[::25]}"
            await asyncio.sleep(0.02)
        dropped_after = time.monotonic() - start
        for sock in silent:
            sock.close()
        after_fds, after_threads, after_rss = agent_holdings(agent)
        assert after_fds <= fds and after_threads <= threads
        assert after_rss - rss < 4096, f"agent memory grew by {after_rss - rss} kB"
        assert daemon.client.get("/v1/status")["agent"]["state"] == "connected"
        assert answers(port)
    finally:
        server.kill()
        server.wait()
    attempts = sum(refused.values()) + len(silent)
    record(
        "security",
        "bad transport connections refused",
        attempts,
        "conns",
        f"wrong secret, garbage, wrong role, closed, silent; agent fds {fds}->{after_fds}, "
        f"threads {threads}->{after_threads}, RSS {after_rss - rss:+d} kB; "
        f"silent ones dropped after {dropped_after:.1f} s",
    )


def answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        return host_answer("tcp", host, port, b"ping", timeout=timeout) == b"echo:ping"
    except OSError:
        return False


VM_PROBE = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=2).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def from_vm(daemon: RunningDaemon, host: str, port: int) -> str:
    result = subprocess.run(
        [*daemon.vm_prefix, "python3", "-c", VM_PROBE, host, str(port)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return result.stdout.strip()


def test_mirrors_are_on_loopback_only_by_default(daemon: RunningDaemon) -> None:
    """The host's side of the VM link is a non-loopback address of the host, reachable from
    the VM (another machine on a network would be in the same place): it cannot reach a
    mirror. Exposing on all interfaces (opt-in) makes it reachable, so the probe can tell."""
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    host_ip, host_ip6 = daemon.netns["host_ip"], daemon.netns.get("host_ip6", "")
    try:
        wait_for(lambda: answers(port) and answers(port, "::1"), 5, "the mirrors")
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        binds = sorted(line.split()[3] for line in listening if line.strip())
        assert binds == [f"127.0.0.1:{port}", f"[::1]:{port}"], binds
        assert from_vm(daemon, host_ip, port) == "ConnectionRefusedError"
        if host_ip6:  # refused, or unanswered while the link's IPv6 settles: never a mirror
            assert from_vm(daemon, host_ip6, port) != "connected"
        reply = daemon.client.call(
            "PUT", "/v1/settings", {"HostNetworkingExposeAllInterfaces": True}
        )
        assert reply["settings"]["settings"]["HostNetworkingExposeAllInterfaces"]["value"] is True
        wait_for(lambda: from_vm(daemon, host_ip, port) == "connected", 5, "the exposed mirror")
        daemon.client.call("PUT", "/v1/settings", {"HostNetworkingExposeAllInterfaces": False})
        wait_for(lambda: from_vm(daemon, host_ip, port) == "ConnectionRefusedError", 5, "back")
        assert answers(port)
    finally:
        server.kill()
        server.wait()


def test_admin_locks_hold_against_the_cli_and_the_api(tmp_path: Path) -> None:
    """A locked value cannot be changed by ``hostnet settings set`` nor by PUT /v1/settings,
    while the daemon runs; the GUI's toggle is disabled by the same lock
    (tests/ui/test_app.py::test_an_admin_lock_disables_the_toggle_with_the_reason)."""
    from tests.integration.daemon_fixture import start_daemon

    admin = {
        "configurationFileVersion": 2,
        "HostNetworkingExposeAllInterfaces": {"locked": True, "value": False},
        "HostNetworkingExcludedPorts": {"locked": True, "value": [5432]},
    }
    home = tmp_path / "home"
    daemon = start_daemon(home, {"HostNetworkingEnabled": False}, admin)
    settings_file = home / "config" / "settings-store.json"
    try:
        before = settings_file.read_bytes()
        for key, value in (
            ("HostNetworkingExposeAllInterfaces", "true"),
            ("HostNetworkingExcludedPorts", "[]"),
        ):
            result = daemon.cli("settings", "set", key, value)
            assert result.returncode != 0
            assert "locked by your administrator" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        bodies: list[dict[str, object]] = [
            {"HostNetworkingExposeAllInterfaces": True},
            {"HostNetworkingExcludedPorts": []},
            {"HostNetworkingEnabled": False, "HostNetworkingExposeAllInterfaces": True},
        ]
        for body in bodies:
            status, answer = raw_put(home / "run" / "control.sock", body)
            assert status == 403, (status, answer)
            assert answer["error"] == "locked" and "administrator" in str(answer["message"])
        assert settings_file.read_bytes() == before
        effective = daemon.client.get("/v1/settings")
        effective = effective.get("settings", effective)
        assert effective["HostNetworkingExposeAllInterfaces"]["value"] is False
        assert effective["HostNetworkingExposeAllInterfaces"]["locked"] is True
        assert effective["HostNetworkingExcludedPorts"]["value"] == [5432]
    finally:
        daemon.stop()


def raw_put(control: Path, body: object) -> tuple[int, dict[str, object]]:
    """PUT /v1/settings over the unix socket with nothing but a socket (as curl would)."""
    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(control))
        sock.sendall(
            b"PUT /v1/settings HTTP/1.1\r\nHost: hostnet\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_no_secret_in_the_logs_of_a_busy_daemon(daemon: RunningDaemon) -> None:
    """A daemon that forwarded, ran a command in the VM, lost its agent and got refused
    connections: neither its log nor the agent's holds the VM's secret in any spelling."""
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: answers(port), 5, "the mirror")
        assert daemon.client.call("POST", "/v1/vm/exec", {"argv": ["true"]})["exit"] == 0
        agent_socket = daemon.home / "state" / "vm" / "agent.sock"
        for _ in range(3):
            with pytest.raises(ProtocolError):
                asyncio.run(
                    connect_wire(_blocking_unix(agent_socket), "daemon", "control", b"w" * 32)
                )
        os.kill(int(daemon.netns["agent_pid"]), 9)
        wait_for(lambda: answers(port), 5, "the mirror back after the agent's restart")
    finally:
        server.kill()
        server.wait()
    logs = [p for p in daemon.home.rglob("*") if p.is_file() and is_log(p)]
    assert any(p.name == "agent.log" for p in logs), logs
    assert any(p.stat().st_size > 0 for p in logs)
    assert scan_for_secrets(daemon.home) == []
    # the scan finds a secret where there is one
    leak = daemon.home / "log" / "leak-check.log"
    leak.parent.mkdir(exist_ok=True)
    leak.write_text(f"oops {(daemon.home / 'state' / 'vm' / 'secret').read_bytes().hex()}\n")
    assert scan_for_secrets(daemon.home)
    leak.unlink()


def _blocking_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    sock.setblocking(False)
    return sock
