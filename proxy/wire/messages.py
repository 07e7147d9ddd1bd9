"""The messages of the wire protocol: frozen dataclasses that validate every field.

Constructing a message with a field out of range raises ProtocolError(local=True); the decoder
builds the same dataclasses, so a received message obeys exactly the same bounds.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal, NoReturn, TypeAlias, get_args

from proxy.listeners import Proto
from proxy.wire.bounded_json import JsonValue, encode_json
from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import (
    MAC_BYTES,
    MAX_ERROR_MESSAGE_BYTES,
    MAX_LISTENERS_PER_MESSAGE,
    MAX_METHOD_BYTES,
    MAX_REQUEST_ID,
    MAX_SCOPE_ID_BYTES,
    MAX_STREAM_ID,
    NONCE_BYTES,
)

Role: TypeAlias = Literal["daemon", "agent"]
Purpose: TypeAlias = Literal["control", "stream"]
ROLES: tuple[Role, ...] = get_args(Role)
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
PROTOS: tuple[Proto, ...] = get_args(Proto)

_METHOD_RE = re.compile(r"[a-z][a-z0-9_.\-]*\Z")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.\-:@]+\Z")


def _fail(code: ErrorCode, message: str) -> NoReturn:
    raise ProtocolError(code, message, local=True)


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(ErrorCode.BAD_MESSAGE, f"{what} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        _fail(ErrorCode.LIMIT, f"{what} {value} is outside {low}..{high}")
    return value


def _check_bytes(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        _fail(ErrorCode.BAD_MESSAGE, f"{what} must be exactly {size} bytes")
    return value


def _check_choice(value: object, what: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(ErrorCode.BAD_MESSAGE, f"{what} must be one of {', '.join(choices)}, not {value!r}")


def _check_text(value: object, what: str, max_bytes: int) -> str:
    if not isinstance(value, str):
        _fail(ErrorCode.BAD_MESSAGE, f"{what} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        _fail(ErrorCode.BAD_MESSAGE, f"{what} is not encodable as UTF-8")
    if size > max_bytes:
        _fail(ErrorCode.LIMIT, f"{what} is {size} bytes, above the limit of {max_bytes}")
    return value


def canonical_host(host: object) -> str:
    """Validate an IPv4/IPv6 literal (IPv6 may carry a %zone) and return its canonical form."""
    if not isinstance(host, str):
        _fail(ErrorCode.BAD_MESSAGE, f"host must be a string, not {type(host).__name__}")
    if len(host) > 64:
        _fail(ErrorCode.LIMIT, "host is longer than 64 characters")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        _fail(ErrorCode.BAD_MESSAGE, f"host {host!r} is not an IPv4 or IPv6 address literal")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        scope = address.scope_id
        if len(scope.encode("utf-8")) > MAX_SCOPE_ID_BYTES or not _SCOPE_RE.match(scope):
            _fail(ErrorCode.BAD_MESSAGE, f"host {host!r} has an invalid zone (scope id)")
    return str(address)


def _check_endpoint(proto: object, host: object, port: object) -> str:
    _check_choice(proto, "proto", PROTOS)
    _check_int(port, "port", 1, 65535)
    return canonical_host(host)


def _check_code(code: object) -> ErrorCode:
    if isinstance(code, bool) or not isinstance(code, int):
        _fail(ErrorCode.BAD_MESSAGE, f"error code must be an ErrorCode, not {code!r}")
    try:
        return ErrorCode(code)
    except ValueError:
        _fail(ErrorCode.BAD_MESSAGE, f"unknown error code {code}")


def clip_message(message: str, max_bytes: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    """Cut `message` to at most `max_bytes` of UTF-8 without splitting a character."""
    encoded = message.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return encoded.decode("utf-8")
    return encoded[: max_bytes - 3].decode("utf-8", errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each side sends: what it speaks, who it is and what the connection is for."""

    version: int
    role: Role
    purpose: Purpose
    nonce: bytes

    def __post_init__(self) -> None:
        _check_int(self.version, "version", 0, 0xFFFF)
        _check_choice(self.role, "role", ROLES)
        _check_choice(self.purpose, "purpose", PURPOSES)
        _check_bytes(self.nonce, "nonce", NONCE_BYTES)


@dataclass(frozen=True, slots=True)
class Auth:
    """Proof that the sender holds the per-VM secret: HMAC-SHA256 over the handshake transcript."""

    mac: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.mac, "mac", MAC_BYTES)


