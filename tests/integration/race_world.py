"""A daemon whose "host" is a network namespace the test made, and trials that listen on one
side and connect from the other at once.

Keeping the host side in its own namespace keeps the daemon's hold table (and its mirrors)
away from everything else on the machine. Sockets of either side are made by threads that
entered that namespace (``NamespaceSockets``): a socket keeps the namespace it was made in,
so one test thread plays the server on one side and the client on the other with no process
start in between, as a script that connects the moment "ready" is printed.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.integration.vm_helpers import wait_for
from vm.transport.namespace_sockets import NamespaceSockets

TRIAL_TIMEOUT = 2.0
LOOPBACK: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
_KINDS = tuple(
    (family, kind)
    for family in (socket.AF_INET, socket.AF_INET6)
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)
)


@dataclass
class RaceWorld:
    daemon: RunningDaemon
    host: NamespaceSockets
    vm: NamespaceSockets
    host_netns: str
    ports: Iterator[int]

    def side(self, name: str) -> NamespaceSockets:
        return self.host if name == "host" else self.vm

    def hold_status(self) -> dict[str, dict[str, Any]]:
        """Each side's hold ("host", "vm"), as the daemon's status reports it."""
        return dict(self.daemon.client.get("/v1/status")["hold"])


@contextmanager
def race_world(home: Path, hold: bool = True, first_port: int = 20000) -> Iterator[RaceWorld]:
    """A host namespace with loopback up, a daemon in it on a namespace VM, both socket pools."""
    name = f"hostnet-race-{os.getpid()}-{first_port}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = f"/run/netns/{name}"
    daemon = None
    pools: list[NamespaceSockets] = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        daemon = start_daemon(
            home,
            {"HostNetworkingEnabled": True},
            prefix=("nsenter", f"--net={path}"),
            extra_env={"HOSTNET_HOLD": "on" if hold else "off"},
        )
        wait_for(
            lambda: (
                daemon is not None
                and daemon.client.get("/v1/status")["agent"]["state"] == "connected"
            ),
            10,
            "the agent to connect",
        )
        for netns in (path, f"/run/netns/{daemon.netns['name']}"):
            pool = NamespaceSockets(netns)
            pool.start(_KINDS)
            pools.append(pool)
        yield RaceWorld(daemon, pools[0], pools[1], path, itertools.count(first_port))
    finally:
        for pool in pools:
            pool.stop()
        if daemon is not None:
            daemon.stop()
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _server(pool: NamespaceSockets, proto: str, family: int, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    server = pool.take(family, kind)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((LOOPBACK[family], port))
    if proto == "tcp":
        server.listen(16)
    server.settimeout(TRIAL_TIMEOUT)
    return server


def trial(world: RaceWorld, server_side: str, proto: str, family: int) -> float | None:
    """Listen (or bind) on ``server_side``, then at once connect from the other side and
    exchange one message each way. Seconds from listen() returning to the first answer,
    or None if the connection was refused or nothing came back."""
    client_side = "vm" if server_side == "host" else "host"
    port = next(world.ports)
    address = (LOOPBACK[family], port)
    server = _server(world.side(server_side), proto, family, port)
    started = time.perf_counter()
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    client = world.side(client_side).take(family, kind)
    client.settimeout(TRIAL_TIMEOUT)
    accepted: socket.socket | None = None
    try:
        client.connect(address)
        client.send(b"ping")
        if proto == "tcp":
            accepted, _peer = server.accept()
            accepted.settimeout(TRIAL_TIMEOUT)
            assert accepted.recv(4) == b"ping"
            accepted.sendall(b"pong")
        else:
            data, peer = server.recvfrom(64)
            assert data == b"ping"
            server.sendto(b"pong", peer)
        if client.recv(4) != b"pong":
            return None
        return time.perf_counter() - started
    except OSError:
        return None
    finally:
        for sock in (client, accepted, server):
            if sock is not None:
                sock.close()


def refusal(world: RaceWorld, client_side: str, proto: str, family: int) -> float | None:
    """Seconds until a connection to a port nobody listens on (on either side) is refused,
    or None if it was not refused (it got through, or nothing came back)."""
    port = next(world.ports)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    client = world.side(client_side).take(family, kind)
    client.settimeout(TRIAL_TIMEOUT)
    started = time.perf_counter()
    try:
        client.connect((LOOPBACK[family], port))
        if proto == "udp":
            client.send(b"ping")
            client.recv(4)
        return None
    except ConnectionRefusedError:
        return time.perf_counter() - started
    except OSError as exc:
        return time.perf_counter() - started if exc.errno == errno.ECONNREFUSED else None
    finally:
        client.close()


def first_connect(world: RaceWorld, server_side: str, family: int, give_up: float = 5.0) -> float:
    """Seconds from a TCP listen() on ``server_side`` returning to the first connection from
    the other side that gets an answer, retrying refused attempts at once (what a client
    polling for a port does). BenchError-free: raises TimeoutError after ``give_up``."""
    client_side = "vm" if server_side == "host" else "host"
    port = next(world.ports)
    server = _server(world.side(server_side), "tcp", family, port)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < give_up:
            client = world.side(client_side).take(family, socket.SOCK_STREAM)
            client.settimeout(TRIAL_TIMEOUT)
            try:
                client.connect((LOOPBACK[family], port))
                client.send(b"ping")
                accepted, _peer = server.accept()
                with accepted:
                    accepted.settimeout(TRIAL_TIMEOUT)
                    if accepted.recv(4) == b"ping":
                        accepted.sendall(b"pong")
                        if client.recv(4) == b"pong":
                            return time.perf_counter() - started
            except OSError:
                pass
            finally:
                client.close()
        raise TimeoutError(f"no connection to port {port} within {give_up} s")
    finally:
        server.close()


def first_answer_udp(
    world: RaceWorld, server_side: str, family: int, give_up: float = 5.0, retry: float = 0.005
) -> float:
    """Seconds from a UDP bind() on ``server_side`` returning to the first datagram from the
    other side that the server answers and the client hears back; the client sends again
    every ``retry`` seconds until then (a datagram to a port nobody serves yet is lost).
    Raises TimeoutError after ``give_up``."""
    client_side = "vm" if server_side == "host" else "host"
    port = next(world.ports)
    server = _server(world.side(server_side), "udp", family, port)
    server.settimeout(retry)
    client = world.side(client_side).take(family, socket.SOCK_DGRAM)
    client.settimeout(retry)
    started = time.perf_counter()
    try:
        client.connect((LOOPBACK[family], port))
        while time.perf_counter() - started < give_up:
            try:
                client.send(b"ping")
                data, peer = server.recvfrom(64)
                if data == b"ping":
                    server.sendto(b"pong", peer)
                    if client.recv(4) == b"pong":
                        return time.perf_counter() - started
            except OSError:  # lost, refused (ICMP) or not yet answered: send again
                pass
        raise TimeoutError(f"no answer on UDP port {port} within {give_up} s")
    finally:
        client.close()
        server.close()
