"""hostnet's wire protocol between the daemon and the agent, sans-I/O (no sockets, like h11).

Every connection, over any transport (unix socket, TCP, vsock, a mux stream):

1. both sides send Hello(version, role, purpose, nonce) at once;
2. each sends Auth(HMAC-SHA256(secret, transcript)) and, once it verified the peer's, AuthOk;
3. then a *control* conversation (Listeners, StreamRequest, StreamFailed, Request, Response),
   or a *stream*: one Open, Attach or OpenEngine answered by OpenOk (then raw bytes,
   splice-able) or Error.

Frames are `type (1) | length (4, big-endian) | payload` with per-state size limits
(see `limits`). Decoding only ever raises ProtocolError; see `Connection` for the loop.
UDP payloads on a stream use the separate `encode_datagram` / `DatagramDecoder` framing.
"""

from proxy.listeners import Proto
from proxy.wire.codec import MessageType, decode_payload, encode_frame
from proxy.wire.connection import (
    NEED_DATA,
    PAUSED,
    Connection,
    ConnectionClosed,
    Event,
    Ready,
    Sentinel,
    State,
)
from proxy.wire.datagram import DatagramDecoder, encode_datagram
from proxy.wire.errors import ErrorCode, ProtocolError
from proxy.wire.limits import PROTOCOL_VERSION
from proxy.wire.messages import (
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
from proxy.wire.secret import SecretFileError, load_or_create_secret, load_secret

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "PROTOCOL_VERSION",
    "Attach",
    "Auth",
    "AuthOk",
    "Connection",
    "ConnectionClosed",
    "DatagramDecoder",
    "Error",
    "ErrorCode",
    "Event",
    "Hello",
    "Listener",
    "Listeners",
    "Message",
    "MessageType",
    "Open",
    "OpenEngine",
    "OpenOk",
    "Proto",
    "ProtocolError",
    "Purpose",
    "Ready",
    "Request",
    "Response",
    "Role",
    "SecretFileError",
    "Sentinel",
    "State",
    "StreamFailed",
    "StreamRequest",
    "decode_payload",
    "encode_datagram",
    "encode_frame",
    "load_or_create_secret",
    "load_secret",
]
