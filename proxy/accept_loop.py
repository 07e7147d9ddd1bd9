"""Accepting connections from the event loop, for every listening socket hostnet owns.

Each wake-up takes at most ``ACCEPTS_PER_WAKEUP`` connections, so one busy listener cannot
starve the loop. When accept() fails for want of descriptors (EMFILE, ENFILE, ENOBUFS) the
listener stays readable, so waiting on it again at once would spin: the loop says so once
and pauses for ``ACCEPT_PAUSE``, while the kernel's backlog holds the connections waiting.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

ACCEPTS_PER_WAKEUP = 64
ACCEPT_PAUSE = 0.05

OnConnection = Callable[[socket.socket, Any], None]
OnAcceptError = Callable[[OSError], None]


class AcceptLoop:
    """Hands each connection accepted on ``sock`` (non-blocking) to ``on_connection``."""

    def __init__(
        self,
        sock: socket.socket,
        on_connection: OnConnection,
        on_error: OnAcceptError = lambda exc: None,
    ) -> None:
        self.sock = sock
        self.on_connection = on_connection
        self.on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._fd = self.sock.fileno()
        self._loop.add_reader(self._fd, self._on_acceptable)

    def stop(self) -> None:
        """Stop accepting (the socket stays open: its owner closes it)."""
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        self._fd = -1

    def _on_acceptable(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, address = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self.on_error(exc)
                self._pause()
                return
            conn.setblocking(False)
            self.on_connection(conn, address)

    def _pause(self) -> None:
        assert self._loop is not None
        loop, fd = self._loop, self._fd
        loop.remove_reader(fd)

        def resume() -> None:
            if self._fd == fd:
                loop.add_reader(fd, self._on_acceptable)

        loop.call_later(ACCEPT_PAUSE, resume)
