"""The portable copy path: both directions of a TCP connection through user space.

Used where splice(2) is missing (not Linux) or chosen off. Each direction reads into one
fixed buffer and writes it out completely before reading again, so buffering per
connection is bounded by two buffers and a slow reader stalls its writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from proxy.relay_result import Outcome
from proxy.tcp_splice import RESET_ERRNOS, abort

BUFFER_SIZE = 256 * 1024


async def _copy(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    count: Callable[[int], None],
) -> Outcome:
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    while True:
        try:
            n = await loop.sock_recv_into(src, buffer)
        except OSError as exc:
            return Outcome.RESET_BY_SOURCE if exc.errno in RESET_ERRNOS else Outcome.ERROR
        if n == 0:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            return Outcome.CLOSED
        try:
            await loop.sock_sendall(dst, view[:n])
        except OSError as exc:
            return Outcome.RESET_BY_DEST if exc.errno in RESET_ERRNOS else Outcome.ERROR
        count(n)


class CopyPair:
    """Same contract as :class:`proxy.tcp_splice.SplicePair`, through user-space buffers."""

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
        self.on_bytes_in = on_bytes_in
        self.on_bytes_out = on_bytes_out
        self.task: asyncio.Task[Outcome] | None = None

    def start(self) -> None:
        self.task = self.loop.create_task(self._run())

    async def wait(self) -> Outcome:
        assert self.task is not None
        return await self.task

    def on_done(self, callback: Callable[[Outcome], None]) -> None:
        assert self.task is not None
        self.task.add_done_callback(lambda task: callback(task.result()))

    async def _run(self) -> Outcome:
        inbound = self.loop.create_task(
            _copy(self.loop, self.client, self.upstream, self.on_bytes_in)
        )
        outbound = self.loop.create_task(
            _copy(self.loop, self.upstream, self.client, self.on_bytes_out)
        )
        outcome = Outcome.CLOSED
        try:
            pending: set[asyncio.Task[Outcome]] = {inbound, outbound}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    if result is not Outcome.CLOSED:
                        outcome = result
                        for other in pending:
                            other.cancel()
                        pending = set()
                        break
        except asyncio.CancelledError:
            outcome = Outcome.CANCELLED
            inbound.cancel()
            outbound.cancel()
        if outcome is Outcome.CLOSED:
            self.client.close()
            self.upstream.close()
        else:
            abort(self.client)
            abort(self.upstream)
        return outcome

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
