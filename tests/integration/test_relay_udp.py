"""The UDP relay between real loopback sockets: flows, expiry, the flow bound, big datagrams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from proxy.addresses import Endpoint
from proxy.udp_forwarder import MAX_DATAGRAM, UdpForwarder
from tests.conftest import open_fds


@asynccontextmanager
async def udp_echo(host: str = "127.0.0.1") -> AsyncIterator[Endpoint]:
    """A UDP server that answers each datagram with ``b"echo:" + datagram`` (or itself if huge)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)

    def on_readable() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65536)
            except BlockingIOError:
                return
            reply = data if len(data) > 60000 else b"echo:" + data
            sock.sendto(reply, peer)

    loop.add_reader(sock.fileno(), on_readable)
    try:
        yield Endpoint(host, sock.getsockname()[1])
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


def client_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


async def ask(sock: socket.socket, to: Endpoint, data: bytes, timeout: float = 5) -> bytes:
    loop = asyncio.get_running_loop()
    sock.sendto(data, to.sockaddr)  # uvloop has no sock_sendto; a UDP send does not block here
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)


async def test_several_clients_get_their_own_replies() -> None:
    async with udp_echo() as target:
        relay = UdpForwarder(Endpoint("127.0.0.1", 0), target=target)
        await relay.start()
        try:
            clients = [client_socket() for _ in range(8)]
            for round_ in range(3):
                replies = await asyncio.gather(
                    *(ask(c, relay.bound, f"{i}-{round_}".encode()) for i, c in enumerate(clients))
                )
                assert replies == [f"echo:{i}-{round_}".encode() for i in range(8)]
            assert relay.flow_count == 8
            assert relay.counters.udp_flows_total == 8
            for c in clients:
                c.close()
        finally:
            await relay.stop()


async def test_largest_datagram_passes_whole() -> None:
    async with udp_echo() as target:
        relay = UdpForwarder(Endpoint("127.0.0.1", 0), target=target)
        await relay.start()
        try:
            client = client_socket()
            payload = bytes(range(256)) * (MAX_DATAGRAM // 256) + b"x" * (MAX_DATAGRAM % 256)
            assert len(payload) == 65_507
            assert await ask(client, relay.bound, payload) == payload
            client.close()
        finally:
            await relay.stop()


async def test_idle_flows_expire() -> None:
    async with udp_echo() as target:
        relay = UdpForwarder(Endpoint("127.0.0.1", 0), target=target, idle_timeout=0.3)
        await relay.start()
        try:
            client = client_socket()
            await ask(client, relay.bound, b"hi")
            assert relay.flow_count == 1
            await asyncio.sleep(0.8)
            assert relay.flow_count == 0
            assert await ask(client, relay.bound, b"again") == b"echo:again"  # a new flow
            assert relay.counters.udp_flows_total == 2
            client.close()
        finally:
            await relay.stop()


async def test_flow_bound_evicts_longest_idle() -> None:
    async with udp_echo() as target:
        relay = UdpForwarder(Endpoint("127.0.0.1", 0), target=target, max_flows=4)
        await relay.start()
        try:
            clients = [client_socket() for _ in range(6)]
            for c in clients:
                await ask(c, relay.bound, b"x")
            assert relay.flow_count == 4
            assert relay.counters.udp_flows_evicted == 2
            # the newest four still work; the evicted first client gets a fresh flow
            assert await ask(clients[5], relay.bound, b"y") == b"echo:y"
            assert await ask(clients[0], relay.bound, b"z") == b"echo:z"
            for c in clients:
                c.close()
        finally:
            await relay.stop()


async def test_port_unreachable_keeps_relay_and_other_flows() -> None:
    """Datagrams to a closed port bring back ICMP errors: counted, and nothing else breaks."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_endpoint = Endpoint("127.0.0.1", dead.getsockname()[1])
    dead.close()
    async with udp_echo() as target:
        to_dead = UdpForwarder(Endpoint("127.0.0.1", 0), target=dead_endpoint)
        to_live = UdpForwarder(Endpoint("127.0.0.1", 0), target=target)
        await to_dead.start()
        await to_live.start()
        try:
            lost = client_socket()
            for _ in range(5):
                lost.sendto(b"anyone?", to_dead.bound.sockaddr)
                await asyncio.sleep(0.02)
            assert to_dead.counters.errors >= 1
            assert to_dead.flow_count == 1  # the flow survived its ICMP errors
            client = client_socket()
            assert await ask(client, to_live.bound, b"ok") == b"echo:ok"
            lost.close()
            client.close()
        finally:
            await to_dead.stop()
            await to_live.stop()


async def test_ipv6_udp() -> None:
    async with udp_echo("::1") as target:
        relay = UdpForwarder(Endpoint("::1", 0), target=target)
        await relay.start()
        try:
            client = client_socket(socket.AF_INET6)
            assert await ask(client, relay.bound, b"six") == b"echo:six"
            client.close()
        finally:
            await relay.stop()


async def test_stop_leaks_no_fd() -> None:
    async with udp_echo() as target:
        before = open_fds()
        relay = UdpForwarder(Endpoint("127.0.0.1", 0), target=target)
        await relay.start()
        clients = [client_socket() for _ in range(10)]
        for c in clients:
            await ask(c, relay.bound, b"x")
        for c in clients:
            c.close()
        await relay.stop()
        assert relay.counters.udp_flows_open == 0
        assert open_fds() - before == set()


def test_forward_needs_target_or_factory() -> None:
    with pytest.raises(ValueError, match="needs a target"):
        UdpForwarder(Endpoint("127.0.0.1", 1))
