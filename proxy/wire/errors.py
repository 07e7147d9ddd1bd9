"""Error codes carried on the wire and the one exception the wire protocol raises."""

from __future__ import annotations

import enum

from proxy.errors import HostnetError


class ErrorCode(enum.IntEnum):
    """Why something failed; sent in `Error` messages and carried by `ProtocolError`.

    1..15 are protocol failures (the connection is unusable afterwards); 16 and up answer a
    single request (an Open, an Attach, a StreamRequest) and leave the peer healthy.
    """

    BAD_MESSAGE = 1  # a frame or field that does not decode or is out of range
    UNKNOWN_TYPE = 2  # a frame type this version does not know
    WRONG_STATE = 3  # a message that is not allowed at this point of the conversation
    LIMIT = 4  # a frame, field, count or buffer above its bound
    VERSION = 5  # the two sides speak different protocol versions
    AUTH_FAILED = 6  # the challenge-response failed: the two sides hold different secrets
    PEER_CLOSED = 7  # the connection ended before the conversation allowed it
    NOT_LISTENING = 16  # nothing listens on the requested port on that side
    REFUSED = 17  # the target refused the connection
    UNREACHABLE = 18  # the target address cannot be reached
    TIMEOUT = 19  # the target did not answer in time
    UNKNOWN_STREAM = 20  # an Attach or StreamFailed for a stream id nobody asked for
    POLICY = 21  # the request is not allowed by the configuration
    UNSUPPORTED = 22  # a request method or feature this side does not implement
    INTERNAL = 31  # a bug or an unexpected local failure on the sending side


class ProtocolError(HostnetError, ValueError):
    """The peer (or the local caller) broke the wire protocol.

    `code` says what kind of failure it was, `message` says what exactly and how to fix it.
    `remote` is True when the peer itself reported the failure in an `Error` message.
    `local` is True when the local caller misused the API (a send in the wrong state, a
    field out of range); such an error does not change the connection's state.
    """

    def __init__(
        self, code: ErrorCode, message: str, *, remote: bool = False, local: bool = False
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.remote = remote
        self.local = local
