"""Connect-at-once trials across a real QEMU VM (issue 16): listen on one side, tell the other
over an already-mirrored coordinator connection, and connect from there the moment it hears.

The guest's half is one Python program (stdlib only, the host's Python seen over 9p) started
with ``hostnet vm exec --detach``; it reads a port per line and answers one line per trial:

- ``connect`` trials: the host has just listened on the port; the guest connects at once,
  sends ``ping``, expects ``pong`` and answers ``ok`` or ``fail <why>``;
- ``listen`` trials: the guest listens on the port, answers ``ready``, and serves one
  ``ping``/``pong``; the host connects the moment it reads ``ready``.

The coordinator's round trip is a few milliseconds, well under what discovery alone needs
to mirror a new port (tens of milliseconds on this machine, more under TCG), so a trial
that gets through shows the hold did its work.
"""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

TRIAL_TIMEOUT = 10.0

GUEST = r"""
import socket, sys
coordinator = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=120)
stream = coordinator.makefile("rwb", buffering=0)
for line in stream:
    mode, proto, port = line.decode().split()
    port = int(port)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.settimeout(10)
    try:
        if mode == "connect":
            sock.connect(("127.0.0.1", port))
            sock.send(b"ping")
            answer = b"ok" if sock.recv(4) == b"pong" else b"fail wrong reply"
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            if proto == "tcp":
                sock.listen(4)
                stream.write(b"ready\n")
                conn, _ = sock.accept()
                conn.settimeout(10)
                if conn.recv(4) == b"ping":
                    conn.sendall(b"pong")
                conn.close()
            else:
                stream.write(b"ready\n")
                data, peer = sock.recvfrom(64)
                if data == b"ping":
                    sock.sendto(b"pong", peer)
            answer = b"ok"
    except OSError as exc:
        answer = b"fail " + str(exc).encode()
    finally:
        sock.close()
    stream.write(answer + b"\n")
"""


@dataclass
class GuestPeer:
    """The host's end of the coordinator connection to the guest's program."""

    stream: BinaryIO

    def ask(self, mode: str, proto: str, port: int) -> None:
        self.stream.write(f"{mode} {proto} {port}\n".encode())
        self.stream.flush()

    def answer(self) -> str:
        return self.stream.readline().decode().strip()


def fresh_ports(proto: str) -> Iterator[int]:
    """Ports never used before in this run, free on the host: a port just closed on one side
    may still be mirrored on the other until its release, so none is used twice. They lie
    below the ephemeral range (32768 up), where relays' own sockets would take them."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    for port in itertools.count(random.randrange(20000, 31000, 100)):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


@contextmanager
def coordinator() -> Iterator[tuple[socket.socket, int]]:
    """A host TCP listener on 127.0.0.1 (mirrored into the VM like any other)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(120)
    try:
        yield server, int(server.getsockname()[1])
    finally:
        server.close()


def guest_connects(peer: GuestPeer, proto: str, port: int) -> str:
    """The host listens on ``port``, then the guest connects at once: ``ok`` or why not."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.settimeout(TRIAL_TIMEOUT)
        if proto == "tcp":
            server.listen(4)
        peer.ask("connect", proto, port)  # listen() has returned: the guest connects now
        try:
            if proto == "tcp":
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(TRIAL_TIMEOUT)
                    if conn.recv(4) == b"ping":
                        conn.sendall(b"pong")
            else:
                data, sender = server.recvfrom(64)
                if data == b"ping":
                    server.sendto(b"pong", sender)
        except OSError as exc:
            peer.answer()
            return f"host side: {exc}"
        return peer.answer()


def host_connects(peer: GuestPeer, proto: str, port: int) -> str:
    """The guest listens on ``port``; the host connects the moment it hears: ``ok`` or why."""
    peer.ask("listen", proto, port)
    ready = peer.answer()
    if ready != "ready":
        return f"the guest did not listen: {ready}"
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(socket.AF_INET, kind) as client:
            client.settimeout(TRIAL_TIMEOUT)
            client.connect(("127.0.0.1", port))
            client.send(b"ping")
            reply = client.recv(4)
    except OSError as exc:
        peer.answer()
        return f"host side: {exc}"
    answer = peer.answer()
    return answer if reply == b"pong" else f"host side: reply {reply!r}; guest: {answer}"
