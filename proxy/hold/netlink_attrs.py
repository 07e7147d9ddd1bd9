"""Netlink attributes (``struct nlattr``) and messages, packed and walked: plain bytes, no I/O.

Shared by the nfnetlink_queue codec and the nf_tables batch writer. Attribute payloads in
nfnetlink are big-endian unless the kernel's header says otherwise; the helpers here leave
the payload to the caller and only handle the header, nesting and 4-byte alignment.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

NLMSGHDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
NFGENMSG: Final = struct.Struct("=BBH")  # family, version, res_id (the last big-endian)
NLA: Final = struct.Struct("=HH")  # len, type
NLA_F_NESTED: Final = 0x8000
NLA_TYPE_MASK: Final = 0x3FFF

NLM_F_REQUEST: Final = 0x01
NLM_F_ACK: Final = 0x04
NLM_F_CREATE: Final = 0x400
NLM_F_APPEND: Final = 0x800
NLMSG_ERROR: Final = 2

_FAMILY_VERSION: Final = struct.Struct("=BB")
_BE16: Final = struct.Struct(">H")
_BE32: Final = struct.Struct(">I")
_BE32_SIGNED: Final = struct.Struct(">i")


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    return _pad(NLA.pack(NLA.size + len(payload), kind) + payload)


def nested(kind: int, *children: bytes) -> bytes:
    """An attribute holding other attributes."""
    return attr(kind | NLA_F_NESTED, b"".join(children))


def be16(kind: int, value: int) -> bytes:
    return attr(kind, _BE16.pack(value))


def be32(kind: int, value: int) -> bytes:
    return attr(kind, _BE32.pack(value))


def be32_signed(kind: int, value: int) -> bytes:
    return attr(kind, _BE32_SIGNED.pack(value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message (header + body), padded to 4 bytes."""
    return _pad(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body)


def nfgen(family: int, res_id: int = 0) -> bytes:
    """The nfnetlink header every nfnetlink message body starts with (``res_id`` big-endian)."""
    return _FAMILY_VERSION.pack(family, 0) + _BE16.pack(res_id)


def walk_attrs(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flags, payload offset, payload length) of each attribute in data[start:end]."""
    offset = start
    while offset + NLA.size <= end:
        length, kind = NLA.unpack_from(data, offset)
        if length < NLA.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, offset + NLA.size, length - NLA.size
        offset += (length + 3) & ~3


def walk_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """(type, seq, offset, length) of each whole netlink message in ``data``."""
    offset = 0
    end = len(data)
    while offset + NLMSGHDR.size <= end:
        length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > end:
            return
        yield kind, seq, offset, length
        offset += (length + 3) & ~3
