"""Copying both directions of a TCP connection between two kernel sockets with splice(2).

Each direction owns a pipe: bytes move socket -> pipe -> socket inside the kernel and never
reach Python. The event loop drives the non-blocking splices; the pipe's capacity is the
direction's whole buffer, so a slow reader fills the pipe, reading stops, the sender's TCP
window closes and back-pressure reaches the writer with a fixed bound of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Callable

from proxy.relay_result import Outcome

PIPE_CAPACITY = 256 * 1024
"""Bytes one direction may hold in flight: the per-connection bound is twice this."""

PIPES_KEPT = 64
"""Empty pipes kept for the next connections: making one (pipe2, F_SETPIPE_SZ, two closes)
costs ~10% of the relay's CPU for a short connection (tests/bench/bench_relay.py)."""

_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_ROUNDS_PER_WAKEUP = 8
RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH})
"""Errors that mean the peer reset the connection: passed on as a reset."""


_idle_pipes: list[tuple[int, int, int]] = []


def _take_pipe() -> tuple[int, int, int]:
    """An empty non-blocking pipe (read fd, write fd, capacity), reused when one is idle."""
    if _idle_pipes:
        return _idle_pipes.pop()
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        capacity = fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, PIPE_CAPACITY)
    except OSError:
        capacity = fcntl.fcntl(pipe_w, fcntl.F_GETPIPE_SZ)
    return pipe_r, pipe_w, capacity


def _give_back_pipe(pipe_r: int, pipe_w: int, capacity: int) -> None:
    """Keep the pipe for another connection only if it is empty: asked of the kernel, so no
    byte of this connection can ever reach the next one."""
    if len(_idle_pipes) < PIPES_KEPT:
        with contextlib.suppress(OSError):
            queued = fcntl.ioctl(pipe_r, termios.FIONREAD, b"\0\0\0\0")
            if struct.unpack("i", queued)[0] == 0:
                _idle_pipes.append((pipe_r, pipe_w, capacity))
                return
    os.close(pipe_r)
    os.close(pipe_w)


def release_idle_pipes() -> None:
    """Close the pipes kept for reuse (a forwarder that stops leaves no descriptor open)."""
    while _idle_pipes:
        pipe_r, pipe_w, _ = _idle_pipes.pop()
        os.close(pipe_r)
        os.close(pipe_w)


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Direction:
    """One way of the copy: ``src`` -> pipe -> ``dst``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        count: Callable[[int], None],
        finished: Callable[[_Direction, Outcome], None],
    ) -> None:
        self.loop = loop
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.count = count
        self.finished = finished
        self.pipe_r, self.pipe_w, self.capacity = _take_pipe()
        self.pending = 0
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

    def _on_readable(self) -> None:
        for _ in range(_ROUNDS_PER_WAKEUP):
            room = self.capacity - self.pending
            if room <= 0:
                break
            try:
                n = os.splice(self.src_fd, self.pipe_w, room, flags=_FLAGS)
            except BlockingIOError:
                break
            except OSError as exc:
                self._finish(
                    Outcome.RESET_BY_SOURCE if exc.errno in RESET_ERRNOS else Outcome.ERROR
                )
                return
            if n == 0:
                self.eof = True
                self._want_read(False)
                break
            self.pending += n
            if not self._flush():
                return
            if self.pending:
                break
        self._settle()

    def _on_writable(self) -> None:
        if self._flush():
            self._settle()

    def _flush(self) -> bool:
        """Move what the pipe holds into ``dst``; False if the direction ended."""
        while self.pending:
            try:
                n = os.splice(self.pipe_r, self.dst_fd, self.pending, flags=_FLAGS)
            except BlockingIOError:
                return True
            except OSError as exc:
                self._finish(Outcome.RESET_BY_DEST if exc.errno in RESET_ERRNOS else Outcome.ERROR)
                return False
            self.pending -= n
            self.count(n)
        return True

    def _settle(self) -> None:
        """Choose what to wait for next, or finish once EOF is fully delivered."""
        if self.done:
            return
        if self.eof and not self.pending:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self._finish(Outcome.CLOSED)
            return
        self._want_write(self.pending > 0)
        self._want_read(not self.eof and self.pending < self.capacity)

    def _finish(self, outcome: Outcome) -> None:
        if self.done:
            return
        self.done = True
        self.stop_watching()
        self.finished(self, outcome)

    def stop_watching(self) -> None:
        self._want_read(False)
        self._want_write(False)

    def close_pipe(self) -> None:
        _give_back_pipe(self.pipe_r, self.pipe_w, self.capacity)


class SplicePair:
    """Both directions between ``client`` and ``upstream``; ``wait()`` returns how it ended.

    The pair is closed once both directions reached EOF (each FIN is passed on as a
    shutdown) or as soon as one side resets, in which case the other side gets a reset too.
    """

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        on_bytes_in: Callable[[int], None],
        on_bytes_out: Callable[[int], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.upstream = upstream
        self.done: asyncio.Future[Outcome] = self.loop.create_future()
        self._callbacks: list[Callable[[Outcome], None]] = []
        self.closed = False
        self.open_directions = 2
        inbound = _Direction(self.loop, client, upstream, on_bytes_in, self._direction_finished)
        try:
            outbound = _Direction(
                self.loop, upstream, client, on_bytes_out, self._direction_finished
            )
        except OSError:
            inbound.close_pipe()
            raise
        self.directions = (inbound, outbound)

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    async def wait(self) -> Outcome:
        return await self.done

    def on_done(self, callback: Callable[[Outcome], None]) -> None:
        """Call ``callback(outcome)`` as soon as the pair closes (no task needed)."""
        self._callbacks.append(callback)

    def _direction_finished(self, direction: _Direction, outcome: Outcome) -> None:
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
            direction.stop_watching()
            direction.close_pipe()
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
