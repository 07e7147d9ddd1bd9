"""The per-connection state machine of the wire protocol, sans-I/O (fed bytes, gives bytes).

HELLO --peer Hello--> AUTH --peer Auth verified, peer AuthOk--> READY
control: READY stays READY (Listeners, StreamRequest, StreamFailed, Request, Response)
stream:  READY --send Open/Attach/OpenEngine--> OPENING --recv OpenOk--> RAW
         READY --recv Open/Attach/OpenEngine--> ACCEPTING --send OpenOk--> RAW
an Error sent or received after the handshake --> CLOSED; end of input --> CLOSED
any protocol violation --> ERROR (for good)
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeAlias

from proxy.wire.auth import compute_mac, transcript, verify_mac
from proxy.wire.codec import (
    MessageType,
    decode_payload,
    encode_frame,
    message_type,
    parse_header,
)
from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import (
    FRAME_HEADER_BYTES,
    HELLO_MAGIC,
    MAX_CONTROL_PAYLOAD,
    MAX_HANDSHAKE_PAYLOAD,
    MAX_STREAM_SETUP_PAYLOAD,
    MIN_SECRET_BYTES,
    NONCE_BYTES,
    PROTOCOL_VERSION,
)
from proxy.wire.messages import (
    PURPOSES,
    ROLES,
    Attach,
    Auth,
    AuthOk,
    Error,
    Hello,
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


class State(enum.Enum):
    HELLO = "HELLO"  # our Hello is queued, waiting for the peer's
    AUTH = "AUTH"  # waiting for the peer's Auth, then its AuthOk
    READY = "READY"  # authenticated; control messages, or (stream) the Open/Attach
    OPENING = "OPENING"  # stream: we sent Open/Attach, waiting for OpenOk or Error
    ACCEPTING = "ACCEPTING"  # stream: we received Open/Attach and must answer
    RAW = "RAW"  # stream: both sides now send raw bytes; see take_trailing_data()
    CLOSED = "CLOSED"  # ended cleanly (an Error after the handshake, or end of input)
    ERROR = "ERROR"  # a protocol violation; the connection is unusable


class Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"


NEED_DATA: Final = Sentinel.NEED_DATA
"""next_event(): no complete event yet; feed more bytes with receive_data()."""
PAUSED: Final = Sentinel.PAUSED
"""next_event(): nothing more will be parsed (RAW or CLOSED)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """The handshake is complete: the peer proved it holds the secret and accepted our proof."""

    peer_version: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The input ended cleanly on a frame boundary after the handshake."""


Event: TypeAlias = (
    Ready
    | ConnectionClosed
    | Listeners
    | StreamRequest
    | StreamFailed
    | Request
    | Response
    | Open
    | Attach
    | OpenEngine
    | OpenOk
    | Error
)

_CONTROL_MESSAGES = (Listeners, StreamRequest, StreamFailed, Request, Response)
_STREAM_OPENERS = (Open, Attach, OpenEngine)


def _local(code: ErrorCode, message: str) -> NoReturn:
    raise ProtocolError(code, message, local=True)


class Connection:
    """One side of one hostnet connection (control or stream).

    Typical use::

        conn = Connection("daemon", "control", secret)
        write(conn.initiate())
        while True:
            conn.receive_data(read())           # b"" means end of input
            while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
                handle(event)                   # may call conn.send(...) -> bytes to write
            write(conn.data_to_send())          # automatic replies (Auth, AuthOk, Error)

    Every method that produces bytes returns *all* pending output in order, so writing the
    result of `send()` also flushes earlier automatic replies. On a ProtocolError raised from
    `next_event()`, `data_to_send()` holds an Error frame for the peer: write it, then close.
    """

    def __init__(
        self,
        role: Role,
        purpose: Purpose,
        secret: bytes,
        *,
        nonce: bytes | None = None,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        if role not in ROLES:
            _local(ErrorCode.BAD_MESSAGE, f"role must be one of {ROLES}, not {role!r}")
        if purpose not in PURPOSES:
            _local(ErrorCode.BAD_MESSAGE, f"purpose must be one of {PURPOSES}, not {purpose!r}")
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            _local(ErrorCode.BAD_MESSAGE, f"the secret must be at least {MIN_SECRET_BYTES} bytes")
        self.role: Final[Role] = role
        self.purpose: Final[Purpose] = purpose
        self.version: Final[int] = version
        self.nonce: Final[bytes] = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
        self.peer_version: int | None = None
        self.state = State.HELLO
        self.error: ProtocolError | None = None
        self._secret = secret
        self._peer_nonce = b""
        self._peer_verified = False
        self._in = bytearray()
        self._out = bytearray()
        self._eof = False
        self._queue(Hello(version, role, purpose, self.nonce))

    # -- output ---------------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The bytes that start the connection (our Hello). Send them right away."""
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """Take all bytes queued for the peer (Hello, automatic replies, an Error on failure)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, message: Message) -> bytes:
        """Queue `message` and return every pending byte for the peer, in order.

        Raises ProtocolError(local=True, code WRONG_STATE or LIMIT) when the message is not
        allowed now or is too big; the connection's state is then unchanged.
        """
        self._raise_if_failed()
        state = self.state
        if isinstance(message, Error) and state in (
            State.HELLO,
            State.AUTH,
            State.READY,
            State.OPENING,
            State.ACCEPTING,
        ):
            next_state = State.CLOSED
        elif state is State.READY and self.purpose == "control":
            if not isinstance(message, _CONTROL_MESSAGES):
                self._wrong_send(message)
            next_state = State.READY
        elif state is State.READY and isinstance(message, _STREAM_OPENERS):
            next_state = State.OPENING
        elif state is State.ACCEPTING and isinstance(message, OpenOk):
            next_state = State.RAW
        else:
            self._wrong_send(message)
        self._queue(message)
        self.state = next_state
        return self.data_to_send()

    def _wrong_send(self, message: Message) -> NoReturn:
        _local(
            ErrorCode.WRONG_STATE,
            f"cannot send {type(message).__name__} on a {self.purpose} connection "
            f"in state {self.state.name}",
        )

    def _queue(self, message: Message) -> None:
        frame = encode_frame(message)
        limit = self._max_payload()
        if len(frame) - FRAME_HEADER_BYTES > limit:
            _local(
                ErrorCode.LIMIT,
                f"{type(message).__name__} of {len(frame) - FRAME_HEADER_BYTES} bytes is above "
                f"the limit of {limit} bytes in state {self.state.name}",
            )
        self._out += frame

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; b"" marks the end of input."""
        self._raise_if_failed()
        if not data:
            self._eof = True
        elif self._eof:
            _local(ErrorCode.WRONG_STATE, "received data after the end of input")
        elif self.state is not State.CLOSED:
            self._in += data

    def take_trailing_data(self) -> bytes:
        """In RAW: the raw bytes that arrived together with the last frame. Relay them first."""
        if self.state is not State.RAW:
            _local(ErrorCode.WRONG_STATE, f"no trailing data in state {self.state.name}")
        data = bytes(self._in)
        self._in.clear()
        return data

    def next_event(self) -> Event | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]:
        """The next event from received bytes, NEED_DATA, or PAUSED (RAW or CLOSED).

        Raises ProtocolError on any violation by the peer; the state is ERROR from then on.
        """
        self._raise_if_failed()
        try:
            while self.state not in (State.RAW, State.CLOSED):
                frame = self._next_frame()
                if frame is None:
                    return self._end_of_buffer()
                event = self._handle(*frame)
                if event is not None:
                    return event
            return PAUSED
        except ProtocolError as exc:
            self._fail(exc)

    # -- internals ------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise ProtocolError(
                self.error.code,
                f"the connection already failed: {self.error.message}",
                remote=self.error.remote,
            )

    def _fail(self, exc: ProtocolError) -> NoReturn:
        self.state = State.ERROR
        self.error = exc
        self._in.clear()
        if not exc.remote and exc.code is not ErrorCode.PEER_CLOSED:
            self._out += encode_frame(Error.clipped(exc.code, exc.message))
        raise exc

    def _max_payload(self) -> int:
        if self.state in (State.HELLO, State.AUTH):
            return MAX_HANDSHAKE_PAYLOAD
        return MAX_CONTROL_PAYLOAD if self.purpose == "control" else MAX_STREAM_SETUP_PAYLOAD

    def _next_frame(self) -> tuple[MessageType, bytes] | None:
        if len(self._in) < FRAME_HEADER_BYTES:
            return None
        kind, length = parse_header(bytes(self._in[:FRAME_HEADER_BYTES]))
        mtype = message_type(kind)
        limit = self._max_payload()
        if length > limit:
            raise ProtocolError(
                ErrorCode.LIMIT,
                f"{mtype.name} frame of {length} bytes is above the limit of {limit} bytes "
                f"in state {self.state.name}",
            )
        end = FRAME_HEADER_BYTES + length
        if len(self._in) < end:
            return None
        payload = bytes(self._in[FRAME_HEADER_BYTES:end])
        del self._in[:end]
        return mtype, payload

    def _end_of_buffer(self) -> Literal[Sentinel.NEED_DATA] | ConnectionClosed:
        if not self._eof:
            return NEED_DATA
        if self._in:
            raise ProtocolError(
                ErrorCode.PEER_CLOSED,
                f"the peer closed the connection in the middle of a frame "
                f"({len(self._in)} bytes of it arrived)",
            )
        if self.state in (State.HELLO, State.AUTH):
            raise ProtocolError(
                ErrorCode.PEER_CLOSED,
                f"the peer closed the connection during the handshake (state {self.state.name});"
                " its log says why",
            )
        self.state = State.CLOSED
        return ConnectionClosed()

    def _check_version(self, payload: bytes) -> None:
        """Compare versions before decoding the rest, so any future Hello gets a clear answer."""
        header = len(HELLO_MAGIC) + 2
        if len(payload) >= header and payload.startswith(HELLO_MAGIC):
            theirs = int.from_bytes(payload[len(HELLO_MAGIC) : header], "big")
            if theirs != self.version:
                raise ProtocolError(
                    ErrorCode.VERSION,
                    f"wire protocol version mismatch: this {self.role} speaks version "
                    f"{self.version}, the peer speaks version {theirs}; install the same "
                    "hostnet release on the host and in the VM",
                )

    def _handle(self, mtype: MessageType, payload: bytes) -> Event | None:
        if self.state is State.HELLO and mtype is MessageType.HELLO:
            self._check_version(payload)
        message = decode_payload(mtype, payload)
        state = self.state
        if isinstance(message, Error):
            if state in (State.HELLO, State.AUTH):
                raise ProtocolError(
                    message.code, f"the peer refused the handshake: {message.message}", remote=True
                )
            self.state = State.CLOSED
            return message
        if state is State.HELLO and isinstance(message, Hello):
            self._on_hello(message)
            return None
        if state is State.AUTH and isinstance(message, Auth) and not self._peer_verified:
            self._on_auth(message)
            return None
        if state is State.AUTH and isinstance(message, AuthOk) and self._peer_verified:
            self.state = State.READY
            assert self.peer_version is not None
            return Ready(self.peer_version)
        if state is State.READY and self.purpose == "control":
            if isinstance(message, _CONTROL_MESSAGES):
                return message
        elif state is State.READY and isinstance(message, _STREAM_OPENERS):
            self.state = State.ACCEPTING
            return message
        elif state is State.OPENING and isinstance(message, OpenOk):
            self.state = State.RAW
            return message
        raise ProtocolError(
            ErrorCode.WRONG_STATE,
            f"unexpected {mtype.name} message on a {self.purpose} connection in state {state.name}",
        )

    def _on_hello(self, hello: Hello) -> None:
        if hello.role == self.role:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"both sides claim to be the {self.role}; one must be the daemon, one the agent",
            )
        if hello.purpose != self.purpose:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"the peer opened a {hello.purpose} connection where this side expects "
                f"a {self.purpose} connection",
            )
        if hello.nonce == self.nonce:
            raise ProtocolError(ErrorCode.AUTH_FAILED, "the peer echoed this side's nonce")
        self.peer_version = hello.version
        self._peer_nonce = hello.nonce
        self._queue(Auth(compute_mac(self._secret, self._transcript(self.role))))
        self.state = State.AUTH

    def _on_auth(self, auth: Auth) -> None:
        peer_role: Role = "agent" if self.role == "daemon" else "daemon"
        if not verify_mac(self._secret, self._transcript(peer_role), auth.mac):
            raise ProtocolError(
                ErrorCode.AUTH_FAILED,
                "authentication failed: the peer does not hold this VM's secret; the daemon "
                "and the agent must use the same per-VM secret file",
            )
        self._peer_verified = True
        self._queue(AuthOk())

    def _transcript(self, sender: Role) -> bytes:
        daemon_nonce, agent_nonce = (
            (self.nonce, self._peer_nonce)
            if self.role == "daemon"
            else (self._peer_nonce, self.nonce)
        )
        return transcript(
            version=self.version,
            purpose=self.purpose,
            sender=sender,
            daemon_nonce=daemon_nonce,
            agent_nonce=agent_nonce,
        )
