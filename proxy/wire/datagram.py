"""UDP datagrams carried over a byte stream: `u16 big-endian length | payload`, sans-I/O.

Length 0 is a valid (empty) datagram. Lengths above MAX_DATAGRAM_BYTES (65,507) are refused
on both sides, so a corrupt stream is detected instead of silently misframed.
"""

from __future__ import annotations

from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import MAX_DATAGRAM_BYTES

DATAGRAM_HEADER_BYTES = 2


def encode_datagram(payload: bytes) -> bytes:
    """One datagram, framed. ProtocolError(LIMIT, local) above 65,507 bytes."""
    if len(payload) > MAX_DATAGRAM_BYTES:
        raise ProtocolError(
            ErrorCode.LIMIT,
            f"datagram of {len(payload)} bytes is above the UDP limit of {MAX_DATAGRAM_BYTES}",
            local=True,
        )
    return len(payload).to_bytes(DATAGRAM_HEADER_BYTES, "big") + payload


class DatagramDecoder:
    """Splits a byte stream back into datagrams. Buffers at most one partial datagram."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ended = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the datagrams they complete. b"" marks the end of input.

        Raises ProtocolError(LIMIT) for a length above 65,507 and ProtocolError(PEER_CLOSED)
        when the input ends inside a datagram.
        """
        if self._ended:
            if data:
                raise ProtocolError(
                    ErrorCode.WRONG_STATE, "datagram data after the end of input", local=True
                )
            return []
        if not data:
            self._ended = True
            if self._buffer:
                raise ProtocolError(
                    ErrorCode.PEER_CLOSED,
                    f"the stream ended inside a datagram ({len(self._buffer)} bytes of it)",
                )
            return []
        self._buffer += data
        out: list[bytes] = []
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= DATAGRAM_HEADER_BYTES:
            size = int.from_bytes(buffer[start : start + DATAGRAM_HEADER_BYTES], "big")
            if size > MAX_DATAGRAM_BYTES:
                raise ProtocolError(
                    ErrorCode.LIMIT,
                    f"datagram length {size} is above the UDP limit of {MAX_DATAGRAM_BYTES}",
                )
            end = start + DATAGRAM_HEADER_BYTES + size
            if len(buffer) < end:
                break
            out.append(bytes(buffer[start + DATAGRAM_HEADER_BYTES : end]))
            start = end
        del buffer[:start]
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete datagram held back (at most 2 + 65,507)."""
        return len(self._buffer)
