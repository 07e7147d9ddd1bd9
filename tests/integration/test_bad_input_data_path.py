"""Bad input on the data path, through a real daemon and namespace VM: the largest UDP
datagrams, clients that never read a large download, and connections to a port that has
just stopped listening."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.integration.vm_udp_echo import start_dual_stack_udp_echo
from tests.reliability.figures import record
from tests.reliability.leaks import listener_count, live_socket_count

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

ENDLESS_DOWNLOAD = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
block = b"x" * 65536
def serve(c):
    try:
        while True:
            c.sendall(block)
    except OSError:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    home = tmp_path_factory.mktemp("bad-data") / "home"
    session = daemon_session(home, {"HostNetworkingEnabled": True})
    running = next(session)
    yield running
    with pytest.raises(StopIteration):
        next(session)


def start(daemon: RunningDaemon, code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*daemon.vm_prefix, sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def udp_round_trip(host: str, port: int, payload: bytes, timeout: float = 2) -> bytes | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, port))
        try:
            return sock.recv(70000)
        except TimeoutError:
            return None


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_largest_udp_datagrams(daemon: RunningDaemon) -> None:
    """65,507 bytes (the IPv4 maximum) pass byte for byte on 127.0.0.1 and on ::1; 65,508
    cannot even be sent on IPv4; IPv6's 65,527-byte payload is carried or dropped and
    counted, never a crash: the next datagram passes."""
    # Not free_port(): a port free on the host may still be held in the VM (vm_udp_echo.py).
    server, port = start_dual_stack_udp_echo(daemon.vm_prefix)
    try:
        wait_for(lambda: udp_round_trip("127.0.0.1", port, b"hi", 0.3) == b"hi", 5, "mirror")
        wait_for(
            lambda: any(
                e["port"] == port and e["host_address"] == "::1" and e["vm_address"] == "::1"
                for e in daemon.ports()
            ),
            5,
            "the ::1 mirror to reach the VM's :: listener",
        )
        wait_for(lambda: udp_round_trip("::1", port, b"hi", 0.3) == b"hi", 5, "::1 mirror")
        largest = os.urandom(65_507)
        assert udp_round_trip("127.0.0.1", port, largest) == largest
        assert udp_round_trip("::1", port, largest) == largest
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(OSError) as caught:
                sock.sendto(b"x" * 65_508, ("127.0.0.1", port))
            assert caught.value.errno == errno.EMSGSIZE
        ipv6_largest = os.urandom(65_527)
        echoed = udp_round_trip("::1", port, ipv6_largest)
        assert echoed in (ipv6_largest, None)
        assert udp_round_trip("::1", port, b"after") == b"after"
        assert udp_round_trip("127.0.0.1", port, b"after") == b"after"
        assert daemon.proc.poll() is None
    finally:
        server.kill()
        server.wait()
    record(
        "bad input",
        "largest UDP datagram through a mirror",
        65_507,
        "bytes",
        "byte-exact on 127.0.0.1 and ::1; 65,508 refused by IPv4; IPv6 65,527 "
        + ("carried" if echoed else "dropped and counted")
        + ", the relay goes on",
    )


@pytest.mark.slow
def test_clients_that_never_read_a_download_cost_bounded_memory(daemon: RunningDaemon) -> None:
    """Ten host clients connect to an endless download in the VM and never read: the
    daemon's and the agent's memory stay flat (back-pressure, no unbounded buffer), and
    other connections through the same mirror still work."""
    port = free_port()
    server = start(daemon, ENDLESS_DOWNLOAD, str(port))
    echo_port = free_port()
    echo = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", echo_port)
    agent = int(daemon.netns["agent_pid"])
    stuck: list[socket.socket] = []
    try:
        wait_for(lambda: _tcp_open(port), 5, "the mirror")
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.append(sock)
        time.sleep(2)  # the kernel buffers along the path fill
        daemon_before, agent_before = rss_kb(daemon.proc.pid), rss_kb(agent)
        samples = []
        for _ in range(16):
            time.sleep(0.5)
            samples.append((rss_kb(daemon.proc.pid), rss_kb(agent)))
            assert host_answer("tcp", "127.0.0.1", echo_port, b"x") == b"echo:x"
        daemon_growth = max(s[0] for s in samples) - daemon_before
        agent_growth = max(s[1] for s in samples) - agent_before
        assert daemon_growth < 8_000, f"daemon memory grew {daemon_growth} kB"
        assert agent_growth < 8_000, f"agent memory grew {agent_growth} kB"
        received = sum(len(s.recv(65536)) for s in stuck)  # the bytes were waiting, not lost
        assert received > 0
    finally:
        for sock in stuck:
            sock.close()
        for proc in (server, echo):
            proc.kill()
            proc.wait()
    record(
        "bad input",
        "clients that never read a download",
        10,
        "clients",
        f"8 s stalled: daemon RSS {daemon_growth:+d} kB, agent RSS {agent_growth:+d} kB",
    )


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_connections_to_a_port_that_stopped_listening(daemon: RunningDaemon) -> None:
    """The VM's server goes away while clients keep connecting to its mirror: each
    connection is answered, refused by the kernel once the mirror is gone, or accepted and
    closed at once by the mirror (the agent says nothing listens) -- none hangs, none gets
    bytes from nowhere, the daemon counts the refusals and keeps no descriptor."""
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    wait_for(lambda: _tcp_open(port), 5, "the mirror")
    # sockets bound or connected somewhere (not all descriptors: the splice pipe pool and
    # the unbound sockets kept ready inside the VM's namespace come and go)
    agent = daemon.netns["agent_pid"]
    before = live_socket_count(daemon.proc.pid, (agent,)) - listener_count(daemon.proc.pid)
    outcomes = {"answered": 0, "refused": 0, "closed by the mirror": 0}
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                answer = host_answer("tcp", "127.0.0.1", port, b"ping", timeout=3)
            except ConnectionRefusedError:
                outcomes["refused"] += 1
                continue
            except (ConnectionResetError, BrokenPipeError):
                outcomes["closed by the mirror"] += 1
                continue
            except OSError as exc:  # reset before the client's own shutdown
                assert exc.errno == errno.ENOTCONN, exc
                outcomes["closed by the mirror"] += 1
                continue
            if answer == b"echo:ping":
                outcomes["answered"] += 1
            else:
                assert answer == b"", answer
                outcomes["closed by the mirror"] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        server.kill()
        server.wait()
        wait_for(lambda: outcomes["refused"] > 50, 10, "the mirror to go")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a connection hung"
    assert outcomes["answered"] > 0
    deadline = time.monotonic() + 10
    while (
        now := live_socket_count(daemon.proc.pid, (agent,)) - listener_count(daemon.proc.pid)
    ) > before + 4:
        assert time.monotonic() < deadline, (
            f"the daemon holds {now} connection sockets, {before} before the port stopped; "
            f"{outcomes}"
        )
        time.sleep(0.05)
    assert all(
        entry["port"] != port or entry["direction"] != "vm-to-host" for entry in daemon.ports()
    )
    record(
        "bad input",
        "connections to a port that stopped listening",
        sum(outcomes.values()),
        "conns",
        ", ".join(f"{value} {key}" for key, value in outcomes.items()) + "; none hung, no leak",
    )
