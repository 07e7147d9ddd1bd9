"""Splice pipes are lent only while bytes are in flight, from a bounded pool: idle
connections hold none, and connections past the bound copy through user space, byte-exact."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

from proxy.addresses import Endpoint
from proxy.pipe_pool import IDLE_KEPT, PIPES, PipePool
from proxy.relay_result import Outcome
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from proxy.tcp_relay import RelayPair
from tests.integration.relay_helpers import connect, echo_handler, recv_all, tcp_server


def open_pipes() -> int:
    """How many of this process's descriptors are pipe ends."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("pipe:")
        except FileNotFoundError:  # the listing's own descriptor, closed meanwhile
            pass
    return count


async def test_idle_connections_hold_no_pipes() -> None:
    """200 connections that each carried bytes and then went quiet: no pipe is lent, and the
    process holds no more pipe ends than the pool keeps idle (before: four per connection)."""
    loop = asyncio.get_running_loop()
    count = 200
    async with tcp_server("127.0.0.1", echo_handler) as target:
        relay = TcpForwarder(Endpoint("127.0.0.1", 0), tcp_connector(target), use_splice=True)
        await relay.start()
        pipes_before = open_pipes()
        clients = []
        try:
            for index in range(count):
                client = await connect(relay.bound)
                payload = index.to_bytes(4, "big") * 1000
                await loop.sock_sendall(client, payload)
                got = b""
                while len(got) < len(payload):
                    got += await loop.sock_recv(client, 65536)
                assert got == payload
                clients.append(client)
            assert relay.counters.connections_open == count
            assert PIPES.lent == 0
            assert open_pipes() - pipes_before <= 2 * IDLE_KEPT
        finally:
            for client in clients:
                client.close()
            await relay.stop()


Stalled = tuple[list[RelayPair], list[socket.socket], list[bytes], list[asyncio.Task[None]]]


async def stalled_pairs(pool: PipePool, count: int, size: int) -> tuple[Stalled, int]:
    """``count`` relays whose servers each send ``size`` bytes to a client that does not read
    yet: the pairs, the clients, what each server sent, the servers' tasks; and the most
    pipes lent meanwhile."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Task[None]] = []
    pairs: list[RelayPair] = []
    clients: list[socket.socket] = []
    sent: list[bytes] = []
    most_lent = 0
    for _ in range(count):
        # client <-> relay_client ... relay_upstream <-> server: real (unix) kernel sockets
        client, relay_client = socket.socketpair()
        relay_upstream, server = socket.socketpair()
        for sock in (client, relay_client, relay_upstream, server):
            sock.setblocking(False)
        pair = RelayPair(relay_client, relay_upstream, lambda n: None, lambda n: None, pipes=pool)
        pair.start()
        payload = os.urandom(size)
        servers.append(loop.create_task(send_and_close(server, payload)))
        pairs.append(pair)
        clients.append(client)
        sent.append(payload)
    for _ in range(50):  # until every relay has filled what its client will take
        await asyncio.sleep(0.02)
        most_lent = max(most_lent, pool.lent)
    return (pairs, clients, sent, servers), most_lent


async def send_and_close(sock: socket.socket, payload: bytes) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, payload)
    sock.shutdown(socket.SHUT_WR)
    await recv_all(sock)
    sock.close()


async def test_past_the_pools_bound_connections_copy_and_keep_every_byte() -> None:
    """Six relays each stuck behind a client that does not read, with a pool of two pipes:
    two splice, four copy, none waits for a pipe, and every byte arrives once the clients
    read. The pool never lends more than its bound."""
    pool = PipePool(max_lent=2, idle_kept=2)
    (pairs, clients, sent, servers), most_lent = await stalled_pairs(pool, count=6, size=4 << 20)
    try:
        assert most_lent == 2, most_lent
        assert sum(p.directions[1].pipe is not None for p in pairs) == 2
        assert sum(p.directions[1].held is not None for p in pairs) == 4
        for client, payload in zip(clients, sent, strict=True):
            client.shutdown(socket.SHUT_WR)
            got = await asyncio.wait_for(recv_all(client), 20)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        outcomes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in pairs)), 5)
        assert outcomes == [Outcome.CLOSED] * len(pairs)
        await asyncio.wait_for(asyncio.gather(*servers), 5)
        assert pool.lent == 0
        assert pool.idle <= 2
    finally:
        for pair in pairs:
            pair.cancel()
        for task in servers:
            task.cancel()
        for client in clients:
            client.close()
        pool.release_idle()
