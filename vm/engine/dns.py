"""The engine's DNS server: ``host.docker.internal`` for every container, the rest passed on.

dockerd 20.10 adds no name for the host by itself (Docker Desktop answers it from its own
DNS). dockerd's ``--dns`` points containers here, on the default bridge through their
resolv.conf and on user-defined networks through dockerd's embedded DNS, which forwards to
the same server. ``host.docker.internal`` and ``gateway.docker.internal`` are answered with
the host gateway address; every other question goes to the upstream servers as it came.

Run inside the VM's network namespace: ``python -m vm.engine.dns --listen ADDRESS
--gateway ADDRESS``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from vm.engine.dns_message import (
    RCODE_NOTIMP,
    RCODE_SERVFAIL,
    TYPE_A,
    DnsFormatError,
    Question,
    answer,
    failure,
    parse_query,
)

HOST_NAMES = frozenset({"host.docker.internal", "gateway.docker.internal"})
UPSTREAM_TIMEOUT = 2.0
MAX_MESSAGE = 4096

log = logging.getLogger("hostnet.engine.dns")


def upstream_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The nameservers of resolv.conf the VM can reach: loopback ones are the host's own."""
    servers = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if not address.is_loopback:
                servers.append(str(address))
    return servers


class Resolver:
    """Answers one query: the host names here, everything else from upstream."""

    def __init__(self, gateway: str, upstream: Sequence[str]) -> None:
        self.gateway = gateway
        self.upstream = list(upstream)

    async def resolve(self, data: bytes) -> bytes:
        try:
            question = parse_query(data)
        except DnsFormatError:
            return failure(data, RCODE_NOTIMP)
        if question.name in HOST_NAMES:
            return self.local(question)
        for server in self.upstream:
            reply = await ask_upstream(server, data)
            if reply is not None:
                return reply
        return answer(question, None, rcode=RCODE_SERVFAIL)

    def local(self, question: Question) -> bytes:
        # AAAA and other types: the name exists, with no record of that type (NOERROR).
        return answer(question, self.gateway if question.qtype == TYPE_A else None)


async def ask_upstream(server: str, data: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (server, 53))
            await loop.sock_sendall(sock, data)
            return await asyncio.wait_for(loop.sock_recv(sock, MAX_MESSAGE), UPSTREAM_TIMEOUT)
        except (OSError, TimeoutError):
            return None


class DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolver.resolve(data)
        if self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(listen: str, resolver: Resolver, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DnsProtocol(resolver), local_addr=(listen, 53)
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("answering on %s:53, upstream %s", listen, resolver.upstream or "none")
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vm.engine.dns")
    parser.add_argument("--listen", required=True, help="the VM address containers ask")
    parser.add_argument("--gateway", required=True, help="the address host.docker.internal is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.listen, Resolver(args.gateway, upstream_servers())))
    except OSError as exc:
        print(f"engine DNS: cannot listen on {args.listen}:53: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
