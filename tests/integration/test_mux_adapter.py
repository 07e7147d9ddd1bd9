"""The multiplexer's asyncio adapter on real sockets: two sessions over a socketpair (the byte
stream, as QEMU's chardev socket would carry it), streams as socketpair ends.

Fairness, windows, half-close, reset, link loss, and the host link's reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vm.transport.address import parse_transport
from vm.transport.mux_link import close_host_link, host_link
from vm.transport.mux_session import MuxSession

WINDOW = 64 * 1024
HIGH_WATER = 64 * 1024


@dataclass
class Pair:
    host: MuxSession
    guest: MuxSession
    byte_stream: tuple[socket.socket, socket.socket]
    accepted: asyncio.Queue[socket.socket] = field(default_factory=asyncio.Queue)

    async def open(self) -> tuple[socket.socket, socket.socket]:
        """A new stream: (host end, guest end)."""
        host_end = self.host.open_socket(b"hdr")
        guest_end = await asyncio.wait_for(self.accepted.get(), 5)
        return host_end, guest_end


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    accepted: asyncio.Queue[socket.socket] = asyncio.Queue()

    def on_stream(sock: socket.socket, header: bytes) -> None:
        assert header == b"hdr"
        accepted.put_nowait(sock)

    host = MuxSession(a.fileno(), "daemon", window=WINDOW, high_water=HIGH_WATER)
    guest = MuxSession(b.fileno(), "agent", on_stream, window=WINDOW, high_water=HIGH_WATER)
    host.start()
    guest.start()
    await asyncio.wait_for(host.peer_ready.wait(), 5)
    yield Pair(host, guest, (a, b), accepted)
    host.close()
    guest.close()
    a.close()
    b.close()


async def send_all(sock: socket.socket, data: bytes, then_shutdown: bool = True) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)
    if then_shutdown:
        sock.shutdown(socket.SHUT_WR)


async def recv_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await loop.sock_recv(sock, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_bytes_exact_and_half_close_both_ways(pair: Pair) -> None:
    """Each direction ends on its own: the guest answers after the host's EOF."""
    host_end, guest_end = await pair.open()
    payload = os.urandom(3 << 20)
    sender = asyncio.create_task(send_all(host_end, payload))
    received = await recv_all(guest_end)  # EOF arrives: the host half-closed
    await sender
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    reply = b"after your EOF, " + str(len(received)).encode()
    await send_all(guest_end, reply)
    assert await recv_all(host_end) == reply
    host_end.close()
    guest_end.close()
    await until(lambda: not pair.host.pumps and not pair.guest.pumps)
    await until(lambda: not pair.host.mux.stream_ids and not pair.guest.mux.stream_ids)


async def test_a_stalled_reader_stops_only_its_own_stream(pair: Pair) -> None:
    """The guest never reads stream A: A stops at its window, B moves 8 MiB meanwhile, and
    nothing buffers more than a window plus the high-water mark; A resumes when read."""
    a_host, a_guest = await pair.open()
    a_payload = os.urandom(4 << 20)
    a_sender = asyncio.create_task(send_all(a_host, a_payload))
    b_host, b_guest = await pair.open()
    b_payload = os.urandom(8 << 20)
    b_sender = asyncio.create_task(send_all(b_host, b_payload))
    b_received = await asyncio.wait_for(recv_all(b_guest), 30)
    await b_sender
    assert b_received == b_payload
    assert not a_sender.done()  # A is stuck behind its reader, as it should be
    a_id = next(iter(pair.host.pumps))
    assert pair.host.mux.send_window(a_id) == 0  # the peer gave all its credit and no more
    assert len(pair.guest.pumps[a_id].out) <= WINDOW
    assert pair.host.mux.send_buffered(a_id) <= HIGH_WATER + 64 * 1024
    # now read A: everything arrives, exact and in order
    a_received = await asyncio.wait_for(recv_all(a_guest), 30)
    await a_sender
    assert a_received == a_payload


