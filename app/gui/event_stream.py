"""The daemon's event stream (GET /v1/events) read in its own thread, reconnecting when lost.

Each event is handed to the UI thread through a queued Qt signal; the UI thread never reads
the socket. While the daemon is gone the thread retries with a short back-off and says so.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from app.gui.sse import SseParser

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
READ_TIMEOUT = 40.0  # the daemon sends a keep-alive every 15 s


class EventStream(QThread):
    """Emits ``event(kind, data)`` for each event, ``connected()`` and ``lost(message)``."""

    event = Signal(str, object)  # type: ignore[assignment]
    connected = Signal()
    lost = Signal(str)

    def __init__(self, socket_path: Path) -> None:
        super().__init__()
        self.socket_path = socket_path
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self.setObjectName("hostnet-event-stream")

    def stop(self) -> None:
        """Ask the thread to end and unblock its read; returns at once (then ``wait()``)."""
        self._stop.set()
        with self._sock_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._follow()
                message = "the daemon closed the event stream"
            except FileNotFoundError:
                message = f"no hostnet daemon is running (no socket at {self.socket_path})"
            except ConnectionRefusedError:
                message = f"no hostnet daemon answers on {self.socket_path}"
            except TimeoutError:
                message = "the daemon stopped answering (no keep-alive for 40 s)"
            except (OSError, ValueError) as exc:
                message = f"the connection to the daemon broke: {exc}"
            if self._stop.is_set():
                break
            self.lost.emit(message)
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
            failures += 1
            if self._stop.wait(delay):
                break
            if self._streamed:
                failures = 0

    _streamed = False

    def _follow(self) -> None:
        self._streamed = False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._sock_lock:
            if self._stop.is_set():
                sock.close()
                return
            self._sock = sock
        try:
            sock.settimeout(5.0)
            sock.connect(str(self.socket_path))
            sock.sendall(
                b"GET /v1/events HTTP/1.1\r\nHost: hostnet\r\nAccept: text/event-stream\r\n\r\n"
            )
            sock.settimeout(READ_TIMEOUT)
            reader = sock.makefile("rb")
            self._read_head(reader)
            self.connected.emit()
            self._streamed = True
            self._read_events(reader)
        finally:
            with self._sock_lock:
                self._sock = None
            sock.close()

    @staticmethod
    def _read_head(reader: Any) -> None:
        status = reader.readline().decode("latin-1")
        parts = status.split()
        if len(parts) < 2 or parts[1] != "200":
            raise ValueError(f"the daemon answered {status.strip()!r} to /v1/events")
        while reader.readline() not in (b"\r\n", b"\n", b""):
            pass

    def _read_events(self, reader: Any) -> None:
        """Read the chunked body line by line; aiohttp streams it with chunked encoding."""
        parser = SseParser()
        pending = b""
        while not self._stop.is_set():
            size_line = reader.readline()
            if not size_line:
                return
            size = int(size_line.strip().split(b";")[0] or b"0", 16)
            if size == 0:
                return
            chunk = reader.read(size)
            reader.readline()  # the CRLF after the chunk
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                done = parser.feed_line(raw.decode("utf-8").rstrip("\r"))
                if done is None:
                    continue
                kind, data = done
                try:
                    decoded = json.loads(data) if data else None
                except ValueError:
                    continue
                self.event.emit(kind, decoded)
