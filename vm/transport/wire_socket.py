"""The wire protocol on a real socket: exact frame reads, the handshake, and handed-over sockets.

Frames are read exactly (header, then payload), never past the end of the last one, so
once a stream turns raw every later byte is still in the kernel socket for splice(2).
On unix sockets, sockets handed over with SCM_RIGHTS are kept in arrival order and taken
by the message that announced them (OpenOk, Attach), whatever the read boundaries were.
"""

from __future__ import annotations

import array
import asyncio
import socket
from collections import deque
from typing import Literal

from proxy.wire import (
    NEED_DATA,
    PAUSED,
    Connection,
    ErrorCode,
    Event,
    Hello,
    Message,
    ProtocolError,
    Purpose,
    Ready,
    Role,
)
from proxy.wire.codec import MessageType, decode_payload, parse_header
from proxy.wire.limits import FRAME_HEADER_BYTES, MAX_HANDSHAKE_PAYLOAD

MAX_FDS_PER_READ = 8
CHUNK = 256 * 1024
HANDSHAKE_TIMEOUT = 5.0


class WireSocket:
    """A socket speaking hostnet's wire protocol through a :class:`Connection`."""

    def __init__(self, sock: socket.socket, connection: Connection | None = None) -> None:
        self.sock = sock
        self.connection = connection
        self.loop = asyncio.get_running_loop()
        self.unix = sock.family == socket.AF_UNIX
        self._fds: deque[int] = deque()
        self._write_lock = asyncio.Lock()
        self.chunked_reads = False
        """Read what is there rather than exact frames: set on control connections."""

    # -- reading --------------------------------------------------------------------------

    async def _wait(self, kind: Literal["read", "write"]) -> None:
        future: asyncio.Future[None] = self.loop.create_future()
        fd = self.sock.fileno()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        if kind == "read":
            self.loop.add_reader(fd, ready)
        else:
            self.loop.add_writer(fd, ready)
        try:
            await future
        finally:
            if kind == "read":
                self.loop.remove_reader(fd)
            else:
                self.loop.remove_writer(fd)

    def _recv_some(self, size: int) -> bytes:
        if not self.unix:
            return self.sock.recv(size)
        space = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)
        data, ancdata, _flags, _addr = self.sock.recvmsg(size, space)
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                self._fds.extend(fds)
        return data

    async def recv_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or fewer only if the peer closed the connection."""
        chunks: list[bytes] = []
        missing = size
        while missing:
            try:
                data = self._recv_some(missing)
            except BlockingIOError:
                await self._wait("read")
                continue
            if not data:
                break
            chunks.append(data)
            missing -= len(data)
        return b"".join(chunks)

    async def read_chunk(self) -> bytes:
        """Whatever has arrived, up to CHUNK bytes (b"" at the end of input).

        Only for control connections, which never turn raw: several frames per read, one
        system call instead of two per frame. Handed-over sockets stay in arrival order
        whatever the read boundaries, so this is safe with SCM_RIGHTS too.
        """
        while True:
            try:
                return self._recv_some(CHUNK)
            except BlockingIOError:
                await self._wait("read")

    async def read_frame(self) -> bytes:
        """One whole frame (header and payload), or what arrived before the peer closed."""
        header = await self.recv_exact(FRAME_HEADER_BYTES)
        if len(header) < FRAME_HEADER_BYTES:
            return header
        _kind, length = parse_header(header)
        # The Connection enforces the per-state limits; cap the read itself generously.
        payload = await self.recv_exact(min(length, 1 << 24))
        return header + payload

    # -- writing --------------------------------------------------------------------------

    async def write(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        async with self._write_lock:
            await self._write(data, fds)

    async def _write(self, data: bytes, fds: tuple[int, ...]) -> None:
        """Everything, in order; the caller holds the write lock, so tasks sharing a
        control connection never interleave their frames."""
        view = memoryview(data)
        first = True
        while view:
            try:
                if first and fds:
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    sent = self.sock.sendmsg([view], ancillary)
                else:
                    sent = self.sock.send(view)
            except BlockingIOError:
                await self._wait("write")
                continue
            first = False
            view = view[sent:]

    async def send(self, message: Message, fds: tuple[int, ...] = ()) -> None:
        assert self.connection is not None
        async with self._write_lock:
            await self._write(self.connection.send(message), fds)

    # -- events ---------------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event; reads whole frames as needed and writes automatic replies."""
        conn = self.connection
        assert conn is not None
        while True:
            try:
                event = conn.next_event()
            except ProtocolError:
                pending = conn.data_to_send()
                if pending:
                    try:
                        await self.write(pending)
                    except OSError:
                        pass
                raise
            pending = conn.data_to_send()
            if pending:
                await self.write(pending)
            if event is NEED_DATA:
                data = await (self.read_chunk() if self.chunked_reads else self.read_frame())
                conn.receive_data(data or b"")
                continue
            if event is PAUSED:
                raise ProtocolError(ErrorCode.PEER_CLOSED, "the connection is closed", remote=True)
            return event

    def take_fd(self) -> socket.socket | None:
        """The next socket the peer handed over, if any."""
        if not self._fds:
            return None
        sock = socket.socket(fileno=self._fds.popleft())
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        while self._fds:
            socket.socket(fileno=self._fds.popleft()).close()
        self.sock.close()

    # -- handshake ------------------------------------------------------------------------

    async def handshake(self, timeout: float = HANDSHAKE_TIMEOUT) -> Ready:
        assert self.connection is not None
        await self.write(self.connection.initiate())
        async with asyncio.timeout(timeout):
            return await self._until_ready()

    async def _until_ready(self) -> Ready:
        event = await self.next_event()
        if not isinstance(event, Ready):
            raise ProtocolError(ErrorCode.WRONG_STATE, f"expected the handshake, got {event}")
        return event


async def connect_wire(
    sock: socket.socket, role: Role, purpose: Purpose, secret: bytes
) -> WireSocket:
    """Authenticate a freshly connected socket as ``role`` for ``purpose``."""
    wire = WireSocket(sock, Connection(role, purpose, secret))
    try:
        await wire.handshake()
    except BaseException:
        wire.close()
        raise
    wire.chunked_reads = purpose == "control"
    return wire


async def accept_wire(sock: socket.socket, role: Role, secret: bytes) -> WireSocket:
    """Authenticate an accepted socket; its purpose comes from the peer's Hello."""
    wire = WireSocket(sock)
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            frame = await wire.read_frame()
        if len(frame) < FRAME_HEADER_BYTES:
            raise ProtocolError(ErrorCode.PEER_CLOSED, "the peer closed before its Hello")
        kind, length = parse_header(frame[:FRAME_HEADER_BYTES])
        if kind != MessageType.HELLO or length > MAX_HANDSHAKE_PAYLOAD:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "the first frame must be a Hello")
        hello = decode_payload(kind, frame[FRAME_HEADER_BYTES:])
        assert isinstance(hello, Hello)
        wire.connection = Connection(role, hello.purpose, secret)
        wire.connection.receive_data(frame)
        await wire.handshake()
    except BaseException:
        wire.close()
        raise
    wire.chunked_reads = wire.connection.purpose == "control"
    return wire
