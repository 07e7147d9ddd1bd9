"""Many streams over one byte stream (a virtio-serial port), sans-I/O like h2.

`Multiplexer(role)` is a plain state machine: the daemon opens odd stream ids, the agent even
ones. Each stream has its own credit window both ways (256 KiB by default), so a reader that
stops consuming stalls only its own stream; outgoing data is scheduled round-robin across
streams in frames of at most 16 KiB. Frames are `type (1) | stream id (4) | length (4) |
payload`; both sides start with a SETTINGS frame (magic, version, initial window).

Writing an asyncio adapter on top (one task reads, one writes)::

    mux = Multiplexer("daemon")
    # reader task
    while chunk := await reader.read(65536):
        for event in mux.receive_data(chunk):          # may raise MuxProtocolError
            match event:
                case StreamOpened(stream_id, header): ...     # accept: start a relay
                case Data(stream_id, data):
                    write to the stream's local socket, then once drained:
                    mux.acknowledge(stream_id, len(data))     # returns credit to the peer
                case StreamEnded(stream_id): ...              # shut down the local write side
                case StreamReset(stream_id, code): ...        # abort the local socket
                case WindowUpdate(stream_id, _): ...          # wake writers blocked on credit
                case PingAcknowledged(payload): ...           # liveness: peer is alive
                case GoAway(last_stream_id, code): ...        # open no new streams
                case ConnectionLost(): ...
        wake the writer task (mux.wants_write)
    mux.receive_data(b"")                              # end of input: resets every stream
    # writer task: whenever woken (after any call above or below)
    while out := mux.data_to_send(65536):              # bounded pulls keep streams fair
        writer.write(out); await writer.drain()
    # per local socket -> stream
    stream_id = mux.open_stream(header)                # header: opaque, e.g. a wire Open
    mux.send_data(stream_id, data)                     # queue; wake the writer
    pause reading the local socket while mux.send_buffered(stream_id) > high-water mark
    mux.end_stream(stream_id)                          # local EOF -> half-close
    mux.reset_stream(stream_id, MuxErrorCode.CONNECTION_RESET)   # local RST

Timers are the adapter's: call `mux.ping()` periodically and treat a missing
PingAcknowledged as a dead link. On MuxProtocolError, flush `data_to_send()` (a GOAWAY that
says why) and close the byte stream. Bounds: `max_streams` and `max_receive_buffer` (streams
times window) refuse new streams with RESET(REFUSED_STREAM); `max_send_buffer` bounds what
one stream may queue (MuxLimitError).
"""

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
    DEFAULT_INITIAL_WINDOW,
    MAX_DATA_BYTES,
    MAX_HEADER_BYTES,
    MUX_VERSION,
    FrameType,
)
from proxy.mux.multiplexer import Multiplexer, MuxState

__all__ = [
    "DEFAULT_INITIAL_WINDOW",
    "MAX_DATA_BYTES",
    "MAX_HEADER_BYTES",
    "MUX_VERSION",
    "ConnectionLost",
    "Data",
    "FrameType",
    "GoAway",
    "Multiplexer",
    "MuxError",
    "MuxErrorCode",
    "MuxEvent",
    "MuxLimitError",
    "MuxProtocolError",
    "MuxState",
    "PingAcknowledged",
    "StreamClosedError",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdate",
]
