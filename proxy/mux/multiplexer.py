"""The multiplexer state machine: many streams over one byte stream, sans-I/O."""

from __future__ import annotations

import collections
import enum
import secrets
from typing import Final, NoReturn

from proxy.mux.errors import (
    MuxError,
    MuxErrorCode,
    MuxLimitError,
    MuxProtocolError,
    StreamClosedError,
)
from proxy.mux.events import (
    ConnectionLost,
    Data,
    GoAway,
    MuxEvent,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdate,
)
from proxy.mux.frames import (
    CONNECTION_FRAMES,
    DEFAULT_INITIAL_WINDOW,
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    MAX_DATA_BYTES,
    MAX_HEADER_BYTES,
    MAX_STREAM_ID,
    MAX_WINDOW,
    MIN_INITIAL_WINDOW,
    MUX_MAGIC,
    MUX_VERSION,
    PAYLOAD_SIZE,
    PING_BYTES,
    FrameType,
    frame,
    u32,
)
from proxy.mux.stream_state import StreamState
from proxy.wire.messages import ROLES, Role

MAX_UNSENT_ANSWERS = 4096
"""PONGs and stream refusals queued but not yet written; a peer that makes more is flooding."""


class MuxState(enum.Enum):
    OPEN = "OPEN"  # streams may be opened both ways
    GOING_AWAY = "GOING_AWAY"  # a GOAWAY was sent or received; existing streams go on
    CLOSED = "CLOSED"  # the byte stream ended
    ERROR = "ERROR"  # a protocol violation; unusable


def _protocol(code: MuxErrorCode, message: str) -> NoReturn:
    raise MuxProtocolError(code, message)


