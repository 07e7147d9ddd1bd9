"""Soak: steady mixed load through the full path for HOSTNET_SOAK_SECONDS (default 600),
with the daemon's and the agent's memory and descriptors sampled every few seconds. Opt-in
(marker ``soak``; ``make reliability`` runs it).

The load: short TCP connections (request, echo, close), a bulk transfer every few seconds
(4 MiB each way, checked), and UDP round trips, host -> VM through the mirrors. Every byte
is checked. What must hold: no error, and no growth trend: the last quarter's samples are
within a small bound of the first quarter's (after a warm-up).
"""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.reliability.figures import record
from tests.reliability.leaks import fd_count

pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(0),
    pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root"),
]

SECONDS = float(os.environ.get("HOSTNET_SOAK_SECONDS", "600"))
SAMPLE_EVERY = 3.0
WARM_UP = min(20.0, SECONDS / 5)
RSS_BOUND_KB = 8 * 1024  # last quarter vs first quarter, medians
FD_BOUND = 8
BULK = 4 << 20
MIRROR_KB = 16  # the agent's memory per mirror of a host listener


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    session = daemon_session(tmp_path / "home", {"HostNetworkingEnabled": True})
    running = next(session)
    yield running
    with pytest.raises(StopIteration):
        next(session)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Load:
    """Client threads on the host; counts what went through and every failure."""

    def __init__(self, tcp_port: int, udp_port: int) -> None:
        self.tcp_port = tcp_port
        self.udp_port = udp_port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"tcp": 0, "bulk": 0, "udp": 0, "udp lost": 0, "bytes": 0}
        self.failures: list[str] = []

    def _count(self, kind: str, size: int) -> None:
        with self.lock:
            self.counts[kind] += 1
            self.counts["bytes"] += size

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def short_tcp(self, host: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            payload = f"short {n} via {host}".encode()
            try:
                answer = host_answer("tcp", host, self.tcp_port, payload, timeout=5)
            except OSError as exc:
                self._fail(f"tcp {host}: {exc}")
                continue
            if answer != b"echo:" + payload:
                self._fail(f"tcp {host}: wrong echo {answer[:40]!r}")
            self._count("tcp", 2 * len(payload))
            time.sleep(0.01)

    def bulk(self) -> None:
        while not self.stop.wait(2.0):
            data = os.urandom(BULK)
            try:
                answer = host_answer("tcp", "127.0.0.1", self.tcp_port, data, timeout=20)
            except OSError as exc:
                self._fail(f"bulk: {exc}")
                continue
            if hashlib.sha256(answer).digest() != hashlib.sha256(b"echo:" + data).digest():
                self._fail(f"bulk: {len(answer)} bytes came back, not the {BULK} sent")
            self._count("bulk", 2 * BULK)

    def udp(self) -> None:
        """Round trips from four long-lived client sockets (two per family), as a resolver
        or a game client would: four flows. (A new socket per datagram would be a new flow
        each, held until the idle expiry: 60 s, as the daemon does not yet apply
        HostNetworkingUdpIdleTimeoutSeconds.)"""
        clients = []
        for host in ("127.0.0.1", "::1", "127.0.0.1", "::1"):
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.settimeout(2)
            sock.connect((host, self.udp_port))
            clients.append(sock)
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                sock = clients[n % len(clients)]
                payload = f"udp {n}".encode() * 20
                try:
                    sock.send(payload)
                    answer = sock.recv(65536)
                    while answer != b"echo:" + payload:  # a late answer to an earlier try
                        answer = sock.recv(65536)
                except TimeoutError:  # UDP may drop a datagram under load: counted, bounded
                    self._count("udp lost", 0)
                    continue
                except OSError as exc:
                    self._fail(f"udp {sock.getpeername()[0]}: {exc}")
                    continue
                self._count("udp", 2 * len(payload))
                time.sleep(0.02)
        finally:
            for sock in clients:
                sock.close()

    def threads(self) -> list[threading.Thread]:
        return [
            threading.Thread(target=self.short_tcp, args=("127.0.0.1",), daemon=True),
            threading.Thread(target=self.short_tcp, args=("::1",), daemon=True),
            threading.Thread(target=self.bulk, daemon=True),
            threading.Thread(target=self.udp, daemon=True),
        ]


def host_mirrors(daemon: RunningDaemon) -> int:
    """The agent's mirrors of host listeners: they follow every program on this host (other
    test runs too), so the agent's descriptors are counted without them."""
    return sum(
        1
        for entry in daemon.ports()
        if entry["direction"] != "vm-to-host" and entry["state"] == "active"
    )


def trend(samples: list[float]) -> int:
    """Median of the last quarter minus median of the first quarter."""
    quarter = max(1, len(samples) // 4)
    return int(statistics.median(samples[-quarter:]) - statistics.median(samples[:quarter]))


def test_soak_steady_mixed_load(daemon: RunningDaemon) -> None:
    tcp_port, udp_port = free_port(), free_port("udp")
    servers = [
        start_server(daemon.vm_prefix, "tcp", "0.0.0.0", tcp_port),
        start_server(daemon.vm_prefix, "tcp", "::", tcp_port),
        start_server(daemon.vm_prefix, "udp", "0.0.0.0", udp_port),
        start_server(daemon.vm_prefix, "udp", "::", udp_port),
    ]
    load = Load(tcp_port, udp_port)
    threads = load.threads()
    agent = int(daemon.netns["agent_pid"])
    samples: list[tuple[float, int, int, int, int, int]] = []
    try:
        wait_for(
            lambda: (
                host_answer("tcp", "::1", tcp_port, b"x") == b"echo:x"
                and host_answer("udp", "::1", udp_port, b"x") == b"echo:x"
            ),
            10,
            "the mirrors",
        )
        for thread in threads:
            thread.start()
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < SECONDS:
            time.sleep(SAMPLE_EVERY)
            assert daemon.proc.poll() is None, "the daemon died"
            assert daemon.netns["agent_pid"] == agent, "the agent was restarted"
            if elapsed >= WARM_UP:
                mirrors = host_mirrors(daemon)
                samples.append(
                    (
                        elapsed,
                        rss_kb(daemon.proc.pid),
                        fd_count(daemon.proc.pid),
                        rss_kb(agent),
                        fd_count(agent) - mirrors,
                        mirrors,
                    )
                )
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)
        for server in servers:
            server.kill()
            server.wait()
    assert not load.failures, f"{len(load.failures)} failures, first: {load.failures[:5]}"
    assert len(samples) >= 4
    assert load.counts["udp lost"] <= max(2, load.counts["udp"] // 1000), load.counts
    daemon_rss, daemon_fds, agent_rss, agent_fds = ([s[i] for s in samples] for i in range(1, 5))
    growth = {
        "daemon RSS kB": trend(daemon_rss),
        "agent RSS kB": trend(agent_rss),
        "daemon fds": trend(daemon_fds),
        "agent fds": trend(agent_fds),
    }
    assert growth["daemon RSS kB"] < RSS_BOUND_KB, growth
    added_mirrors = max(0, trend([s[5] for s in samples]))
    assert growth["agent RSS kB"] < RSS_BOUND_KB + MIRROR_KB * added_mirrors, (
        growth,
        added_mirrors,
    )
    assert growth["daemon fds"] <= FD_BOUND and growth["agent fds"] <= FD_BOUND, growth
    counts = load.counts
    record(
        "soak",
        "steady mixed load, no growth",
        round(SECONDS),
        "s",
        f"{counts['tcp']:,} short TCP, {counts['bulk']} bulk x{BULK >> 20} MiB, "
        f"{counts['udp']:,} UDP ({counts['udp lost']} lost), "
        f"{counts['bytes'] / 1e9:.1f} GB checked; "
        f"daemon RSS {min(daemon_rss) // 1024}-{max(daemon_rss) // 1024} MB "
        f"(trend {growth['daemon RSS kB']:+d} kB), fds {min(daemon_fds)}-{max(daemon_fds)}; "
        f"agent RSS {min(agent_rss) // 1024}-{max(agent_rss) // 1024} MB "
        f"(trend {growth['agent RSS kB']:+d} kB), fds {min(agent_fds)}-{max(agent_fds)} "
        f"besides its mirrors of host listeners ({added_mirrors:+d})",
    )
