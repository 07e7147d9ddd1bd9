"""UDP datagram framing over a byte stream."""

from __future__ import annotations

import pytest

from proxy.wire import DatagramDecoder, ErrorCode, ProtocolError, encode_datagram
from proxy.wire.limits import MAX_DATAGRAM_BYTES


def test_datagrams_round_trip_whole_and_byte_by_byte() -> None:
    datagrams = [b"", b"a", bytes(range(256)) * 10, b"\0" * MAX_DATAGRAM_BYTES, b""]
    stream = b"".join(encode_datagram(d) for d in datagrams)
    assert DatagramDecoder().feed(stream) == datagrams
    decoder = DatagramDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), 7):
        out += decoder.feed(stream[i : i + 7])
    assert out == datagrams
    assert decoder.buffered == 0
    assert decoder.feed(b"") == []


def test_oversized_datagram_is_refused_both_ways() -> None:
    with pytest.raises(ProtocolError) as caught:
        encode_datagram(b"x" * (MAX_DATAGRAM_BYTES + 1))
    assert caught.value.code is ErrorCode.LIMIT and caught.value.local
    with pytest.raises(ProtocolError) as caught:
        DatagramDecoder().feed((MAX_DATAGRAM_BYTES + 1).to_bytes(2, "big"))
    assert caught.value.code is ErrorCode.LIMIT and "65507" in caught.value.message


def test_end_inside_a_datagram_is_an_error() -> None:
    decoder = DatagramDecoder()
    assert decoder.feed(b"\0\5abc") == []
    assert decoder.buffered == 5
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(b"")
    assert caught.value.code is ErrorCode.PEER_CLOSED
    with pytest.raises(ProtocolError):
        decoder.feed(b"more")