class Multiplexer:
    """One end of a multiplexed byte stream. See the package docstring for the I/O loop."""

    def __init__(
        self,
        role: Role,
        *,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        max_streams: int = 1024,
        max_receive_buffer: int = 128 * 1024 * 1024,
        max_send_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if not MIN_INITIAL_WINDOW <= initial_window <= MAX_WINDOW:
            raise ValueError(f"initial_window must be {MIN_INITIAL_WINDOW}..{MAX_WINDOW} bytes")
        if max_receive_buffer < initial_window:
            raise ValueError("max_receive_buffer must hold at least one initial window")
        self.role: Final[Role] = role
        self.initial_window: Final = initial_window
        self.max_streams: Final = max_streams
        self.max_receive_buffer: Final = max_receive_buffer
        self.max_send_buffer: Final = max_send_buffer
        self.state = MuxState.OPEN
        self.error: MuxProtocolError | None = None
        self.peer_initial_window: int | None = None
        """The peer's window per stream, known once its SETTINGS arrived."""
        self._streams: dict[int, StreamState] = {}
        self._next_local_id = 1 if role == "daemon" else 2
        self._last_remote_id = 0
        self._peer_going_away = False
        self._control: collections.deque[bytes] = collections.deque()
        self._ready: collections.deque[StreamState] = collections.deque()
        self._in = bytearray()
        self._unsent_answers = 0
        self._grant_threshold = max(1, initial_window // 4)
        self._control.append(
            frame(
                FrameType.SETTINGS,
                0,
                MUX_MAGIC + MUX_VERSION.to_bytes(2, "big") + u32(initial_window),
            )
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def stream_ids(self) -> list[int]:
        """Streams still open in at least one direction."""
        return list(self._streams)

    def send_buffered(self, stream_id: int) -> int:
        """Bytes of `stream_id` queued here, waiting for credit or their turn (0 if closed)."""
        stream = self._streams.get(stream_id)
        return len(stream.queue) if stream else 0

    def send_window(self, stream_id: int) -> int:
        """Credit the peer currently gives `stream_id` (0 if closed or not yet known)."""
        stream = self._streams.get(stream_id)
        return stream.send_window if stream and self.peer_initial_window is not None else 0

    @property
    def wants_write(self) -> bool:
        """True when data_to_send() would return bytes now."""
        return bool(self._control) or any(
            s.sendable(self.peer_initial_window is not None) for s in self._ready
        )

    # -- local actions ---------------------------------------------------------------------

    def open_stream(self, header: bytes = b"") -> int:
        """Open a new stream carrying `header` (at most 4 KiB); returns its id."""
        self._raise_if_failed()
        if self.state is not MuxState.OPEN:
            raise MuxLimitError(
                MuxErrorCode.REFUSED_STREAM, f"no new streams: the multiplexer is {self.state.name}"
            )
        if len(header) > MAX_HEADER_BYTES:
            raise MuxLimitError(
                MuxErrorCode.FRAME_SIZE,
                f"stream header of {len(header)} bytes is above the limit of {MAX_HEADER_BYTES}",
            )
        if len(self._streams) >= self.max_streams:
            raise MuxLimitError(
                MuxErrorCode.REFUSED_STREAM, f"{self.max_streams} streams are open already"
            )
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            raise MuxLimitError(
                MuxErrorCode.REFUSED_STREAM, "stream ids are exhausted; open a new connection"
            )
        self._next_local_id += 2
        self._streams[stream_id] = StreamState(
            stream_id, self.peer_initial_window or 0, self.initial_window
        )
        self._control.append(frame(FrameType.OPEN, stream_id, bytes(header)))
        return stream_id

    def send_data(self, stream_id: int, data: bytes) -> None:
        """Queue bytes on a stream; they go out within credit, fairly among streams.

        Raises StreamClosedError after end_stream() or a reset, MuxLimitError when the
        stream's queue would exceed max_send_buffer (wait for send_buffered() to drop).
        """
        stream = self._sending_stream(stream_id)
        if not data:
            return
        if len(stream.queue) + len(data) > self.max_send_buffer:
            raise MuxLimitError(
                MuxErrorCode.FLOW_CONTROL,
                f"stream {stream_id} would queue {len(stream.queue) + len(data)} bytes, above "
                f"max_send_buffer {self.max_send_buffer}; wait until send_buffered() drops",
            )
        stream.queue += data
        self._schedule(stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: after the queued data, tell the peer we send no more on this stream."""
        stream = self._sending_stream(stream_id)
        stream.end_requested = True
        self._schedule(stream)

    def reset_stream(self, stream_id: int, code: int = MuxErrorCode.CANCEL) -> None:
        """Abort a stream both ways; queued data is dropped. A closed stream is ignored."""
        self._raise_if_failed()
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError("reset code must fit in 32 bits")
        if self._streams.pop(stream_id, None) is not None:
            self._control.append(frame(FrameType.RESET, stream_id, u32(code)))

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application consumed `size` bytes of Data on the stream: grant the peer credit.

        Credit goes back in WINDOW frames once a quarter of the window is consumed. A closed
        stream is ignored, so acknowledging after a reset is harmless.
        """
        self._raise_if_failed()
        stream = self._streams.get(stream_id)
        if stream is None or size == 0:
            return
        if not 0 < size <= stream.unacked:
            raise MuxError(
                MuxErrorCode.INTERNAL,
                f"acknowledge({stream_id}, {size}): only {stream.unacked} bytes are unacknowledged",
            )
        stream.unacked -= size
        stream.pending_grant += size
        if stream.pending_grant >= self._grant_threshold and not stream.remote_ended:
            self._control.append(frame(FrameType.WINDOW, stream_id, u32(stream.pending_grant)))
            stream.recv_window += stream.pending_grant
            stream.pending_grant = 0

    def ping(self, payload: bytes | None = None) -> bytes:
        """Queue a PING; returns its 8-byte payload, echoed back as PingAcknowledged."""
        self._raise_if_failed()
        payload = secrets.token_bytes(PING_BYTES) if payload is None else payload
        if len(payload) != PING_BYTES:
            raise ValueError(f"a ping payload is exactly {PING_BYTES} bytes")
        self._control.append(frame(FrameType.PING, 0, payload))
        return payload

    def go_away(self, code: int = MuxErrorCode.NO_ERROR) -> None:
        """Refuse new streams from now on; streams already open go on until they end."""
        self._raise_if_failed()
        if self.state is MuxState.OPEN:
            self.state = MuxState.GOING_AWAY
            self._control.append(frame(FrameType.GOAWAY, 0, u32(self._last_remote_id) + u32(code)))

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """Bytes to write to the byte stream now: control frames first, then stream data
        round-robin in frames of at most 16 KiB, one frame per stream per turn.

        With `max_bytes`, stops near that many bytes (always at least one frame), so a
        writer can pull as much as its transport takes and fairness holds across calls.
        """
        budget = MAX_STREAM_ID * 16 if max_bytes is None else max(max_bytes, 1)
        out = bytearray()
        while self._control and (not out or len(out) + len(self._control[0]) <= budget):
            out += self._control.popleft()
        if self._control:
            return bytes(out)
        self._unsent_answers = 0  # an OPEN still queued must go before its stream's DATA or END
        peer_ready = self.peer_initial_window is not None
        while self._ready and len(out) < budget:
            stream = self._ready.popleft()
            stream.scheduled = False
            if self._streams.get(stream.stream_id) is not stream or not stream.sendable(peer_ready):
                continue
            if stream.queue:
                room = budget - len(out) - FRAME_HEADER_BYTES
                size = min(MAX_DATA_BYTES, stream.send_window, len(stream.queue))
                if room < size:
                    if out and room < min(size, 1024):
                        self._ready.appendleft(stream)  # its turn stays first
                        stream.scheduled = True
                        break
                    size = max(1, min(size, room))
                out += frame(FrameType.DATA, stream.stream_id, bytes(stream.queue[:size]))
                del stream.queue[:size]
                stream.send_window -= size
            else:
                out += frame(FrameType.END, stream.stream_id)
                stream.end_sent = True
                if stream.finished():
                    del self._streams[stream.stream_id]
                continue
            self._schedule(stream)
        return bytes(out)

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[MuxEvent]:
        """Feed bytes from the byte stream; returns the events they complete.

        b"" marks the end of the byte stream: every open stream is reported as
        StreamReset(CONNECTION_LOST), then ConnectionLost. Raises MuxProtocolError when the
        peer breaks the protocol (the error's `events` holds what came before).
        """
        self._raise_if_failed()
        if self.state is MuxState.CLOSED:
            return []
        if not data:
            return self._connection_lost()
        self._in += data
        events: list[MuxEvent] = []
        try:
            while len(self._in) >= FRAME_HEADER_BYTES:
                kind_byte, stream_id, length = FRAME_HEADER.unpack_from(self._in)
                kind = self._frame_type(kind_byte, stream_id, length)
                end = FRAME_HEADER_BYTES + length
                if len(self._in) < end:
                    break
                payload = bytes(self._in[FRAME_HEADER_BYTES:end])
                del self._in[:end]
                self._handle(kind, stream_id, payload, events)
        except MuxProtocolError as exc:
            exc.events = events
            self._fail(exc)
        return events

    # -- internals -------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise MuxProtocolError(
                self.error.code, f"the multiplexer already failed: {self.error.message}"
            )

    def _fail(self, exc: MuxProtocolError) -> NoReturn:
        self.state = MuxState.ERROR
        self.error = exc
        self._in.clear()
        self._streams.clear()
        self._ready.clear()
        self._control.clear()
        self._control.append(frame(FrameType.GOAWAY, 0, u32(self._last_remote_id) + u32(exc.code)))
        raise exc

    def _connection_lost(self) -> list[MuxEvent]:
        events: list[MuxEvent] = [
            StreamReset(stream_id, MuxErrorCode.CONNECTION_LOST) for stream_id in self._streams
        ]
        events.append(ConnectionLost())
        self._streams.clear()
        self._ready.clear()
        self._control.clear()
        self._in.clear()
        self.state = MuxState.CLOSED
        return events

    def _sending_stream(self, stream_id: int) -> StreamState:
        self._raise_if_failed()
        stream = self._streams.get(stream_id)
        if stream is None or stream.end_requested:
            raise StreamClosedError(
                MuxErrorCode.PROTOCOL,
                f"stream {stream_id} is closed for sending (ended, reset or unknown)",
            )
        return stream

    def _schedule(self, stream: StreamState) -> None:
        if not stream.scheduled and stream.sendable(self.peer_initial_window is not None):
            stream.scheduled = True
            self._ready.append(stream)

    def _frame_type(self, kind_byte: int, stream_id: int, length: int) -> FrameType:
        try:
            kind = FrameType(kind_byte)
        except ValueError:
            _protocol(MuxErrorCode.PROTOCOL, f"unknown frame type 0x{kind_byte:02x}")
        low, high = PAYLOAD_SIZE[kind]
        if not low <= length <= high:
            _protocol(
                MuxErrorCode.FRAME_SIZE,
                f"{kind.name} frame with a {length}-byte payload; allowed {low}..{high}",
            )
        if (kind in CONNECTION_FRAMES) != (stream_id == 0):
            _protocol(
                MuxErrorCode.PROTOCOL,
                f"{kind.name} frame on stream {stream_id}"
                + (" (must be 0)" if kind in CONNECTION_FRAMES else " (0 is the connection)"),
            )
        if self.peer_initial_window is None and kind is not FrameType.SETTINGS:
            _protocol(MuxErrorCode.PROTOCOL, f"{kind.name} frame before the peer's SETTINGS")
        return kind

    def _is_local_id(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == (self.role == "daemon")

    def _handle(
        self, kind: FrameType, stream_id: int, payload: bytes, events: list[MuxEvent]
    ) -> None:
        if kind is FrameType.SETTINGS:
            self._on_settings(payload)
        elif kind is FrameType.PING:
            self._answer(frame(FrameType.PONG, 0, payload))
        elif kind is FrameType.PONG:
            events.append(PingAcknowledged(payload))
        elif kind is FrameType.GOAWAY:
            self._on_go_away(payload, events)
        elif kind is FrameType.OPEN:
            self._on_open(stream_id, payload, events)
        else:
            stream = self._known_stream(stream_id, kind)
            if stream is not None:
                self._on_stream_frame(kind, stream, payload, events)

    def _answer(self, answer: bytes) -> None:
        self._unsent_answers += 1
        if self._unsent_answers > MAX_UNSENT_ANSWERS:
            _protocol(
                MuxErrorCode.PROTOCOL,
                f"the peer sent more than {MAX_UNSENT_ANSWERS} PINGs or refused OPENs "
                "faster than they could be answered",
            )
        self._control.append(answer)

    def _on_settings(self, payload: bytes) -> None:
        if self.peer_initial_window is not None:
            _protocol(MuxErrorCode.PROTOCOL, "a second SETTINGS frame")
        if not payload.startswith(MUX_MAGIC):
            _protocol(
                MuxErrorCode.PROTOCOL, "the peer is not a hostnet multiplexer (no HMUX magic)"
            )
        version = int.from_bytes(payload[4:6], "big")
        if version != MUX_VERSION:
            _protocol(
                MuxErrorCode.VERSION,
                f"multiplexer version mismatch: this {self.role} speaks version {MUX_VERSION}, "
                f"the peer speaks version {version}; install the same hostnet release on both "
                "sides",
            )
        window = int.from_bytes(payload[6:10], "big")
        if not MIN_INITIAL_WINDOW <= window <= MAX_WINDOW:
            _protocol(
                MuxErrorCode.FLOW_CONTROL,
                f"peer initial window {window} is outside {MIN_INITIAL_WINDOW}..{MAX_WINDOW}",
            )
        self.peer_initial_window = window
        for stream in self._streams.values():
            stream.send_window += window
            self._schedule(stream)

    def _on_go_away(self, payload: bytes, events: list[MuxEvent]) -> None:
        last_id = int.from_bytes(payload[:4], "big")
        code = int.from_bytes(payload[4:], "big")
        self._peer_going_away = True
        if self.state is MuxState.OPEN:
            self.state = MuxState.GOING_AWAY
        for stream_id in [s for s in self._streams if self._is_local_id(s) and s > last_id]:
            del self._streams[stream_id]
            events.append(StreamReset(stream_id, MuxErrorCode.REFUSED_STREAM))
        events.append(GoAway(last_id, code))

    def _on_open(self, stream_id: int, header: bytes, events: list[MuxEvent]) -> None:
        if self._is_local_id(stream_id):
            _protocol(MuxErrorCode.PROTOCOL, f"the peer opened stream {stream_id}, an id of ours")
        if stream_id <= self._last_remote_id:
            _protocol(
                MuxErrorCode.PROTOCOL,
                f"the peer opened stream {stream_id} after {self._last_remote_id}: ids must grow",
            )
        self._last_remote_id = stream_id
        committed = (len(self._streams) + 1) * self.initial_window
        if (
            self.state is not MuxState.OPEN
            or len(self._streams) >= self.max_streams
            or committed > self.max_receive_buffer
        ):
            self._answer(frame(FrameType.RESET, stream_id, u32(MuxErrorCode.REFUSED_STREAM)))
            return
        assert self.peer_initial_window is not None
        self._streams[stream_id] = StreamState(
            stream_id, self.peer_initial_window, self.initial_window
        )
        events.append(StreamOpened(stream_id, header))

    def _known_stream(self, stream_id: int, kind: FrameType) -> StreamState | None:
        """The stream a frame is for; None for a closed stream (frames in flight are dropped)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        never_opened = (
            stream_id >= self._next_local_id
            if self._is_local_id(stream_id)
            else stream_id > self._last_remote_id
        )
        if never_opened:
            _protocol(
                MuxErrorCode.PROTOCOL, f"{kind.name} frame for stream {stream_id}, never opened"
            )
        return None

    def _on_stream_frame(
        self, kind: FrameType, stream: StreamState, payload: bytes, events: list[MuxEvent]
    ) -> None:
        stream_id = stream.stream_id
        if kind is FrameType.DATA:
            if stream.remote_ended:
                _protocol(MuxErrorCode.PROTOCOL, f"DATA on stream {stream_id} after its END")
            if len(payload) > stream.recv_window:
                _protocol(
                    MuxErrorCode.FLOW_CONTROL,
                    f"{len(payload)} bytes on stream {stream_id} with only {stream.recv_window} "
                    "bytes of credit",
                )
            stream.recv_window -= len(payload)
            stream.unacked += len(payload)
            events.append(Data(stream_id, payload))
        elif kind is FrameType.END:
            if stream.remote_ended:
                _protocol(MuxErrorCode.PROTOCOL, f"a second END on stream {stream_id}")
            stream.remote_ended = True
            events.append(StreamEnded(stream_id))
            if stream.finished():
                del self._streams[stream_id]
        elif kind is FrameType.RESET:
            del self._streams[stream_id]
            events.append(StreamReset(stream_id, int.from_bytes(payload, "big")))
        elif kind is FrameType.WINDOW:
            increment = int.from_bytes(payload, "big")
            if increment == 0 or stream.send_window + increment > MAX_WINDOW:
                _protocol(
                    MuxErrorCode.FLOW_CONTROL,
                    f"window increment {increment} on stream {stream_id} is zero or overflows",
                )
            stream.send_window += increment
            self._schedule(stream)
            events.append(WindowUpdate(stream_id, increment))
