"""UDP datagrams carried over a stream connection, each with a length prefix.

Used where the transport cannot hand a UDP socket over (TCP, vsock): one stream per flow.
Sending never blocks: when the stream is backed up beyond a bound, datagrams are dropped,
as the network would drop them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from proxy.counters import ForwardCounters
from proxy.udp_forwarder import RECV_SIZE, Deliver
from proxy.wire import DatagramDecoder, ProtocolError, encode_datagram

MAX_BACKLOG = 1 << 20
"""Bytes of datagrams that may wait for the stream before new ones are dropped."""


class StreamFlowUpstream:
    """A UDP flow's upstream over a stream socket (a :class:`proxy.udp_forwarder.FlowUpstream`)."""

    def __init__(
        self,
        sock: socket.socket,
        deliver: Deliver,
        counters: ForwardCounters,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_close = on_close
        self.sock = sock
        self.deliver = deliver
        self.counters = counters
        self.decoder = DatagramDecoder()
        self.backlog = bytearray()
        self.closed = False
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._on_readable)

    def send(self, datagram: bytes) -> None:
        if self.closed:
            return
        frame = encode_datagram(datagram)
        if self.backlog:
            if len(self.backlog) + len(frame) > MAX_BACKLOG:
                self.counters.note_error("datagram dropped: stream backed up")
                return
            self.backlog += frame
            return
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.counters.note_error(f"stream send failed: {exc.strerror}")
            self.close()
            return
        if sent < len(frame):
            self.backlog += frame[sent:]
            self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.backlog)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.backlog[:sent]
        if not self.backlog:
            self.loop.remove_writer(self.sock.fileno())

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        try:
            datagrams = self.decoder.feed(data)
        except ProtocolError as exc:
            self.counters.note_error(f"bad datagram framing: {exc}")
            self.close()
            return
        for datagram in datagrams:
            self.deliver(datagram)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self.backlog:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        if self.on_close is not None:
            self.on_close()


class UdpStreamBridge:
    """Joins a stream of framed datagrams to a connected UDP socket, until either closes."""

    def __init__(
        self, stream: socket.socket, udp: socket.socket, counters: ForwardCounters
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.udp = udp
        self.counters = counters
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.stream = StreamFlowUpstream(stream, self._to_udp, counters, on_close=self.close)
        udp.setblocking(False)
        self.loop.add_reader(udp.fileno(), self._on_udp)

    def _to_udp(self, datagram: bytes) -> None:
        try:
            self.udp.send(datagram)
            self.counters.bytes_in += len(datagram)
        except OSError as exc:
            self.counters.note_error(f"udp send failed: {exc.strerror}")

    def _on_udp(self) -> None:
        for _ in range(64):
            try:
                data = self.udp.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                self.counters.note_error("udp target port unreachable")
                continue
            except OSError:
                self.close()
                return
            self.counters.bytes_out += len(data)
            self.stream.send(data)

    def close(self) -> None:
        if self.done.done():
            return
        self.loop.remove_reader(self.udp.fileno())
        self.udp.close()
        self.done.set_result(None)
        self.stream.close()
