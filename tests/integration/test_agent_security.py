"""The agent as an attacker or a confused client would meet it: secrets, ports, addresses."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.wire import ErrorCode, ProtocolError, Response
from proxy.wire.secret import load_or_create_secret
from tests.integration.relay_helpers import recv_all
from vm.agent.server import Agent
from vm.transport.address import TransportAddress
from vm.transport.control_requests import RequestTracker
from vm.transport.streams import StreamRefused, open_stream
from vm.transport.targets import TargetError
from vm.transport.wire_socket import connect_wire


async def wait_until_seen(agent: Agent, port: int) -> None:
    """Until the agent's discovery reports a listener on ``port`` (so a refusal is about
    the address asked for, not about discovery being late)."""
    for _ in range(250):
        if any(item.port == port for item in agent.watcher.current):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the agent never saw port {port}")


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Agent, TransportAddress, bytes]]:
    """A real agent in this process's own network namespace, on a unix socket."""
    address = TransportAddress("unix", path=str(tmp_path / "agent.sock"))
    secret = load_or_create_secret(tmp_path / "secret")
    agent = Agent(address, secret)
    await agent.start()
    yield agent, address, secret
    await agent.stop()


async def test_wrong_secret_is_refused_and_nothing_grows(
    agent: tuple[Agent, TransportAddress, bytes],
) -> None:
    server, address, _secret = agent
    for _ in range(50):
        with pytest.raises(ProtocolError) as caught:
            await connect_wire(await address.connect(), "daemon", "control", os.urandom(32))
        assert caught.value.code is ErrorCode.AUTH_FAILED
    await asyncio.sleep(0.1)
    assert server.control is None
    assert len(server._tasks) <= 1  # the watcher's report, if one runs; no stuck handshakes


async def test_stream_to_a_port_that_does_not_listen_is_refused(
    agent: tuple[Agent, TransportAddress, bytes],
) -> None:
    _server, address, secret = agent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening
        with pytest.raises(StreamRefused) as caught:
            await open_stream(address, secret, "daemon", "tcp", "127.0.0.1", port)
    assert caught.value.code is ErrorCode.NOT_LISTENING


async def test_stream_to_an_address_other_than_the_listeners_is_refused(
    agent: tuple[Agent, TransportAddress, bytes],
) -> None:
    """A listener on 127.0.0.1 does not make the agent a proxy to other addresses."""
    server, address, secret = agent
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        await wait_until_seen(server, port)
        for host in ("127.0.0.2", "192.0.2.1", "::1"):
            with pytest.raises(StreamRefused) as caught:
                await open_stream(address, secret, "daemon", "tcp", host, port)
            assert caught.value.code is ErrorCode.NOT_LISTENING
    finally:
        listener.close()


async def test_stream_to_a_listening_port_is_handed_over(
    agent: tuple[Agent, TransportAddress, bytes],
) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        await wait_until_seen(agent[0], port)
        sock = await open_stream(agent[1], agent[2], "daemon", "tcp", "127.0.0.1", port)
        conn, _ = await loop.sock_accept(listener)
        # The socket we got is connected to the listener itself (handed over, no relay).
        assert sock.getpeername()[1] == port
        await loop.sock_sendall(sock, b"direct")
        sock.shutdown(socket.SHUT_WR)
        assert await recv_all(conn) == b"direct"
        sock.close()
        conn.close()
    finally:
        listener.close()


async def test_open_on_the_control_connection_hands_the_socket_over(
    agent: tuple[Agent, TransportAddress, bytes],
) -> None:
    """The unix transport's fast path: one request, the connected socket in the answer."""
    server, address, secret = agent
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    control = await connect_wire(await address.connect(), "daemon", "control", secret)
    requests = RequestTracker()

    async def read_control() -> None:
        while True:
            event = await control.next_event()
            if isinstance(event, Response):
                handed = control.take_fd() if requests.expects_socket(event) else None
                requests.resolve(event, handed)

    reader = loop.create_task(read_control())
    try:
        await wait_until_seen(server, port)
        socks = [await requests.open(control, "tcp", "127.0.0.1", port) for _ in range(20)]
        for i, sock in enumerate(socks):
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_sendall(sock, f"n{i}".encode())
            sock.shutdown(socket.SHUT_WR)
            assert await recv_all(conn) == f"n{i}".encode()
            sock.close()
            conn.close()
        with pytest.raises(TargetError) as caught:
            await requests.open(control, "tcp", "127.0.0.1", port + 1 if port < 65535 else 1)
        assert caught.value.code is ErrorCode.NOT_LISTENING
    finally:
        reader.cancel()
        control.close()
        listener.close()