async def test_streams_share_the_byte_stream_fairly(pair: Pair) -> None:
    """Two bulk streams at once finish close together (round-robin, not one after another)."""
    finished: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def transfer(n: int) -> None:
        host_end, guest_end = await pair.open()
        payload = os.urandom(6 << 20)
        sender = asyncio.create_task(send_all(host_end, payload))
        assert await recv_all(guest_end) == payload
        await sender
        finished.append((n, loop.time()))

    start = loop.time()
    await asyncio.wait_for(asyncio.gather(transfer(1), transfer(2)), 60)
    (_, first), (_, second) = sorted(finished, key=lambda f: f[1])
    assert first - start > 0.6 * (second - start), finished


async def test_reset_reaches_the_other_side(pair: Pair) -> None:
    """The guest's socket closes with unread data (ECONNRESET on the pump end): the stream is
    reset, and the host's next writes fail instead of filling a buffer nobody reads."""
    host_end, guest_end = await pair.open()
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(host_end, b"x" * 1000)
    await until(lambda: bool(pair.guest.pumps) and not next(iter(pair.guest.pumps.values())).out)
    guest_end.close()  # unread bytes in its queue: the kernel reports a reset to the pump end
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        async with asyncio.timeout(5):
            while True:
                await loop.sock_sendall(host_end, b"y" * 65536)
    await until(lambda: not pair.host.pumps and not pair.guest.pumps)
    assert not pair.host.mux.stream_ids and not pair.guest.mux.stream_ids
    host_end.close()


async def test_losing_the_byte_stream_ends_every_stream(pair: Pair) -> None:
    host_end, guest_end = await pair.open()
    pair.byte_stream[1].shutdown(socket.SHUT_RDWR)
    await asyncio.wait_for(pair.host.finished.wait(), 5)
    assert "ended" in pair.host.reason or "failed" in pair.host.reason
    assert await asyncio.wait_for(recv_all(host_end), 5) == b""
    with pytest.raises(ConnectionError):
        pair.host.open_socket()
    host_end.close()
    guest_end.close()


async def test_host_link_reconnects_when_the_chardev_socket_drops(tmp_path: Path) -> None:
    """A unix listener plays QEMU's chardev server; its first client is dropped (as when the
    VM restarts). The link reconnects with a fresh session and streams work again."""
    path = str(tmp_path / "chardev.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    guests: list[tuple[socket.socket, MuxSession]] = []
    echoes: set[asyncio.Task[None]] = set()

    def echo(sock: socket.socket, _header: bytes) -> None:
        async def run() -> None:
            data = await recv_all(sock)
            await send_all(sock, b"echo:" + data)
            sock.close()

        task = loop.create_task(run())
        echoes.add(task)
        task.add_done_callback(echoes.discard)

    async def serve_one() -> None:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        session = MuxSession(conn.fileno(), "agent", echo)
        session.start()
        guests.append((conn, session))

    address = parse_transport(f"virtio:{path}")
    assert str(address) == f"virtio:{path}" and not address.passes_fds
    try:
        server = asyncio.create_task(serve_one())
        for round_ in (1, 2):
            sock = await address.connect(timeout=5)
            await send_all(sock, f"round {round_}".encode())
            assert await recv_all(sock) == f"echo:round {round_}".encode()
            sock.close()
            await server
            if round_ == 1:
                conn, session = guests[0]
                session.close("dropped")
                conn.close()  # QEMU went away
                server = asyncio.create_task(serve_one())
        assert host_link(path).sessions == 2
    finally:
        await close_host_link(path)
        for conn, session in guests:
            session.close()
            conn.close()
        listener.close()


async def test_connect_without_a_vm_is_a_clear_error(tmp_path: Path) -> None:
    address = parse_transport(f"virtio:{tmp_path / 'missing.sock'}")
    try:
        with pytest.raises(ConnectionRefusedError, match="is the VM running"):
            await address.connect(timeout=0.3)
    finally:
        await close_host_link(address.path)
    with contextlib.suppress(OSError), pytest.raises(OSError, match="multiplexed"):
        address.listen()
