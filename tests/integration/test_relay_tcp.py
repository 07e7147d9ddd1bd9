"""The TCP relay between real loopback sockets: integrity, half-close, resets, bounds, cleanup."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct

import pytest

from proxy.addresses import Endpoint
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from tests.conftest import open_fds
from tests.integration.relay_helpers import connect, echo_handler, recv_all, tcp_server

pytestmark = pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])


async def start_relay(target: Endpoint, use_splice: bool, host: str = "127.0.0.1") -> TcpForwarder:
    relay = TcpForwarder(Endpoint(host, 0), tcp_connector(target), use_splice=use_splice)
    await relay.start()
    return relay


async def test_64_mib_both_directions_byte_exact(use_splice: bool) -> None:
    """64 MiB each way at once; the server hashes what it gets and sends its own 64 MiB."""
    loop = asyncio.get_running_loop()
    size = 64 << 20
    upload = os.urandom(size)
    download = os.urandom(size)
    received_by_server: list[bytes] = []

    async def handler(conn: socket.socket) -> None:
        sender = loop.create_task(loop.sock_sendall(conn, download))
        received_by_server.append(await recv_all(conn))
        await sender
        conn.shutdown(socket.SHUT_WR)

    async with tcp_server("127.0.0.1", handler) as target:
        relay = await start_relay(target, use_splice)
        try:
            client = await connect(relay.bound)

            async def send_then_shut() -> None:
                await loop.sock_sendall(client, upload)
                client.shutdown(socket.SHUT_WR)

            sender = loop.create_task(send_then_shut())
            got = await recv_all(client)
            await sender
            client.close()
            await asyncio.sleep(0.05)
        finally:
            await relay.stop()
    assert hashlib.sha256(got).digest() == hashlib.sha256(download).digest()
    assert hashlib.sha256(received_by_server[0]).digest() == hashlib.sha256(upload).digest()
    assert relay.counters.bytes_in == size
    assert relay.counters.bytes_out == size


async def test_half_close_client_still_gets_reply(use_splice: bool) -> None:
    """The client shuts down writing; the server sees EOF, then replies; the client reads it."""
    loop = asyncio.get_running_loop()

    async def handler(conn: socket.socket) -> None:
        request = await recv_all(conn)  # returns only once the client's FIN arrived
        await loop.sock_sendall(conn, b"reply to " + request)
        conn.shutdown(socket.SHUT_WR)

    async with tcp_server("127.0.0.1", handler) as target:
        relay = await start_relay(target, use_splice)
        try:
            client = await connect(relay.bound)
            await loop.sock_sendall(client, b"question")
            client.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(recv_all(client), 5) == b"reply to question"
            client.close()
        finally:
            await relay.stop()


async def test_reset_from_server_reaches_client(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()

    async def handler(conn: socket.socket) -> None:
        await loop.sock_recv(conn, 100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    async with tcp_server("127.0.0.1", handler) as target:
        relay = await start_relay(target, use_splice)
        try:
            client = await connect(relay.bound)
            await loop.sock_sendall(client, b"x")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(recv_all(client), 5)
            client.close()
        finally:
            await relay.stop()


async def test_reset_from_client_reaches_server(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    async def handler(conn: socket.socket) -> None:
        try:
            await recv_all(conn)
            outcome.set_result("eof")
        except ConnectionResetError:
            outcome.set_result("reset")

    async with tcp_server("127.0.0.1", handler) as target:
        relay = await start_relay(target, use_splice)
        try:
            client = await connect(relay.bound)
            await loop.sock_sendall(client, b"hello")
            await asyncio.sleep(0.1)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            assert await asyncio.wait_for(outcome, 5) == "reset"
        finally:
            await relay.stop()


async def test_1000_concurrent_connections_keep_their_bytes(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    async with tcp_server("127.0.0.1", echo_handler) as target:
        relay = await start_relay(target, use_splice)
        try:

            async def one(i: int) -> bool:
                payload = hashlib.sha256(str(i).encode()).digest() * 64
                client = await connect(relay.bound)
                try:
                    await loop.sock_sendall(client, payload)
                    client.shutdown(socket.SHUT_WR)
                    return await recv_all(client) == payload
                finally:
                    client.close()

            results = await asyncio.gather(*(one(i) for i in range(1000)))
        finally:
            await relay.stop()
    assert all(results)
    assert relay.counters.connections_total == 1000


async def test_slow_reader_bounds_buffering(use_splice: bool) -> None:
    """A client that never reads stalls the server's writes: the relay holds a bounded amount."""
    written = 0
    stalled = asyncio.Event()

    async def handler(conn: socket.socket) -> None:
        nonlocal written
        chunk = b"z" * 65536
        idle_rounds = 0
        while idle_rounds < 20:  # 20 x 25 ms without progress: the writer is stalled
            try:
                written += conn.send(chunk)
                idle_rounds = 0
            except BlockingIOError:
                idle_rounds += 1
                await asyncio.sleep(0.025)
        stalled.set()
        await asyncio.sleep(30)

    async with tcp_server("127.0.0.1", handler) as target:
        relay = await start_relay(target, use_splice)
        try:
            client = await connect(relay.bound)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            await asyncio.wait_for(stalled.wait(), 20)
            in_relay = relay.counters.bytes_out
            # Kernel socket buffers on loopback autotune to a few MiB per hop; the relay
            # itself adds at most 2 x 256 KiB. 64 MiB would mean nothing pushed back.
            assert written < 32 << 20
            assert in_relay <= written
            client.close()
        finally:
            await relay.stop()


async def test_ipv6_relay(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    async with tcp_server("::1", echo_handler) as target:
        relay = await start_relay(target, use_splice, host="::1")
        try:
            client = await connect(relay.bound)
            await loop.sock_sendall(client, b"over ipv6")
            client.shutdown(socket.SHUT_WR)
            assert await recv_all(client) == b"over ipv6"
            client.close()
        finally:
            await relay.stop()


async def test_unreachable_target_resets_client_and_counts(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    relay = await start_relay(Endpoint("127.0.0.1", port), use_splice)
    try:
        client = await connect(relay.bound)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(loop.sock_recv(client, 10), 5)
        client.close()
        assert relay.counters.errors == 1
    finally:
        await relay.stop()


async def test_stop_closes_everything_and_leaks_no_fd(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    async with tcp_server("127.0.0.1", echo_handler) as target:
        before = open_fds()
        relay = await start_relay(target, use_splice)
        clients = [await connect(relay.bound) for _ in range(20)]
        for client in clients:
            await loop.sock_sendall(client, b"ping")
            assert await loop.sock_recv(client, 10) == b"ping"
        assert relay.counters.connections_open == 20
        await relay.stop()
        for client in clients:
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(recv_all(client), 5)
            client.close()
        await asyncio.sleep(0.1)
    assert relay.counters.connections_open == 0
    leaked = open_fds() - before
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"
