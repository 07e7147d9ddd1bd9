"""Streams the agent asked the daemon for (VM programs reaching host ports), by id."""

from __future__ import annotations

import asyncio
import itertools
import socket

from proxy.wire import ErrorCode
from vm.transport.targets import TargetError

STREAM_REQUEST_TIMEOUT = 10.0


class PendingStreams:
    """Futures for StreamRequests in flight, resolved by the daemon's Attach or StreamFailed."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[socket.socket | None]] = {}

    def new(self) -> tuple[int, asyncio.Future[socket.socket | None]]:
        stream_id = next(self._ids)
        future: asyncio.Future[socket.socket | None] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        return stream_id, future

    def take(self, stream_id: int) -> asyncio.Future[socket.socket | None] | None:
        return self._pending.pop(stream_id, None)

    def forget(self, stream_id: int) -> None:
        self._pending.pop(stream_id, None)

    def fail(self, stream_id: int, code: ErrorCode, message: str) -> None:
        future = self._pending.pop(stream_id, None)
        if future is not None and not future.done():
            future.set_exception(TargetError(code, message))

    def fail_all(self, message: str) -> None:
        for stream_id in list(self._pending):
            self.fail(stream_id, ErrorCode.PEER_CLOSED, message)
