"""The agent's OpenEngine stream: it reaches the VM's engine socket and nothing else.

A real agent in this process, on a unix transport (the socket is handed over) and on TCP
(the agent relays); the "engine" is a small unix server standing in for dockerd's socket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.wire import ErrorCode, OpenEngine, ProtocolError
from proxy.wire.codec import MESSAGE_TYPES, decode_payload, encode_frame
from proxy.wire.secret import load_or_create_secret
from vm.agent.engine_socket import ENGINE_SOCKETS, NO_ENGINE
from vm.agent.server import Agent
from vm.transport.address import TransportAddress
from vm.transport.streams import StreamRefused, open_engine_stream


class FakeEngine:
    """A unix server answering each connection with ``engine at PATH`` and what it got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeEngine:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        line = await reader.readline()
        writer.write(f"engine at {self.path}: ".encode() + line)
        await writer.drain()
        writer.close()


async def ask(sock: socket.socket, text: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(text)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


@pytest.fixture(params=["unix", "tcp"])
async def agent_at(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[TransportAddress, bytes, Path]]:
    """An agent whose VM engine socket is ``tmp_path/docker.sock`` (nothing there yet)."""
    if request.param == "unix":
        address = TransportAddress("unix", path=str(tmp_path / "agent.sock"))
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        address = TransportAddress("tcp", host="127.0.0.1", port=port)
    secret = load_or_create_secret(tmp_path / "secret")
    engine_socket = tmp_path / "docker.sock"
    agent = Agent(address, secret, engine_sockets=[tmp_path / "missing.sock", engine_socket])
    await agent.start()
    yield address, secret, engine_socket
    await agent.stop()


async def test_an_engine_stream_reaches_the_vms_engine_socket(
    agent_at: tuple[TransportAddress, bytes, Path],
) -> None:
    address, secret, engine_socket = agent_at
    async with FakeEngine(engine_socket) as engine:
        answer = await ask(await open_engine_stream(address, secret), b"GET /_ping\n")
    assert answer == f"engine at {engine_socket}: GET /_ping\n".encode()
    assert engine.connections == 1


async def test_with_no_engine_the_stream_is_refused_with_the_paths_tried(
    agent_at: tuple[TransportAddress, bytes, Path],
    tmp_path: Path,
) -> None:
    address, secret, engine_socket = agent_at
    async with FakeEngine(tmp_path / "elsewhere.sock") as decoy:  # another unix socket
        with pytest.raises(StreamRefused) as caught:
            await open_engine_stream(address, secret)
    assert caught.value.code is ErrorCode.NOT_LISTENING
    assert caught.value.reason.startswith(NO_ENGINE)
    assert str(engine_socket) in caught.value.reason
    assert str(tmp_path / "missing.sock") in caught.value.reason
    assert decoy.connections == 0  # the agent tried only its own engine paths


def test_an_engine_stream_cannot_name_a_path() -> None:
    """OpenEngine carries no path; one smuggled after it is refused by the decoder, so
    the daemon can never point the agent at an arbitrary unix socket."""
    frame = encode_frame(OpenEngine())
    assert frame[1:5] == b"\0\0\0\0"  # an empty payload
    with pytest.raises(ProtocolError) as caught:
        decode_payload(MESSAGE_TYPES[OpenEngine], b"/run/containerd/containerd.sock")
    assert caught.value.code is ErrorCode.BAD_MESSAGE
    assert decode_payload(MESSAGE_TYPES[OpenEngine], b"") == OpenEngine()


def test_by_default_the_agent_knows_only_dockers_usual_sockets(tmp_path: Path) -> None:
    address = TransportAddress("unix", path=str(tmp_path / "agent.sock"))
    agent = Agent(address, b"x" * 32)
    assert agent.engine_sockets == ENGINE_SOCKETS
    assert [str(path) for path in ENGINE_SOCKETS] == ["/var/run/docker.sock", "/run/docker.sock"]
