"""One multiplexer session over one non-blocking byte-stream fd (a unix socket or a port).

The session reads the fd whenever it is readable and feeds the sans-I/O
:class:`~proxy.mux.Multiplexer`; it writes whatever the multiplexer has to send in bounded
pulls (so streams stay fair), waiting for the fd to be writable when the transport is full.
Each stream is a :class:`~vm.transport.mux_pump.StreamPump` around one end of a socketpair.
The session ends when the byte stream ends (EOF, an error, or a protocol violation by the
peer); every stream is then reset, and ``finished`` is set with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from proxy.mux import (
    DEFAULT_INITIAL_WINDOW,
    Data,
    GoAway,
    Multiplexer,
    MuxError,
    MuxEvent,
    MuxProtocolError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdate,
)
from proxy.wire import Role
from vm.transport.mux_pump import StreamPump

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024  # larger reads allocate by mmap (slow, and slower still under TCG)
WRITE_PULL = 64 * 1024  # one pull from data_to_send(): a few frames, so streams interleave
DEFAULT_HIGH_WATER = 256 * 1024  # per-stream bytes queued in the mux before reading pauses

StreamHandler = Callable[[socket.socket, bytes], None]
"""Called with the local end of a stream the peer opened, and the header it sent."""


class MuxSession:
    def __init__(
        self,
        fd: int,
        role: Role,
        on_stream: StreamHandler | None = None,
        *,
        window: int = DEFAULT_INITIAL_WINDOW,
        high_water: int = DEFAULT_HIGH_WATER,
        max_streams: int = 1024,
    ) -> None:
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.mux = Multiplexer(role, initial_window=window, max_streams=max_streams)
        self.on_stream = on_stream
        self.high_water = high_water
        self.pumps: dict[int, StreamPump] = {}
        self.peer_ready = asyncio.Event()
        self.finished = asyncio.Event()
        self.reason = ""
        self.bytes_heard = 0
        """Bytes the peer sent in this session: a liveness check watches it move."""
        self._pending = b""
        self._writing = False
        self._reading = False
        self._kicked = False

    # -- life ------------------------------------------------------------------------------

    def start(self, initial: bytes = b"") -> None:
        """Begin: send our SETTINGS, and feed ``initial`` (bytes already read from the fd)."""
        self.loop.add_reader(self.fd, self._on_readable)
        self._reading = True
        if initial:
            self.bytes_heard += len(initial)
            self._feed(initial)
        self._flush()

    def close(self, reason: str = "closed") -> None:
        """End the session: reset every stream; the fd stays open (the caller owns it)."""
        if self.finished.is_set():
            return
        self.reason = reason
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False
        if self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        with contextlib.suppress(MuxError):
            self.mux.receive_data(b"")
        for pump in list(self.pumps.values()):
            pump.on_reset()
        self.pumps.clear()
        self.finished.set()

    @property
    def alive(self) -> bool:
        return not self.finished.is_set()

    def ping(self) -> None:
        """Ask the peer for a sign of life (it answers with a PONG)."""
        if self.alive:
            self.mux.ping()
            self.kick()

    # -- streams ---------------------------------------------------------------------------

    def open_socket(self, header: bytes = b"") -> socket.socket:
        """Open a stream; the returned socket is its local end (raises MuxError when refused)."""
        if not self.alive:
            raise ConnectionError(f"the multiplexer session ended: {self.reason}")
        stream_id = self.mux.open_stream(header)
        local, pumped = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._add_pump(stream_id, pumped)
        self.kick()
        local.setblocking(False)
        return local

    def _add_pump(self, stream_id: int, pumped: socket.socket) -> None:
        pump = StreamPump(self, stream_id, pumped, self.high_water)
        self.pumps[stream_id] = pump
        pump.start()

    def forget(self, stream_id: int) -> None:
        self.pumps.pop(stream_id, None)

    # -- reading ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"read failed: {exc.strerror}")
            return
        if not data:
            self.close("the byte stream ended")
            return
        self.bytes_heard += len(data)
        self._feed(data)
        self._flush()

    def _feed(self, data: bytes) -> None:
        try:
            events = self.mux.receive_data(data)
        except MuxProtocolError as exc:
            for event in exc.events:
                self._dispatch(event)
            log.warning("multiplexer protocol error from the peer: %s", exc)
            self._flush()  # best effort: the GOAWAY that says why
            self.close(f"protocol error: {exc}")
            return
        if self.mux.peer_initial_window is not None and not self.peer_ready.is_set():
            self.peer_ready.set()  # the peer's SETTINGS arrived (it makes no event)
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: MuxEvent) -> None:
        if isinstance(event, Data):
            pump = self.pumps.get(event.stream_id)
            if pump is not None:
                pump.on_data(event.data)
            else:  # its socket is gone: nobody will read this stream
                with contextlib.suppress(MuxError):
                    self.mux.acknowledge(event.stream_id, len(event.data))
                    self.mux.reset_stream(event.stream_id)
        elif isinstance(event, StreamOpened):
            if self.on_stream is None:
                self.mux.reset_stream(event.stream_id)
                return
            local, pumped = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._add_pump(event.stream_id, pumped)
            local.setblocking(False)
            try:
                self.on_stream(local, event.header)
            except Exception:
                log.exception("stream handler failed")
                local.close()
        elif isinstance(event, StreamEnded):
            pump = self.pumps.get(event.stream_id)
            if pump is not None:
                pump.on_end()
        elif isinstance(event, StreamReset):
            pump = self.pumps.pop(event.stream_id, None)
            if pump is not None:
                pump.on_reset()
        elif isinstance(event, WindowUpdate):
            pass  # the multiplexer reschedules the stream; the next flush sends
        elif isinstance(event, GoAway):
            log.info("the peer goes away (code %d)", event.code)

    # -- writing ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Flush soon (once per loop turn, however many pumps ask)."""
        if not self._kicked and self.alive:
            self._kicked = True
            self.loop.call_soon(self._kick_now)

    def _kick_now(self) -> None:
        self._kicked = False
        if self.alive:
            self._flush()

    def _flush(self) -> None:
        if self._writing and self._pending:
            return  # waiting for the fd; _on_writable continues
        wrote = False
        while True:
            if not self._pending:
                self._pending = self.mux.data_to_send(WRITE_PULL)
                if not self._pending:
                    break
            try:
                sent = os.write(self.fd, self._pending)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self.loop.add_writer(self.fd, self._on_writable)
                    self._writing = True
                break
            except OSError as exc:
                self.close(f"write failed: {exc.strerror}")
                return
            self._pending = self._pending[sent:]
            wrote = True
        if not self._pending and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        if wrote:
            for pump in list(self.pumps.values()):
                pump.maybe_resume()

    def _on_writable(self) -> None:
        if self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        self._flush()