@dataclass(frozen=True, slots=True)
class AuthOk:
    """The sender verified the peer's Auth."""


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket: protocol, address literal (canonicalised) and port."""

    proto: Proto
    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _check_endpoint(self.proto, self.host, self.port))


@dataclass(frozen=True, slots=True)
class Listeners:
    """A change in the sender's set of listening sockets (control)."""

    added: tuple[Listener, ...] = ()
    removed: tuple[Listener, ...] = ()

    def __post_init__(self) -> None:
        for name in ("added", "removed"):
            items = getattr(self, name)
            if not isinstance(items, tuple | list):
                _fail(ErrorCode.BAD_MESSAGE, f"{name} must be a tuple of Listener")
            if not all(isinstance(item, Listener) for item in items):
                _fail(ErrorCode.BAD_MESSAGE, f"{name} must contain only Listener values")
            object.__setattr__(self, name, tuple(items))
        total = len(self.added) + len(self.removed)
        if total > MAX_LISTENERS_PER_MESSAGE:
            _fail(
                ErrorCode.LIMIT,
                f"{total} listeners in one message, above the limit of "
                f"{MAX_LISTENERS_PER_MESSAGE}; use Listeners.batches()",
            )

    @classmethod
    def batches(
        cls,
        added: tuple[Listener, ...] | list[Listener],
        removed: tuple[Listener, ...] | list[Listener],
    ) -> list[Listeners]:
        """Split a change of any size into messages within the per-message bound."""
        items = [(True, item) for item in added] + [(False, item) for item in removed]
        step = MAX_LISTENERS_PER_MESSAGE
        out = [
            cls(
                tuple(item for is_added, item in items[start : start + step] if is_added),
                tuple(item for is_added, item in items[start : start + step] if not is_added),
            )
            for start in range(0, len(items), step)
        ]
        return out or [cls()]


@dataclass(frozen=True, slots=True)
class Open:
    """Stream connection: connect this stream to proto host:port on the receiving side."""

    proto: Proto
    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _check_endpoint(self.proto, self.host, self.port))


@dataclass(frozen=True, slots=True)
class OpenEngine:
    """Stream connection: connect this stream to the container engine's API socket in the VM.

    It names no path: the agent alone knows where its VM's engine listens (the usual
    docker.sock paths, or what the VM's owner gave it), so a stream is never a way to an
    arbitrary unix socket there."""


@dataclass(frozen=True, slots=True)
class OpenOk:
    """Stream connection: the Open or Attach succeeded; from now on both sides send raw bytes."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Control: please open a stream connection to me and Attach it as `stream_id`.

    Sent by the side that cannot connect (the agent, for VM-to-host connections); the
    receiving side connects `proto host:port` on its own side, then opens the stream.
    """

    stream_id: int
    proto: Proto
    host: str
    port: int

    def __post_init__(self) -> None:
        _check_int(self.stream_id, "stream_id", 1, MAX_STREAM_ID)
        object.__setattr__(self, "host", _check_endpoint(self.proto, self.host, self.port))


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """Control: the StreamRequest `stream_id` could not be served (target refused, ...)."""

    stream_id: int
    code: ErrorCode
    message: str = ""

    def __post_init__(self) -> None:
        _check_int(self.stream_id, "stream_id", 1, MAX_STREAM_ID)
        object.__setattr__(self, "code", _check_code(self.code))
        _check_text(self.message, "message", MAX_ERROR_MESSAGE_BYTES)


@dataclass(frozen=True, slots=True)
class Attach:
    """Stream connection: this connection serves the StreamRequest `stream_id`."""

    stream_id: int

    def __post_init__(self) -> None:
        _check_int(self.stream_id, "stream_id", 1, MAX_STREAM_ID)


@dataclass(frozen=True, slots=True)
class Request:
    """Control: call `method` (exec, poweroff, ping, ...) with a JSON object of parameters."""

    id: int
    method: str
    params: dict[str, JsonValue] = field(default_factory=dict)
    encoded_params: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_int(self.id, "request id", 0, MAX_REQUEST_ID)
        _check_text(self.method, "method", MAX_METHOD_BYTES)
        if not _METHOD_RE.match(self.method):
            _fail(
                ErrorCode.BAD_MESSAGE,
                f"method {self.method!r} must be lower-case letters, digits, '_', '.' or '-'",
            )
        if not isinstance(self.params, dict):
            _fail(ErrorCode.BAD_MESSAGE, "params must be a JSON object (a dict)")
        object.__setattr__(self, "encoded_params", encode_json(self.params, what="params"))


@dataclass(frozen=True, slots=True)
class Response:
    """Control: the answer to Request `id`; `result` is any JSON value (an error text if not ok)."""

    id: int
    ok: bool
    result: JsonValue = None
    encoded_result: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_int(self.id, "request id", 0, MAX_REQUEST_ID)
        if not isinstance(self.ok, bool):
            _fail(ErrorCode.BAD_MESSAGE, "ok must be a bool")
        object.__setattr__(self, "encoded_result", encode_json(self.result, what="result"))


@dataclass(frozen=True, slots=True)
class Error:
    """A failure: fatal during the handshake and on control; on a stream, refuses the Open."""

    code: ErrorCode
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", _check_code(self.code))
        _check_text(self.message, "message", MAX_ERROR_MESSAGE_BYTES)

    @classmethod
    def clipped(cls, code: ErrorCode, message: str) -> Error:
        """An Error whose message is cut to the size limit instead of being refused."""
        return cls(code, clip_message(message))


Message: TypeAlias = (
    Hello
    | Auth
    | AuthOk
    | Listeners
    | Open
    | OpenEngine
    | OpenOk
    | StreamRequest
    | StreamFailed
    | Attach
    | Request
    | Response
    | Error
)
