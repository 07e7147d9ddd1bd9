"""Copying both directions of a TCP connection between two kernel sockets: splice(2) when a
pipe is at hand, a copy through user space when not. The one relay every TCP path uses.

Each direction moves ``src`` -> pipe -> ``dst`` inside the kernel, the bytes never reaching
Python. The pipe is borrowed from a pool (proxy/pipe_pool.py) when ``src`` turns readable and
given back as soon as it is empty again, so an idle connection holds only its two sockets.
When no pipe can be had (the pool's bound is reached, the process is out of descriptors, or
splice is off or missing), that chunk is read into a buffer and written out instead.

Either way a direction holds at most one chunk in flight and reads no more until it is
written, so a slow reader fills it, reading stops, the sender's TCP window closes and
back-pressure reaches the writer with a fixed bound of memory per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import sys
from collections.abc import Callable

from proxy.counters import ForwardCounters
from proxy.pipe_pool import PIPES, Pipe, PipePool
from proxy.relay_result import Outcome

SPLICE_AVAILABLE = sys.platform == "linux" and hasattr(os, "splice")
COPY_CHUNK = 256 * 1024
"""The most a direction reads into user space at once, when it copies."""

_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_ROUNDS_PER_WAKEUP = 8
RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH})
"""Errors that mean the peer reset the connection: passed on as a reset."""


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _ended(exc: OSError, reset: Outcome) -> Outcome:
    return reset if exc.errno in RESET_ERRNOS else Outcome.ERROR


class _Direction:
    """One way of the relay: ``src`` -> (a borrowed pipe, or a user-space chunk) -> ``dst``."""

    __slots__ = (
        "count", "done", "dst", "dst_fd", "eof", "finished", "held", "loop", "note",
        "pending", "pipe", "pipes", "reading", "src", "src_fd", "writing",
    )  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        count: Callable[[int], None],
        finished: Callable[[Outcome], None],
        pipes: PipePool | None,
        note: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.count = count
        self.finished = finished
        self.pipes = pipes
        self.note = note
        self.pipe: Pipe | None = None
        self.held: memoryview | None = None
        """Bytes read into user space and not yet written (when copying)."""
        self.pending = 0
        """Bytes read from ``src`` and not yet written to ``dst`` (in the pipe or ``held``)."""
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self._want_read(True)

    def _want_read(self, on: bool) -> None:
        if on and not self.reading:
            self.loop.add_reader(self.src_fd, self._on_readable)
        elif not on and self.reading:
            self.loop.remove_reader(self.src_fd)
        self.reading = on

    def _want_write(self, on: bool) -> None:
        if on and not self.writing:
            self.loop.add_writer(self.dst_fd, self._on_writable)
        elif not on and self.writing:
            self.loop.remove_writer(self.dst_fd)
        self.writing = on

    def _borrow(self) -> None:
        assert self.pipes is not None
        try:
            self.pipe = self.pipes.borrow()
        except OSError as exc:  # out of descriptors: copy, and say so once
            self.pipes = None
            self.note(f"no splice pipes ({exc.strerror}); copying instead")

    def _read(self) -> int:
        """Read what fits into the pipe or a chunk: bytes read, 0 at EOF, -1 if none came."""
        if self.pipe is None and self.held is None and self.pipes is not None:
            self._borrow()
        if self.pipe is not None:
            room = self.pipe.capacity - self.pending
            if room <= 0:
                return -1
            try:
                n = os.splice(self.src_fd, self.pipe.write_fd, room, flags=_FLAGS)
            except BlockingIOError:
                return -1
        else:
            if self.held is not None:
                return -1
            try:
                data = self.src.recv(COPY_CHUNK)
            except BlockingIOError:
                return -1
            n = len(data)
            if n:
                self.held = memoryview(data)
        self.pending += n
        return n

    def _on_readable(self) -> None:
        for _ in range(_ROUNDS_PER_WAKEUP):
            try:
                n = self._read()
            except OSError as exc:
                self._finish(_ended(exc, Outcome.RESET_BY_SOURCE))
                return
            if n < 0:
                break
            if n == 0:
                self.eof = True
                self._want_read(False)
                break
            if not self._flush():
                return
            if self.pending:
                break
        self._settle()

    def _on_writable(self) -> None:
        if self._flush():
            self._settle()

    def _flush(self) -> bool:
        """Write what is pending into ``dst``; False if the direction ended."""
        while self.pending:
            try:
                if self.pipe is not None:
                    n = os.splice(self.pipe.read_fd, self.dst_fd, self.pending, flags=_FLAGS)
                else:
                    assert self.held is not None
                    n = self.dst.send(self.held)
                    self.held = self.held[n:] if n < len(self.held) else None
            except BlockingIOError:
                return True
            except OSError as exc:
                self._finish(_ended(exc, Outcome.RESET_BY_DEST))
                return False
            self.pending -= n
            self.count(n)
        return True

    def _settle(self) -> None:
        """Give back an emptied pipe, then choose what to wait for next, or finish once EOF
        is fully delivered."""
        if self.done:
            return
        if self.pipe is not None and not self.pending:
            self._give_back()
        if self.eof and not self.pending:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self._finish(Outcome.CLOSED)
            return
        self._want_write(self.pending > 0)
        room = self.pending < self.pipe.capacity if self.pipe is not None else self.held is None
        self._want_read(not self.eof and room)

    def _give_back(self) -> None:
        if self.pipe is not None:
            assert self.pipes is not None
            self.pipes.give_back(self.pipe, empty=not self.pending)
            self.pipe = None

    def _finish(self, outcome: Outcome) -> None:
        if self.done:
            return
        self.done = True
        self.stop()
        self.finished(outcome)

    def stop(self) -> None:
        """Stop watching both sockets and let go of the pipe and any chunk held."""
        self._want_read(False)
        self._want_write(False)
        self._give_back()
        self.held = None


class RelayPair:
    """Both directions between ``client`` and ``upstream``; ``wait()`` returns how it ended.

    The pair is closed once both directions reached EOF (each FIN is passed on as a
    shutdown) or as soon as one side resets, in which case the other side gets a reset too.
    ``pipes`` is where splice pipes come from; None copies every chunk through user space.
    """

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        on_bytes_in: Callable[[int], None],
        on_bytes_out: Callable[[int], None],
        *,
        pipes: PipePool | None = PIPES if SPLICE_AVAILABLE else None,
        note: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.upstream = upstream
        self.done: asyncio.Future[Outcome] = self.loop.create_future()
        self._callbacks: list[Callable[[Outcome], None]] = []
        self.closed = False
        self.open_directions = 2
        finished = self._direction_finished
        self.directions = (
            _Direction(self.loop, client, upstream, on_bytes_in, finished, pipes, note),
            _Direction(self.loop, upstream, client, on_bytes_out, finished, pipes, note),
        )

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    async def wait(self) -> Outcome:
        return await self.done

    def on_done(self, callback: Callable[[Outcome], None]) -> None:
        """Call ``callback(outcome)`` as soon as the pair closes (no task needed)."""
        self._callbacks.append(callback)

    def _direction_finished(self, outcome: Outcome) -> None:
        if self.closed:
            return
        if outcome is Outcome.CLOSED:
            self.open_directions -= 1
            if self.open_directions == 0:
                self._close(outcome)
            return
        # A reset or error on one side: reset the other side and stop everything.
        self._close(outcome)

    def _close(self, outcome: Outcome) -> None:
        self.closed = True
        for direction in self.directions:
            direction.stop()
        if outcome is Outcome.CLOSED:
            self.client.close()
            self.upstream.close()
        else:
            abort(self.client)
            abort(self.upstream)
        if not self.done.done():
            self.done.set_result(outcome)
        for callback in self._callbacks:
            callback(outcome)

    def cancel(self) -> None:
        """Tear the connection down now (forwarder stopping): both sides get a reset."""
        if not self.closed:
            self._close(Outcome.CANCELLED)


def counted_relay(
    client: socket.socket,
    upstream: socket.socket,
    counters: ForwardCounters,
    *,
    splice: bool = SPLICE_AVAILABLE,
) -> RelayPair:
    """A relay between two connected sockets that adds to ``counters``: bytes each way, and
    the reason when it has to copy because no pipe can be made."""

    def count_in(n: int) -> None:
        counters.bytes_in += n

    def count_out(n: int) -> None:
        counters.bytes_out += n

    return RelayPair(
        client,
        upstream,
        count_in,
        count_out,
        pipes=PIPES if splice and SPLICE_AVAILABLE else None,
        note=counters.note_error,
    )


async def relay_until_done(pair: RelayPair) -> Outcome:
    """Start ``pair`` and wait for its end; cancelling the wait resets both sides."""
    pair.start()
    try:
        return await pair.wait()
    except asyncio.CancelledError:
        pair.cancel()
        raise
