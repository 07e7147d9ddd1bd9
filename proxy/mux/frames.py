"""Frame layout of the multiplexer: `type (1) | stream id (4) | length (4) | payload`.

Stream id 0 is the connection itself (SETTINGS, PING, PONG, GOAWAY). Every frame type has a
fixed or bounded payload size, checked from the header before the payload is buffered.
"""

from __future__ import annotations

import enum
import struct

MUX_VERSION = 1
MUX_MAGIC = b"HMUX"

FRAME_HEADER = struct.Struct(">BII")
FRAME_HEADER_BYTES = FRAME_HEADER.size  # 9

MAX_DATA_BYTES = 16 * 1024
"""Largest DATA payload: the unit of round-robin scheduling between streams."""
MAX_HEADER_BYTES = 4 * 1024
"""Largest OPEN header (opaque application bytes that say what the stream is for)."""
DEFAULT_INITIAL_WINDOW = 256 * 1024
MIN_INITIAL_WINDOW = MAX_DATA_BYTES
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**32 - 1
PING_BYTES = 8


class FrameType(enum.IntEnum):
    SETTINGS = 0x0  # id 0: magic, version u16, initial window u32; the first frame of each side
    OPEN = 0x1  # a new stream, with an opaque header
    DATA = 0x2  # 1..16 KiB of stream bytes, within the window
    END = 0x3  # half-close: the sender sends no more on this stream
    RESET = 0x4  # u32 code: the stream is gone both ways
    WINDOW = 0x5  # u32 increment of the sender's receive window for this stream
    PING = 0x6  # id 0, 8 opaque bytes, answered by PONG with the same bytes
    PONG = 0x7
    GOAWAY = 0x8  # id 0, u32 last accepted peer stream id, u32 code


SETTINGS_BYTES = len(MUX_MAGIC) + 2 + 4

PAYLOAD_SIZE: dict[FrameType, tuple[int, int]] = {
    FrameType.SETTINGS: (SETTINGS_BYTES, SETTINGS_BYTES),
    FrameType.OPEN: (0, MAX_HEADER_BYTES),
    FrameType.DATA: (1, MAX_DATA_BYTES),
    FrameType.END: (0, 0),
    FrameType.RESET: (4, 4),
    FrameType.WINDOW: (4, 4),
    FrameType.PING: (PING_BYTES, PING_BYTES),
    FrameType.PONG: (PING_BYTES, PING_BYTES),
    FrameType.GOAWAY: (8, 8),
}
"""(smallest, largest) payload of each frame type."""

CONNECTION_FRAMES = frozenset(
    {FrameType.SETTINGS, FrameType.PING, FrameType.PONG, FrameType.GOAWAY}
)


def frame(kind: FrameType, stream_id: int, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, stream_id, len(payload)) + payload


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")
