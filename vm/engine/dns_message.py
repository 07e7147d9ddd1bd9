"""The little DNS this engine needs, as plain functions over bytes (no sockets).

Enough of RFC 1035 to read one question and to answer it with one A record, no record, or
an error; anything else is passed on to an upstream server as it came.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_RD = 0x0100
FLAG_RA = 0x0080
RCODE_SERVFAIL = 2
RCODE_NOTIMP = 4
TTL = 60


class DnsFormatError(ValueError):
    """Bytes that are not a query this server can read."""


@dataclass(frozen=True)
class Question:
    ident: int
    flags: int
    name: str
    qtype: int
    qclass: int
    raw: bytes
    """The question section exactly as it came, echoed in the answer."""


def parse_query(data: bytes) -> Question:
    if len(data) < HEADER.size:
        raise DnsFormatError("shorter than a DNS header")
    ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    if flags & FLAG_QR or qdcount != 1:
        raise DnsFormatError("not a query with one question")
    labels: list[str] = []
    offset = HEADER.size
    while True:
        if offset >= len(data):
            raise DnsFormatError("name runs past the end")
        length = data[offset]
        offset += 1
        if length == 0:
            break
        if length > 63:
            raise DnsFormatError("compressed or oversized label in a question")
        labels.append(data[offset : offset + length].decode("ascii", "replace").lower())
        offset += length
    if offset + 4 > len(data):
        raise DnsFormatError("question cut short")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    raw = data[HEADER.size : offset + 4]
    return Question(ident, flags, ".".join(labels), qtype, qclass, raw)


def answer(question: Question, address: str | None, *, rcode: int = 0) -> bytes:
    """A reply to ``question``: one A record for ``address``, or none (with ``rcode``)."""
    flags = FLAG_QR | FLAG_AA | FLAG_RA | (question.flags & FLAG_RD) | rcode
    records = b""
    if address is not None:
        rdata = ipaddress.IPv4Address(address).packed
        # The name is a pointer to the question's, at offset 12.
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, len(rdata)) + rdata
    count = 1 if records else 0
    return HEADER.pack(question.ident, flags, 1, count, 0, 0) + question.raw + records


def failure(data: bytes, rcode: int) -> bytes:
    """An error reply to a query that could only be partly read (echoes its id)."""
    ident = HEADER.unpack_from(data)[0] if len(data) >= HEADER.size else 0
    return HEADER.pack(ident, FLAG_QR | FLAG_RA | rcode, 0, 0, 0, 0)
