"""One multiplexed stream seen as a kernel socket: a socketpair end pumped to and from the mux.

The rest of hostnet speaks to sockets (the wire protocol, splice relays). For a stream
carried by the multiplexer, a ``socketpair(AF_UNIX, SOCK_STREAM)`` stands in: one end goes to
that code, the other (the *pump end*) is copied to and from the stream here, with
back-pressure both ways and bounded buffers:

* socket -> stream: the pump end is read only while the stream's send queue in the
  multiplexer is below ``high_water``; it pauses while the peer gives no credit, so a stalled
  peer stops only this stream.
* stream -> socket: received bytes are credited back to the peer (``acknowledge``) only
  once they were written into the socket. Unwritten bytes are held here, at most one window
  (the peer cannot send more than the credit it got).
* EOF on the pump end -> ``end_stream`` (half-close); the peer's END -> ``shutdown(SHUT_WR)``
  once every byte is written. ECONNRESET on the pump end -> ``reset_stream``; the peer's
  reset -> ``shutdown(SHUT_RDWR)`` and close, so the local side's next write fails with
  EPIPE, which the relays treat as a reset (an AF_UNIX socket cannot carry a TCP RST; a
  read there sees EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

from proxy.mux import Multiplexer, MuxError, MuxErrorCode

READ_CHUNK = 64 * 1024


class PumpOwner(Protocol):
    """What a pump needs from its session."""

    mux: Multiplexer
    loop: asyncio.AbstractEventLoop

    def kick(self) -> None:
        """Write whatever the multiplexer has to send now."""

    def forget(self, stream_id: int) -> None:
        """The pump is finished; drop it."""


class StreamPump:
    def __init__(
        self, owner: PumpOwner, stream_id: int, sock: socket.socket, high_water: int
    ) -> None:
        self.owner = owner
        self.stream_id = stream_id
        self.sock = sock
        self.fd = sock.fileno()
        self.high_water = high_water
        self.out = bytearray()
        self.reading = False
        self.writing = False
        self.local_ended = False  # EOF read from the pump end, END queued to the peer
        self.remote_ended = False  # the peer's END arrived
        self.closed = False
        sock.setblocking(False)

    def start(self) -> None:
        self._resume_reading()

    # -- socket -> stream ------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self.reading and not self.local_ended and not self.closed:
            self.owner.loop.add_reader(self.fd, self._on_readable)
            self.reading = True

    def _pause_reading(self) -> None:
        if self.reading:
            self.owner.loop.remove_reader(self.fd)
            self.reading = False

    def maybe_resume(self) -> None:
        """Called after the session wrote: read again once the queue fell below half."""
        if (
            not self.reading
            and not self.local_ended
            and not self.closed
            and self.owner.mux.send_buffered(self.stream_id) <= self.high_water // 2
        ):
            self._resume_reading()

    def _on_readable(self) -> None:
        mux = self.owner.mux
        room = self.high_water - mux.send_buffered(self.stream_id)
        if room <= 0:
            self._pause_reading()
            return
        try:
            data = self.sock.recv(min(room, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._reset_both(MuxErrorCode.CONNECTION_RESET)
            return
        try:
            if data:
                mux.send_data(self.stream_id, data)
            else:
                self.local_ended = True
                self._pause_reading()
                mux.end_stream(self.stream_id)
        except MuxError:  # the stream was reset meanwhile
            self.close()
            return
        if mux.send_buffered(self.stream_id) >= self.high_water:
            self._pause_reading()
        self.owner.kick()
        self._maybe_finish()

    # -- stream -> socket ------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self.closed:
            return
        self.out += data
        if not self.writing:
            self._write_out()

    def on_end(self) -> None:
        self.remote_ended = True
        if not self.out:
            self._shutdown_write()
        self._maybe_finish()

    def on_reset(self) -> None:
        """The peer reset the stream (or the link went down): abort the local side."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def _write_out(self) -> None:
        sent_total = 0
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the local side closed: nobody reads this stream any more
                self._ack(sent_total)
                self._reset_both(MuxErrorCode.CANCEL)
                return
            del self.out[:sent]
            sent_total += sent
        self._ack(sent_total)
        if self.out and not self.writing:
            self.owner.loop.add_writer(self.fd, self._write_out)
            self.writing = True
        elif not self.out and self.writing:
            self.owner.loop.remove_writer(self.fd)
            self.writing = False
        if not self.out and self.remote_ended:
            self._shutdown_write()
            self._maybe_finish()

    def _ack(self, size: int) -> None:
        if size:
            with contextlib.suppress(MuxError):
                self.owner.mux.acknowledge(self.stream_id, size)
            self.owner.kick()

    def _shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    # -- the end ---------------------------------------------------------------------------

    def _reset_both(self, code: int) -> None:
        with contextlib.suppress(MuxError):
            self.owner.mux.reset_stream(self.stream_id, code)
        self.owner.kick()
        self.on_reset()

    def _maybe_finish(self) -> None:
        if self.local_ended and self.remote_ended and not self.out:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pause_reading()
        if self.writing:
            self.owner.loop.remove_writer(self.fd)
            self.writing = False
        self.sock.close()
        self.owner.forget(self.stream_id)
