"""Two scratch network namespaces joined by a veth pair: a stand-in host and a VM, so the
kernel path's tables are tried for real without touching the machine's own ruleset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from proxy.nat.ruleset import NatLink

PEER = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(64); print("ready", flush=True)
    while True:
        c, peer = s.accept()
        while data := c.recv(65536):
            c.sendall(f"{peer[0]}:".encode() + data)
        c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(f"{peer[0]}:".encode() + data, peer)
"""
"""A server that answers every message with the peer address it saw, then the message."""

ASK = r"""
import socket, sys
proto, host, port, message = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
try:
    if proto == "tcp":
        c = socket.create_connection((host, port), timeout=float(sys.argv[5]))
        c.sendall(message); print(c.recv(65536).decode())
    else:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(float(sys.argv[5]))
        c.sendto(message, (host, port)); print(c.recv(65536).decode())
except OSError as exc:
    print(f"error:{type(exc).__name__}")
"""


@dataclass
class NatPair:
    host_ns: str
    vm_ns: str
    link: NatLink

    @property
    def host_path(self) -> str:
        return f"/run/netns/{self.host_ns}"

    @property
    def vm_path(self) -> str:
        return f"/run/netns/{self.vm_ns}"

    def prefix(self, side: str) -> list[str]:
        path = self.host_path if side == "host" else self.vm_path
        return ["nsenter", f"--net={path}"]

    def serve(self, side: str, proto: str, host: str, port: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*self.prefix(side), sys.executable, "-c", PEER, proto, host, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def ask(
        self, side: str, proto: str, host: str, port: int, message: str, timeout: float = 2
    ) -> str:
        """What a client on ``side`` gets back: ``PEER_SEEN:message``, or ``error:...``."""
        done = subprocess.run(
            [
                *self.prefix(side),
                sys.executable,
                "-c",
                ASK,
                proto,
                host,
                str(port),
                message,
                str(timeout),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip()

    def nft(self, side: str, *args: str) -> str:
        done = subprocess.run(
            [*self.prefix(side), "nft", *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def sysctl(self, side: str, ifname: str) -> str:
        key = f"net.ipv4.conf.{ifname}.route_localnet"
        done = subprocess.run(
            [*self.prefix(side), "sysctl", "-n", key], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def nat_pair(tag: str) -> Iterator[NatPair]:
    """Namespaces ``k15h-TAG`` and ``k15v-TAG``, loopback up, a veth with 10.199.x.1/.2."""
    suffix = f"{tag}{os.getpid() % 10000}"
    host_ns, vm_ns = f"k15h-{suffix}", f"k15v-{suffix}"
    link = NatLink(f"kh{suffix}"[:15], f"kv{suffix}"[:15], "10.199.0.1", "10.199.0.2")
    for ns in (host_ns, vm_ns):
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    try:
        _ip("-n", host_ns, "link", "add", link.host_if, "type", "veth", "peer", "name", link.vm_if)
        _ip("-n", host_ns, "link", "set", link.vm_if, "netns", vm_ns)
        for ns, ifname, addr in (
            (host_ns, link.host_if, link.host_ip),
            (vm_ns, link.vm_if, link.vm_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
        yield NatPair(host_ns, vm_ns, link)
    finally:
        for ns in (host_ns, vm_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
