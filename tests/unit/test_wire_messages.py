"""Wire messages: every message round-trips through its frame, and every field bound holds."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from proxy.wire import (
    Attach,
    Auth,
    AuthOk,
    Error,
    ErrorCode,
    Hello,
    Listener,
    Listeners,
    Message,
    MessageType,
    Open,
    OpenEngine,
    OpenOk,
    ProtocolError,
    Request,
    Response,
    StreamFailed,
    StreamRequest,
    decode_payload,
    encode_frame,
)
from proxy.wire.limits import (
    MAX_ERROR_MESSAGE_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_LISTENERS_PER_MESSAGE,
)

ALL_MESSAGES: list[Message] = [
    Hello(1, "daemon", "control", b"n" * 32),
    Hello(65535, "agent", "stream", bytes(range(32))),
    Auth(b"m" * 32),
    AuthOk(),
    Listeners(),
    Listeners(
        (Listener("tcp", "0.0.0.0", 80), Listener("udp", "::", 53)),
        (Listener("tcp", "fe80::1%eth0", 65535),),
    ),
    Open("tcp", "127.0.0.1", 8080),
    Open("udp", "::1", 1),
    OpenOk(),
    OpenEngine(),
    StreamRequest(1, "tcp", "127.0.0.1", 5432),
    StreamRequest(2**32 - 1, "udp", "::ffff:10.0.0.1", 9),
    StreamFailed(7, ErrorCode.REFUSED, "connection refused by 127.0.0.1:5432"),
    Attach(42),
    Request(0, "ping"),
    Request(2**32 - 1, "exec", {"argv": ["uname", "-a"], "env": {"LANG": "C.UTF-8"}}),
    Response(5, True, {"exit": 0, "stdout": "Linux\n", "ratio": 0.5}),
    Response(6, False, "no such method: frobnicate"),
    Response(7, True, None),
    Error(ErrorCode.NOT_LISTENING, "nothing listens on tcp 127.0.0.1:81 in the VM"),
    Error(ErrorCode.INTERNAL, "é" * 100),
]


def split_frame(frame: bytes) -> tuple[int, bytes]:
    kind, length = struct.unpack(">BI", frame[:5])
    assert length == len(frame) - 5
    return kind, frame[5:]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    kind, payload = split_frame(encode_frame(message))
    assert decode_payload(kind, payload) == message


def test_every_message_type_is_covered() -> None:
    covered = {split_frame(encode_frame(m))[0] for m in ALL_MESSAGES}
    assert covered == {t.value for t in MessageType}


def test_hosts_are_canonicalised() -> None:
    assert Listener("tcp", "0:0:0:0:0:0:0:1", 80) == Listener("tcp", "::1", 80)
    assert Open("tcp", "::FFFF:127.0.0.1", 1).host == "::ffff:7f00:1"


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: Listener("sctp", "::1", 80), ErrorCode.BAD_MESSAGE),
        (lambda: Listener("tcp", "localhost", 80), ErrorCode.BAD_MESSAGE),
        (lambda: Listener("tcp", "1.2.3.4.5", 80), ErrorCode.BAD_MESSAGE),
        (lambda: Listener("tcp", "::1", 0), ErrorCode.LIMIT),
        (lambda: Listener("tcp", "::1", 65536), ErrorCode.LIMIT),
        (lambda: Listener("tcp", "::1", True), ErrorCode.BAD_MESSAGE),
        (lambda: Listener("tcp", "fe80::1%" + "x" * 17, 1), ErrorCode.BAD_MESSAGE),
        (lambda: Hello(1, "daemon", "control", b"short"), ErrorCode.BAD_MESSAGE),
        (lambda: Hello(70000, "daemon", "control", b"n" * 32), ErrorCode.LIMIT),
        (lambda: Hello(1, "guest", "control", b"n" * 32), ErrorCode.BAD_MESSAGE),
        (lambda: Hello(1, "agent", "bulk", b"n" * 32), ErrorCode.BAD_MESSAGE),
        (lambda: Auth(b"m" * 31), ErrorCode.BAD_MESSAGE),
        (lambda: Attach(0), ErrorCode.LIMIT),
        (lambda: Attach(2**32), ErrorCode.LIMIT),
        (lambda: StreamRequest(0, "tcp", "::1", 1), ErrorCode.LIMIT),
        (lambda: StreamFailed(1, 999, "x"), ErrorCode.BAD_MESSAGE),
        (lambda: Request(-1, "ping"), ErrorCode.LIMIT),
        (lambda: Request(1, "Ping"), ErrorCode.BAD_MESSAGE),
        (lambda: Request(1, ""), ErrorCode.BAD_MESSAGE),
        (lambda: Request(1, "a" * 65), ErrorCode.LIMIT),
        (lambda: Request(1, "exec", [1, 2]), ErrorCode.BAD_MESSAGE),
        (lambda: Request(1, "exec", {"x": float("nan")}), ErrorCode.BAD_MESSAGE),
        (lambda: Request(1, "exec", {"x": object()}), ErrorCode.BAD_MESSAGE),
        (lambda: Request(1, "exec", {"x": "a" * MAX_JSON_BYTES}), ErrorCode.LIMIT),
        (lambda: Response(1, 1, None), ErrorCode.BAD_MESSAGE),
        (lambda: Response(1, True, _deep(MAX_JSON_DEPTH + 1)), ErrorCode.LIMIT),
        (lambda: Error(ErrorCode.LIMIT, "x" * (MAX_ERROR_MESSAGE_BYTES + 1)), ErrorCode.LIMIT),
        (lambda: Error(ErrorCode.LIMIT, "\ud800"), ErrorCode.BAD_MESSAGE),
        (
            lambda: Listeners(tuple(Listener("tcp", "::1", 1 + i) for i in range(4097))),
            ErrorCode.LIMIT,
        ),
        (lambda: Listeners((("tcp", "::1", 1),)), ErrorCode.BAD_MESSAGE),
    ],
)
def test_fields_out_of_range_are_refused_at_construction(
    build: Callable[[], object], code: ErrorCode
) -> None:
    with pytest.raises(ProtocolError) as caught:
        build()
    assert caught.value.code is code
    assert caught.value.local


def _deep(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


def test_json_depth_at_the_limit_is_accepted() -> None:
    response = Response(1, True, _deep(MAX_JSON_DEPTH))
    kind, payload = split_frame(encode_frame(response))
    assert decode_payload(kind, payload) == response


def test_error_clipped_keeps_whole_characters() -> None:
    error = Error.clipped(ErrorCode.INTERNAL, "é" * 2000)
    assert len(error.message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert error.message.endswith("...")


def test_listeners_batches_split_a_large_change() -> None:
    added = [Listener("tcp", "127.0.0.1", 1 + i) for i in range(5000)]
    removed = [Listener("udp", "::", 1 + i) for i in range(4000)]
    batches = Listeners.batches(added, removed)
    assert len(batches) == 3
    assert [x for b in batches for x in b.added] == added
    assert [x for b in batches for x in b.removed] == removed
    assert all(len(b.added) + len(b.removed) <= MAX_LISTENERS_PER_MESSAGE for b in batches)
    assert Listeners.batches([], []) == [Listeners()]


def test_full_size_listeners_message_fits_a_control_frame() -> None:
    from proxy.wire.limits import MAX_CONTROL_PAYLOAD

    worst = Listener("udp", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%abcdefghijklmnop", 65535)
    message = Listeners((worst,) * MAX_LISTENERS_PER_MESSAGE)
    frame = encode_frame(message)
    assert len(frame) - 5 <= MAX_CONTROL_PAYLOAD
    assert decode_payload(*split_frame(frame)) == message


@pytest.mark.parametrize(
    ("kind", "payload", "code", "words"),
    [
        (0x7E, b"", ErrorCode.UNKNOWN_TYPE, "0x7e"),
        (MessageType.AUTH, b"m" * 33, ErrorCode.BAD_MESSAGE, "trailing"),
        (MessageType.AUTH, b"m" * 31, ErrorCode.BAD_MESSAGE, "truncated"),
        (MessageType.HELLO, b"XNET" + b"\0" * 36, ErrorCode.BAD_MESSAGE, "not a hostnet"),
        (MessageType.HELLO, b"HNET\0\1\3\1" + b"n" * 32, ErrorCode.BAD_MESSAGE, "role"),
        (MessageType.OPEN, b"\1\5" + b"\0" * 6, ErrorCode.BAD_MESSAGE, "family"),
        (MessageType.OPEN, b"\1\4\1\2\3\4\0\0", ErrorCode.LIMIT, "port"),
        (MessageType.OPEN, b"\3\4\1\2\3\4\0\1", ErrorCode.BAD_MESSAGE, "proto"),
        (
            MessageType.OPEN,
            b"\1\6" + b"\0" * 15 + b"\1" + b"\3a b" + b"\0\1",
            ErrorCode.BAD_MESSAGE,
            "zone",
        ),
        (MessageType.ERROR, b"\0\x63\0\0", ErrorCode.BAD_MESSAGE, "99"),
        (MessageType.ERROR, b"\0\1\0\2\xff\xfe", ErrorCode.BAD_MESSAGE, "UTF-8"),
        (MessageType.ERROR, b"\0\1\x04\x01" + b"x" * 1025, ErrorCode.LIMIT, "limit"),
        (MessageType.RESPONSE, b"\0\0\0\1\2\0\0\0\0", ErrorCode.BAD_MESSAGE, "ok flag"),
        (MessageType.RESPONSE, b"\0\0\0\1\1\0\0\0\3NaN", ErrorCode.BAD_MESSAGE, "JSON"),
        (MessageType.RESPONSE, b"\0\0\0\1\1\0\0\0\0051e999", ErrorCode.BAD_MESSAGE, "range"),
        (MessageType.RESPONSE, b"\0\0\0\1\1\0\0\x13\x88" + b"[" * 5000, ErrorCode.LIMIT, "deeper"),
        (MessageType.REQUEST, b"\0\0\0\1\4ping\0\0\0\2[]", ErrorCode.BAD_MESSAGE, "object"),
        (MessageType.REQUEST, b"\0\0\0\1\4ping\xff\0\0\2{}", ErrorCode.BAD_MESSAGE, "truncated"),
        (MessageType.LISTENERS, b"\x10\x01", ErrorCode.LIMIT, "above the limit"),
        (MessageType.LISTENERS, b"\x08\0", ErrorCode.BAD_MESSAGE, "truncated"),
    ],
)
def test_malformed_payloads_raise_protocol_error(
    kind: int, payload: bytes, code: ErrorCode, words: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_payload(kind, payload)
    assert caught.value.code is code
    assert words in caught.value.message
    assert not caught.value.local
