"""The transport cut in the middle of transfers, on a TCP transport where the bytes cross it.

The namespace backend hands connected sockets over a unix socket, so its transfers never
cross the transport. Here the agent listens on TCP inside a namespace the test makes and
the daemon attaches to it (the ``attach`` backend, as for a VM reached over the network):
every forwarded connection is a stream connection over that TCP transport. The cut is
real: ``ss -K`` destroys the daemon's transport sockets, as a dying link would (the agent
gets a reset).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.wire.secret import load_or_create_secret
from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.integration.vm_helpers import bare_namespace, free_port, host_answer, wait_for
from tests.reliability.figures import RECOVERY_LIMIT, record, time_until
from tests.reliability.leaks import connection_socket_count as socket_count

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

AGENT_PORT = 5123

STREAM_ECHO = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
def serve(c):
    try:
        while data := c.recv(65536):
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@dataclass
class TcpVM:
    name: str
    vm_ip: str
    agent: subprocess.Popen[bytes]
    transport: str
    secret_file: Path

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


@pytest.fixture
def tcp_vm(tmp_path: Path) -> Iterator[TcpVM]:
    with bare_namespace(tmp_path / "vm") as vm:
        addrs = vm.addresses()
        secret_file = tmp_path / "secret"
        load_or_create_secret(secret_file)
        transport = f"tcp:{addrs['vm_ip']}:{AGENT_PORT}"
        ready = tmp_path / "agent.ready"
        agent = subprocess.Popen(
            [
                *["ip", "netns", "exec", vm.name, sys.executable, "-m", "vm.agent"],
                "--listen",
                transport,
                "--secret-file",
                str(secret_file),
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.log").open("wb"),
        )
        try:
            wait_for(ready.exists, 10, "the agent to listen")
            yield TcpVM(vm.name, addrs["vm_ip"], agent, transport, secret_file)
        finally:
            agent.kill()
            agent.wait()


@pytest.fixture
def attached(tmp_path: Path, tcp_vm: TcpVM) -> Iterator[RunningDaemon]:
    settings = {
        "HostNetworkingEnabled": True,
        "VmBackend": "attach",
        "VmOptions": {"transport": tcp_vm.transport, "secret_file": str(tcp_vm.secret_file)},
    }
    daemon = start_daemon(tmp_path / "home", settings)
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the daemon to reach the agent over TCP",
        )
        yield daemon
    finally:
        daemon.stop()


def answers(port: int) -> bool:
    try:
        return host_answer("tcp", "127.0.0.1", port, b"ping", timeout=0.5) == b"ping"
    except OSError:
        return False


class Transfer(threading.Thread):
    """Streams a known pattern through the mirror and checks what comes back, byte for byte."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.received = 0
        self.outcome = ""
        self.pattern = bytes(range(256)) * 256  # 64 KiB

    def run(self) -> None:
        sent = 0
        try:
            while True:
                self.sock.sendall(self.pattern)
                sent += len(self.pattern)
                got = bytearray()
                while len(got) < len(self.pattern):
                    chunk = self.sock.recv(len(self.pattern) - len(got))
                    if not chunk:
                        self.outcome = f"clean EOF after {self.received + len(got)} bytes"
                        return
                    got += chunk
                if bytes(got) != self.pattern:
                    self.outcome = "corrupted bytes"
                    return
                self.received += len(got)
        except OSError as exc:
            self.outcome = type(exc).__name__
        finally:
            self.sock.close()


def test_transport_cut_mid_transfer(tcp_vm: TcpVM, attached: RunningDaemon) -> None:
    """In-flight connections are reset (never a clean, short EOF that would pass for the
    whole data); new connections work again as soon as the transport is back."""
    port = free_port()
    server = subprocess.Popen(
        [*tcp_vm.prefix, sys.executable, "-c", STREAM_ECHO, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        wait_for(lambda: answers(port), 5, "the mirror over the TCP transport")
        daemon_sockets = socket_count(attached.proc.pid)
        agent_sockets = socket_count(tcp_vm.agent.pid)
        transfers = [Transfer(port) for _ in range(8)]
        for transfer in transfers:
            transfer.start()
        wait_for(lambda: all(t.received > 1 << 20 for t in transfers), 10, "transfers running")
        start = time.monotonic()
        cut = subprocess.run(
            ["ss", "-K", "dst", tcp_vm.vm_ip, f"dport = :{AGENT_PORT}"],
            capture_output=True,
            text=True,
        )
        assert cut.returncode == 0, cut.stderr
        for transfer in transfers:
            transfer.join(5)
            assert not transfer.is_alive(), "a transfer hangs after the cut"
        outcomes = {t.outcome for t in transfers}
        assert outcomes <= {"ConnectionResetError", "BrokenPipeError"}, outcomes
        took = time_until(lambda: answers(port), start, RECOVERY_LIMIT, "a new connection")
        wait_for(
            lambda: (
                socket_count(attached.proc.pid) == daemon_sockets
                and socket_count(tcp_vm.agent.pid) == agent_sockets
            ),
            RECOVERY_LIMIT,
            f"sockets back to {daemon_sockets} (daemon) and {agent_sockets} (agent)",
        )
    finally:
        server.kill()
        server.wait()
    record("fault", "transport cut mid-transfer (TCP)", took, "s", "8 in flight reset, new work")
