"""nfnetlink_queue, sans-I/O: the messages that bind a queue, the packets it delivers, and
the verdicts sent back (include/uapi/linux/netfilter/nfnetlink_queue.h).

A packet queued by the kernel waits for a verdict; with the queue rule's ``bypass`` flag it
passes unchanged while nobody is bound, and with ``fail-open`` it passes when the queue is full.
Whole packets are copied (``COPY_RANGE``): the head says what is asked for, and a held
packet the kernel path will carry is sent again whole (proxy/hold/flow_resend.py). Only first
packets are held, so the copy is rare.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

from proxy.hold.netlink_attrs import (
    NFGENMSG,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSGHDR,
    attr,
    be32,
    message,
    nfgen,
    walk_attrs,
)

NETLINK_NETFILTER: Final = 12
NFNL_SUBSYS_QUEUE: Final = 3
NFQNL_MSG_PACKET: Final = 0
NFQNL_MSG_VERDICT: Final = 1
NFQNL_MSG_CONFIG: Final = 2

NFQA_PACKET_HDR: Final = 1
NFQA_VERDICT_HDR: Final = 2
NFQA_PAYLOAD: Final = 10
NFQA_CFG_CMD: Final = 1
NFQA_CFG_PARAMS: Final = 2
NFQA_CFG_QUEUE_MAXLEN: Final = 3
NFQA_CFG_MASK: Final = 4
NFQA_CFG_FLAGS: Final = 5
NFQNL_CFG_CMD_BIND: Final = 1
NFQNL_COPY_PACKET: Final = 2
NFQA_CFG_F_FAIL_OPEN: Final = 0x01

NF_DROP: Final = 0
NF_ACCEPT: Final = 1

COPY_RANGE: Final = 0xFFFF
"""Bytes of each packet copied to us: the largest IP packet."""

QUEUE_MAXLEN: Final = 4096

_CMD: Final = struct.Struct(">BxH")  # command, pad, pf
_PARAMS: Final = struct.Struct(">IB")  # copy_range, copy_mode (packed: 5 bytes)
_PACKET_HDR: Final = struct.Struct(">IHB")  # packet_id, hw_protocol, hook
_VERDICT: Final = struct.Struct(">II")  # verdict, packet_id


def _type(kind: int) -> int:
    return (NFNL_SUBSYS_QUEUE << 8) | kind


def bind_messages(queue: int, seq: int = 1) -> list[bytes]:
    """Bind ``queue`` to this socket, copy packet heads, fail open; each asks for an ack."""
    flags = NLM_F_REQUEST | NLM_F_ACK
    head = nfgen(socket.AF_UNSPEC, queue)
    return [
        message(
            _type(NFQNL_MSG_CONFIG),
            flags,
            seq,
            head + attr(NFQA_CFG_CMD, _CMD.pack(NFQNL_CFG_CMD_BIND, 0)),
        ),
        message(
            _type(NFQNL_MSG_CONFIG),
            flags,
            seq + 1,
            head
            + attr(NFQA_CFG_PARAMS, _PARAMS.pack(COPY_RANGE, NFQNL_COPY_PACKET))
            + be32(NFQA_CFG_QUEUE_MAXLEN, QUEUE_MAXLEN)
            + be32(NFQA_CFG_MASK, NFQA_CFG_F_FAIL_OPEN)
            + be32(NFQA_CFG_FLAGS, NFQA_CFG_F_FAIL_OPEN),
        ),
    ]


def verdict_message(queue: int, packet_id: int, verdict: int = NF_ACCEPT) -> bytes:
    """Let packet ``packet_id`` of ``queue`` go on (``verdict`` NF_ACCEPT) or drop it
    (NF_DROP: it is sent again by other means)."""
    body = nfgen(socket.AF_UNSPEC, queue) + attr(
        NFQA_VERDICT_HDR, _VERDICT.pack(verdict, packet_id)
    )
    return message(_type(NFQNL_MSG_VERDICT), NLM_F_REQUEST, 0, body)


@dataclass(frozen=True, slots=True)
class QueuedPacket:
    """A packet the kernel holds for us: its id (for the verdict) and its first bytes."""

    packet_id: int
    hook: int
    payload: bytes


def parse_packet(data: bytes | memoryview, offset: int, length: int) -> QueuedPacket | None:
    """The queued packet in the NFQNL_MSG_PACKET message at ``offset``, or None if it has
    no packet header (a message this codec does not know)."""
    start = offset + NLMSGHDR.size + NFGENMSG.size
    packet_id = hook = -1
    payload = b""
    for kind, at, size in walk_attrs(data, start, offset + length):
        if kind == NFQA_PACKET_HDR and size >= _PACKET_HDR.size:
            packet_id, _proto, hook = _PACKET_HDR.unpack_from(data, at)
        elif kind == NFQA_PAYLOAD:
            payload = bytes(data[at : at + size])
    if packet_id < 0:
        return None
    return QueuedPacket(packet_id, hook, payload)


def is_packet(kind: int) -> bool:
    return kind == _type(NFQNL_MSG_PACKET)
