"""The host's docker.sock where the engine's own socket is elsewhere (a QEMU guest, an
attached VM): a listener of the daemon's, mode 0600 in hostnet's runtime folder, that relays
each connection to a stream its owner opens to the engine.

When no stream can be opened, the client gets an HTTP error naming the reason (the docker
CLI prints it as "Error response from daemon: ..."), not a bare hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxy.counters import ForwardCounters
from proxy.tcp_relay import counted_relay, relay_until_done

log = logging.getLogger(__name__)

REQUEST_HEAD_TIMEOUT = 2.0
REQUEST_HEAD_LIMIT = 65536

OpenUpstream = Callable[[], Awaitable[socket.socket]]
"""Opens a stream to the engine's API, or raises ConnectionError (OSError) saying why."""


class ApiSocketRelay:
    """Listens on ``path`` (mode 0600 from the first moment); relays every connection to
    a stream from ``open_upstream``."""

    def __init__(self, path: Path, open_upstream: OpenUpstream) -> None:
        self.path = path
        self.open_upstream = open_upstream
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        """Make the socket (once) and accept on it."""
        if self._listener is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # never a moment when others may connect
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._accepting = asyncio.get_running_loop().create_task(self._accept(listener))

    def close(self) -> None:
        """Stop accepting, end the relays and remove the socket."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        for task in list(self._relays):
            task.cancel()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            client.setblocking(False)
            task = loop.create_task(self._relay(client))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

    async def _relay(self, client: socket.socket) -> None:
        try:
            upstream = await self.open_upstream()
        except OSError as exc:
            log.info("engine API connection refused: %s", exc)
            try:
                await refuse_http(client, str(exc))
            finally:
                client.close()
            return
        await relay_until_done(counted_relay(client, upstream, ForwardCounters()))


async def refuse_http(client: socket.socket, reason: str) -> None:
    """Read the client's request head, then answer 502 with the engine API's error body."""
    loop = asyncio.get_running_loop()
    head = b""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(REQUEST_HEAD_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < REQUEST_HEAD_LIMIT:
                chunk = await loop.sock_recv(client, 4096)
                if not chunk:
                    break
                head += chunk
    body = json.dumps({"message": f"hostnet: {reason}"}).encode()
    response = (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    with contextlib.suppress(OSError):
        await loop.sock_sendall(client, response)
