"""Every bound of the wire protocol in one place. Both sides enforce them when decoding."""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""The version this code speaks. Both sides must state the same one in their Hello."""

HELLO_MAGIC = b"HNET"
"""First bytes of every Hello payload: tells a hostnet peer from anything else on the port."""

NONCE_BYTES = 32
MAC_BYTES = 32
MIN_SECRET_BYTES = 16

FRAME_HEADER_BYTES = 5  # 1-byte type + 4-byte big-endian payload length

MAX_HANDSHAKE_PAYLOAD = 2 * 1024
"""Largest payload accepted before authentication completes (Hello, Auth, AuthOk, Error)."""

MAX_STREAM_SETUP_PAYLOAD = 4 * 1024
"""Largest payload on a stream connection before it switches to raw bytes."""

MAX_CONTROL_PAYLOAD = 256 * 1024
"""Largest payload on an authenticated control connection."""

MAX_ERROR_MESSAGE_BYTES = 1024
MAX_LISTENERS_PER_MESSAGE = 4096
"""Bound on added + removed listeners in one Listeners message; send more in several."""

MAX_SCOPE_ID_BYTES = 16  # IPv6 zone: an interface name (IFNAMSIZ) or a number
MAX_METHOD_BYTES = 64
MAX_JSON_BYTES = 240 * 1024
MAX_JSON_DEPTH = 32
MAX_REQUEST_ID = 2**32 - 1
MAX_STREAM_ID = 2**32 - 1

MAX_DATAGRAM_BYTES = 65_507
"""Largest UDP payload over IPv4; the datagram framing refuses anything larger."""
