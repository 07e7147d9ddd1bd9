"""Opening a stream to the other side, and attaching one that the other side asked for.

Both return a socket that behaves like a connection to the final target: either the
target socket itself, handed over by the other side (unix transport), or the stream
connection, which the other side relays to the target.
"""

from __future__ import annotations

import socket

from proxy.errors import HostnetError
from proxy.wire import (
    Attach,
    Error,
    ErrorCode,
    Open,
    OpenEngine,
    OpenOk,
    Proto,
    ProtocolError,
    Role,
)
from vm.transport.address import TransportAddress
from vm.transport.wire_socket import WireSocket, connect_wire


class StreamRefused(HostnetError, ConnectionError):
    """The other side refused to open the stream; ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.reason = message


async def _expect_open_ok(wire: WireSocket) -> None:
    try:
        event = await wire.next_event()
    except ProtocolError as exc:
        raise StreamRefused(exc.code, exc.message) from None
    if isinstance(event, Error):
        raise StreamRefused(event.code, event.message)
    if not isinstance(event, OpenOk):
        raise StreamRefused(ErrorCode.WRONG_STATE, f"expected OpenOk, got {event}")


def _detach(wire: WireSocket) -> socket.socket:
    """The stream connection's socket, now carrying raw bytes."""
    wire.sock.setblocking(False)
    return wire.sock


async def open_stream(
    address: TransportAddress, secret: bytes, role: Role, proto: Proto, host: str, port: int
) -> socket.socket:
    """Ask the other side to connect ``proto host:port`` there; a socket to that target."""
    return await _open(address, secret, role, Open(proto, host, port))


async def open_engine_stream(address: TransportAddress, secret: bytes) -> socket.socket:
    """Ask the agent for a connection to its VM's container engine API socket (the path is
    the agent's to know: OpenEngine names none); a socket that speaks the engine's API."""
    return await _open(address, secret, "daemon", OpenEngine())


async def _open(
    address: TransportAddress, secret: bytes, role: Role, opener: Open | OpenEngine
) -> socket.socket:
    wire = await connect_wire(await address.connect(), role, "stream", secret)
    try:
        await wire.send(opener)
        await _expect_open_ok(wire)
        handed = wire.take_fd()
    except BaseException:
        wire.close()
        raise
    if handed is not None:
        wire.close()
        return handed
    return _detach(wire)


async def attach_stream(
    address: TransportAddress, secret: bytes, role: Role, stream_id: int, target: socket.socket
) -> socket.socket | None:
    """Serve the other side's StreamRequest ``stream_id`` with ``target``, already connected.

    On a unix transport ``target`` itself is handed over and None is returned (the caller
    closes its copy). Otherwise the raw stream connection is returned, to be relayed to
    ``target`` by the caller.
    """
    wire = await connect_wire(await address.connect(), role, "stream", secret)
    try:
        fds = (target.fileno(),) if address.passes_fds else ()
        await wire.send(Attach(stream_id), fds)
        await _expect_open_ok(wire)
    except BaseException:
        wire.close()
        raise
    if fds:
        wire.close()
        return None
    return _detach(wire)
