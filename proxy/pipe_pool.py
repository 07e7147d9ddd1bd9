"""Splice pipes, lent to a relay direction only while it has bytes in flight.

A pipe costs two descriptors and up to ``PIPE_CAPACITY`` bytes of kernel memory. Held for a
connection's whole life that was four descriptors per idle connection, so a few thousand
idle connections filled a 20,000 open-file limit. Here a direction borrows a pipe when its
source turns readable and gives it back as soon as the pipe is empty again, so an idle
connection holds none, and at most ``MAX_LENT`` are out at once: a direction that finds
none copies that chunk through user space instead (see proxy/tcp_relay.py).
"""

from __future__ import annotations

import fcntl
import os

PIPE_CAPACITY = 256 * 1024
"""Bytes one direction may hold in a pipe."""

MAX_LENT = 256
"""Pipes lent at once: 512 descriptors and 64 MiB of pipe buffers at most. More directions
with bytes in flight at the same moment copy through user space meanwhile."""

IDLE_KEPT = 64
"""Empty pipes kept for the next borrower: making one (pipe2, F_SETPIPE_SZ, two closes)
costs ~10% of the relay's CPU for a short connection (tests/bench/bench_relay.py)."""


class Pipe:
    """A non-blocking pipe: its two descriptors and the bytes it holds at most."""

    __slots__ = ("capacity", "read_fd", "write_fd")

    def __init__(self, read_fd: int, write_fd: int, capacity: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.capacity = capacity

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class PipePool:
    """Lends pipes up to ``max_lent`` at once and keeps up to ``idle_kept`` empty ones."""

    def __init__(
        self,
        max_lent: int = MAX_LENT,
        idle_kept: int = IDLE_KEPT,
        capacity: int = PIPE_CAPACITY,
    ) -> None:
        self.max_lent = max_lent
        self.idle_kept = idle_kept
        self.capacity = capacity
        self.lent = 0
        self._idle: list[Pipe] = []

    @property
    def idle(self) -> int:
        """Empty pipes kept open for the next borrower."""
        return len(self._idle)

    def borrow(self) -> Pipe | None:
        """An empty pipe, or None when ``max_lent`` are out already.

        Raises OSError when a new pipe cannot be made (EMFILE, ENFILE): the caller copies
        through user space instead.
        """
        if self._idle:
            self.lent += 1
            return self._idle.pop()
        if self.lent >= self.max_lent:
            return None
        pipe = self._make()
        self.lent += 1
        return pipe

    def give_back(self, pipe: Pipe, empty: bool) -> None:
        """Return a borrowed pipe. Only an ``empty`` one is kept for reuse, so no byte of one
        connection can reach the next; any other is closed."""
        self.lent -= 1
        if empty and len(self._idle) < self.idle_kept:
            self._idle.append(pipe)
        else:
            pipe.close()

    def release_idle(self) -> None:
        """Close the pipes kept for reuse (a forwarder that stops leaves no descriptor open)."""
        while self._idle:
            self._idle.pop().close()

    def _make(self) -> Pipe:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            capacity = fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, self.capacity)
        except OSError:  # over pipe-max-size or the user's pipe-user-pages-soft
            capacity = fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ)
        return Pipe(read_fd, write_fd, capacity)


PIPES = PipePool()
"""The process's pool: every relay in one process shares it (one event loop per process)."""
