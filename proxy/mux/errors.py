"""Error codes of the multiplexer and the exceptions it raises."""

from __future__ import annotations

import enum

from proxy.errors import HostnetError
from proxy.mux.events import MuxEvent


class MuxErrorCode(enum.IntEnum):
    """Codes carried by RESET and GOAWAY frames. Applications may use their own codes >= 256."""

    NO_ERROR = 0  # a clean GOAWAY
    PROTOCOL = 1  # a frame that breaks the protocol
    FLOW_CONTROL = 2  # data beyond the granted window, or a window overflow
    FRAME_SIZE = 3  # a frame larger than allowed for its type
    VERSION = 4  # the two sides speak different multiplexer versions
    REFUSED_STREAM = 5  # too many streams or too much buffering, or going away: try later
    CANCEL = 6  # the application gave up on the stream
    CONNECTION_RESET = 7  # the far end reset its socket (TCP RST)
    CONNECTION_LOST = 8  # the byte stream under the multiplexer ended
    INTERNAL = 9  # a local failure


class MuxError(HostnetError):
    """Base class: `code` says what kind of failure, the message says what exactly."""

    def __init__(self, code: MuxErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class MuxProtocolError(MuxError):
    """The peer broke the multiplexer protocol; the multiplexer is unusable afterwards.

    `events` holds the events decoded from the same receive_data() call before the error.
    `data_to_send()` then holds a GOAWAY telling the peer why.
    """

    def __init__(self, code: MuxErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.events: list[MuxEvent] = []


class StreamClosedError(MuxError):
    """A local call names a stream that is closed, reset, ended for sending, or unknown."""


class MuxLimitError(MuxError):
    """A local call would exceed a bound (streams, header size, send buffer); wait and retry."""
