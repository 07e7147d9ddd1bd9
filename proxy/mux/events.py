"""Events the multiplexer returns from receive_data()."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened stream `stream_id`; `header` is the opaque bytes it sent with the OPEN."""

    stream_id: int
    header: bytes


@dataclass(frozen=True, slots=True)
class Data:
    """Bytes on a stream. Call acknowledge(stream_id, len(data)) once they are consumed."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer will send no more on this stream (half-close); sending the other way goes on."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone in both directions: reset by the peer, refused, or connection lost."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """The peer granted `increment` more bytes of credit on the stream: writers may resume."""

    stream_id: int
    increment: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    """The peer answered our ping carrying `payload` (8 bytes)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class GoAway:
    """The peer accepts no new streams; streams above `last_stream_id` we opened were reset."""

    last_stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """receive_data(b""): the byte stream ended. Every open stream was reported reset first."""


MuxEvent: TypeAlias = (
    StreamOpened
    | Data
    | StreamEnded
    | StreamReset
    | WindowUpdate
    | PingAcknowledged
    | GoAway
    | ConnectionLost
)
