"""Binary encoding of message payloads and whole frames.

A frame is `type (1 byte) | length (4 bytes, big-endian) | payload`. Payload fields are
fixed-width big-endian integers, length-prefixed strings (u8 or u16 length) and addresses as
`family (4|6) | packed bytes [| u8 zone length | zone]`. Every length is checked against the
remaining payload and against the field's bound; trailing bytes are refused.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from typing import NoReturn, cast

from proxy.listeners import Proto
from proxy.wire.bounded_json import decode_json
from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import (
    FRAME_HEADER_BYTES,
    HELLO_MAGIC,
    MAC_BYTES,
    MAX_LISTENERS_PER_MESSAGE,
    NONCE_BYTES,
)
from proxy.wire.messages import (
    PROTOS,
    PURPOSES,
    ROLES,
    Attach,
    Auth,
    AuthOk,
    Error,
    Hello,
    Listener,
    Listeners,
    Message,
    Open,
    OpenEngine,
    OpenOk,
    Purpose,
    Request,
    Response,
    Role,
    StreamFailed,
    StreamRequest,
)

_HEADER = struct.Struct(">BI")


class MessageType(enum.IntEnum):
    """The frame type byte of each message."""

    HELLO = 0x01
    AUTH = 0x02
    AUTH_OK = 0x03
    ERROR = 0x0F
    LISTENERS = 0x10
    STREAM_REQUEST = 0x11
    STREAM_FAILED = 0x12
    REQUEST = 0x13
    RESPONSE = 0x14
    OPEN = 0x20
    ATTACH = 0x21
    OPEN_OK = 0x22
    OPEN_ENGINE = 0x23


MESSAGE_TYPES: dict[type[Message], MessageType] = {
    Hello: MessageType.HELLO,
    Auth: MessageType.AUTH,
    AuthOk: MessageType.AUTH_OK,
    Error: MessageType.ERROR,
    Listeners: MessageType.LISTENERS,
    StreamRequest: MessageType.STREAM_REQUEST,
    StreamFailed: MessageType.STREAM_FAILED,
    Request: MessageType.REQUEST,
    Response: MessageType.RESPONSE,
    Open: MessageType.OPEN,
    Attach: MessageType.ATTACH,
    OpenOk: MessageType.OPEN_OK,
    OpenEngine: MessageType.OPEN_ENGINE,
}


def _bad(message: str) -> NoReturn:
    raise ProtocolError(ErrorCode.BAD_MESSAGE, message)


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self.parts.append(value.to_bytes(1, "big"))

    def u16(self, value: int) -> None:
        self.parts.append(value.to_bytes(2, "big"))

    def u32(self, value: int) -> None:
        self.parts.append(value.to_bytes(4, "big"))

    def raw(self, value: bytes) -> None:
        self.parts.append(value)

    def str8(self, value: str) -> None:
        data = value.encode("utf-8")
        self.u8(len(data))
        self.raw(data)

    def str16(self, value: str) -> None:
        data = value.encode("utf-8")
        self.u16(len(data))
        self.raw(data)

    def blob32(self, value: bytes) -> None:
        self.u32(len(value))
        self.raw(value)

    def choice(self, value: str, choices: tuple[str, ...]) -> None:
        self.u8(choices.index(value) + 1)

    def host(self, host: str) -> None:
        address = ipaddress.ip_address(host)
        if isinstance(address, ipaddress.IPv4Address):
            self.u8(4)
            self.raw(address.packed)
        else:
            self.u8(6)
            self.raw(address.packed)
            self.str8(address.scope_id or "")

    def endpoint(self, proto: str, host: str, port: int) -> None:
        self.choice(proto, PROTOS)
        self.host(host)
        self.u16(port)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, payload: bytes, what: str) -> None:
        self.data = payload
        self.offset = 0
        self.what = what

    def take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            _bad(f"{self.what} is truncated: {field} needs {size} bytes")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def text(self, size: int, field: str) -> str:
        try:
            return self.take(size, field).decode("utf-8")
        except UnicodeDecodeError:
            _bad(f"{self.what}: {field} is not valid UTF-8")

    def str8(self, field: str) -> str:
        return self.text(self.u8(field), field)

    def str16(self, field: str) -> str:
        return self.text(self.u16(field), field)

    def blob32(self, field: str) -> bytes:
        return self.take(self.u32(field), field)

    def choice(self, field: str, choices: tuple[str, ...]) -> str:
        index = self.u8(field)
        if not 1 <= index <= len(choices):
            _bad(f"{self.what}: {field} has unknown value {index}")
        return choices[index - 1]

    def host(self) -> str:
        family = self.u8("address family")
        if family == 4:
            return str(ipaddress.IPv4Address(self.take(4, "IPv4 address")))
        if family == 6:
            address = ipaddress.IPv6Address(self.take(16, "IPv6 address"))
            zone = self.str8("IPv6 zone")
            return f"{address}%{zone}" if zone else str(address)
        _bad(f"{self.what}: address family {family} is neither 4 nor 6")

    def end(self) -> None:
        if self.offset != len(self.data):
            _bad(f"{self.what} has {len(self.data) - self.offset} unexpected trailing bytes")


def _write_listener(writer: _Writer, item: Listener) -> None:
    writer.endpoint(item.proto, item.host, item.port)


def _read_listener(reader: _Reader) -> Listener:
    return Listener(*_decode_endpoint(reader))


def encode_payload(message: Message) -> bytes:
    """The payload bytes of `message` (without the frame header)."""
    w = _Writer()
    match message:
        case Hello():
            w.raw(HELLO_MAGIC)
            w.u16(message.version)
            w.choice(message.role, ROLES)
            w.choice(message.purpose, PURPOSES)
            w.raw(message.nonce)
        case Auth():
            w.raw(message.mac)
        case AuthOk() | OpenOk() | OpenEngine():
            pass
        case Error():
            w.u16(message.code)
            w.str16(message.message)
        case Listeners():
            w.u16(len(message.added))
            for item in message.added:
                _write_listener(w, item)
            w.u16(len(message.removed))
            for item in message.removed:
                _write_listener(w, item)
        case Open():
            w.endpoint(message.proto, message.host, message.port)
        case StreamRequest():
            w.u32(message.stream_id)
            w.endpoint(message.proto, message.host, message.port)
        case StreamFailed():
            w.u32(message.stream_id)
            w.u16(message.code)
            w.str16(message.message)
        case Attach():
            w.u32(message.stream_id)
        case Request():
            w.u32(message.id)
            w.str8(message.method)
            w.blob32(message.encoded_params)
        case Response():
            w.u32(message.id)
            w.u8(1 if message.ok else 0)
            w.blob32(message.encoded_result)
    return w.getvalue()


def encode_frame(message: Message) -> bytes:
    """`message` as a complete frame: type, length, payload."""
    payload = encode_payload(message)
    return _HEADER.pack(MESSAGE_TYPES[type(message)], len(payload)) + payload


def parse_header(header: bytes) -> tuple[int, int]:
    """(type byte, payload length) of a 5-byte frame header."""
    assert len(header) == FRAME_HEADER_BYTES
    kind, length = _HEADER.unpack(header)
    return kind, length


def _decode_hello(r: _Reader) -> Hello:
    if r.take(len(HELLO_MAGIC), "magic") != HELLO_MAGIC:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            "the peer is not a hostnet daemon or agent (its hello lacks the HNET magic)",
        )
    version = r.u16("version")
    role = cast(Role, r.choice("role", ROLES))
    purpose = cast(Purpose, r.choice("purpose", PURPOSES))
    nonce = r.take(NONCE_BYTES, "nonce")
    return Hello(version, role, purpose, nonce)


def _decode_listeners(r: _Reader) -> Listeners:
    added_count = r.u16("added count")
    if added_count > MAX_LISTENERS_PER_MESSAGE:
        raise ProtocolError(ErrorCode.LIMIT, f"{added_count} added listeners is above the limit")
    added = tuple(_read_listener(r) for _ in range(added_count))
    removed_count = r.u16("removed count")
    if added_count + removed_count > MAX_LISTENERS_PER_MESSAGE:
        raise ProtocolError(
            ErrorCode.LIMIT, f"{added_count + removed_count} listeners is above the limit"
        )
    removed = tuple(_read_listener(r) for _ in range(removed_count))
    return Listeners(added, removed)


def _decode_endpoint(r: _Reader) -> tuple[Proto, str, int]:
    proto = cast(Proto, r.choice("proto", PROTOS))
    host = r.host()
    return proto, host, r.u16("port")


def _decode_stream_request(r: _Reader) -> StreamRequest:
    stream_id = r.u32("stream id")
    return StreamRequest(stream_id, *_decode_endpoint(r))


def _decode_request(r: _Reader) -> Request:
    request_id = r.u32("id")
    method = r.str8("method")
    params = decode_json(r.blob32("params"), what="request params")
    if not isinstance(params, dict):
        _bad("request params must be a JSON object")
    return Request(request_id, method, params)


def _decode_response(r: _Reader) -> Response:
    request_id = r.u32("id")
    ok = r.u8("ok")
    if ok > 1:
        _bad(f"response ok flag must be 0 or 1, not {ok}")
    return Response(request_id, ok == 1, decode_json(r.blob32("result"), what="response result"))


_DECODERS: dict[MessageType, Callable[[_Reader], Message]] = {
    MessageType.HELLO: _decode_hello,
    MessageType.AUTH: lambda r: Auth(r.take(MAC_BYTES, "mac")),
    MessageType.AUTH_OK: lambda r: AuthOk(),
    MessageType.ERROR: lambda r: Error(ErrorCode(r.u16("code")), r.str16("message")),
    MessageType.LISTENERS: _decode_listeners,
    MessageType.STREAM_REQUEST: _decode_stream_request,
    MessageType.STREAM_FAILED: lambda r: StreamFailed(
        r.u32("stream id"), ErrorCode(r.u16("code")), r.str16("message")
    ),
    MessageType.REQUEST: _decode_request,
    MessageType.RESPONSE: _decode_response,
    MessageType.OPEN: lambda r: Open(*_decode_endpoint(r)),
    MessageType.ATTACH: lambda r: Attach(r.u32("stream id")),
    MessageType.OPEN_OK: lambda r: OpenOk(),
    MessageType.OPEN_ENGINE: lambda r: OpenEngine(),
}


def message_type(kind: int) -> MessageType:
    """The MessageType for a type byte; ProtocolError(UNKNOWN_TYPE) for any other byte."""
    try:
        return MessageType(kind)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type 0x{kind:02x}") from None


def decode_payload(kind: int, payload: bytes) -> Message:
    """Decode one payload of frame type `kind`; only ever raises ProtocolError."""
    mtype = message_type(kind)
    reader = _Reader(payload, mtype.name.lower().replace("_", " ") + " message")
    try:
        message = _DECODERS[mtype](reader)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message) from None
    except ValueError as exc:  # an ErrorCode number this version does not know
        _bad(f"{reader.what}: {exc}")
    reader.end()
    return message
