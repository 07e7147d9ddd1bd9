"""The splice relay on worker threads: blocking splice(2) loops instead of event-loop wakeups.

Same contract as :class:`proxy.tcp_splice.SplicePair`, kept to measure the two against each
other (``tests/bench/bench_relay.py``). Each direction is one job on a shared thread pool
that runs ``src -> pipe -> dst`` with blocking splices until EOF or an error. A direction
holds its worker for the connection's whole life, so the pool needs two workers per open
connection: with fewer, a direction can queue behind one that waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from proxy.relay_result import Outcome
from proxy.tcp_splice import PIPE_CAPACITY, abort

MAX_WORKERS = 1024
"""Threads the pool may grow to: two per open connection."""
COUNT_EVERY = 1 << 20
"""Bytes a worker moves before it reports them to the event loop (counters are loop-owned)."""

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH})
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process-wide pool; idle workers are reused, new ones started up to MAX_WORKERS."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="splice")
        return _pool


class _Direction:
    """One way of the copy, run start to end by one worker."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        count: Callable[[int], None],
    ) -> None:
        self.loop = loop
        self.src = src
        self.dst = dst
        self.count = count
        self.pipe_r, self.pipe_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.capacity = fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, PIPE_CAPACITY)
        except OSError:
            self.capacity = fcntl.fcntl(self.pipe_w, fcntl.F_GETPIPE_SZ)

    def run(self) -> Outcome:
        """Worker thread: copy until EOF (passed on as a shutdown) or an error."""
        src_fd, dst_fd = self.src.fileno(), self.dst.fileno()
        pipe_r, pipe_w = self.pipe_r, self.pipe_w
        unreported = 0
        try:
            while True:
                try:
                    n = os.splice(src_fd, pipe_w, self.capacity, flags=os.SPLICE_F_MOVE)
                except OSError as exc:
                    return Outcome.RESET_BY_SOURCE if exc.errno in _RESET_ERRNOS else Outcome.ERROR
                if n == 0:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    return Outcome.CLOSED
                while n:
                    try:
                        moved = os.splice(pipe_r, dst_fd, n, flags=os.SPLICE_F_MOVE)
                    except OSError as exc:
                        return (
                            Outcome.RESET_BY_DEST if exc.errno in _RESET_ERRNOS else Outcome.ERROR
                        )
                    n -= moved
                    unreported += moved
                if unreported >= COUNT_EVERY:
                    self.loop.call_soon_threadsafe(self.count, unreported)
                    unreported = 0
        finally:
            if unreported:
                self.loop.call_soon_threadsafe(self.count, unreported)

    def close_pipe(self) -> None:
        os.close(self.pipe_r)
        os.close(self.pipe_w)


class PooledSplicePair:
    """Both directions between ``client`` and ``upstream`` on pool workers.

    Closes like SplicePair: after both EOFs with FIN, or on the first reset or error with a
    reset to both sides. Sockets are switched to blocking mode: only the workers use them.
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
        self.task: asyncio.Task[Outcome] | None = None
        self.cancelled = False
        inbound = _Direction(self.loop, client, upstream, on_bytes_in)
        try:
            outbound = _Direction(self.loop, upstream, client, on_bytes_out)
        except OSError:
            inbound.close_pipe()
            raise
        self.directions = (inbound, outbound)

    def start(self) -> None:
        self.client.setblocking(True)
        self.upstream.setblocking(True)
        self.task = self.loop.create_task(self._run())

    async def wait(self) -> Outcome:
        """Shielded: the workers must end before the sockets and pipes are closed, so a
        cancelled waiter calls :meth:`cancel` and the pair still cleans up behind it."""
        assert self.task is not None
        return await asyncio.shield(self.task)

    async def _run(self) -> Outcome:
        workers = pool()
        pending = {
            asyncio.wrap_future(workers.submit(direction.run)) for direction in self.directions
        }
        outcome = Outcome.CLOSED
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                result = finished.result()
                if result is not Outcome.CLOSED and outcome is Outcome.CLOSED:
                    outcome = result
                    self._wake_workers()
            if self.cancelled:
                outcome = Outcome.CANCELLED
        for direction in self.directions:
            direction.close_pipe()
        if outcome is Outcome.CLOSED:
            self.client.close()
            self.upstream.close()
        else:
            abort(self.client)
            abort(self.upstream)
        return outcome

    def _wake_workers(self) -> None:
        """Make blocked splices return: shutdown wakes readers and writers of a socket."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        """Tear the connection down (forwarder stopping): both sides get a reset."""
        if self.task is not None and not self.task.done():
            self.cancelled = True
            self._wake_workers()
