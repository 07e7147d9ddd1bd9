"""Delete conntrack entries by their original tuple (ctnetlink, IPCTNL_MSG_CT_DELETE).

The message is built sans-I/O from ``netlink_attrs`` like the hold's other netlink messages
(include/uapi/linux/netfilter/nfnetlink_conntrack.h); ``delete_flows`` sends them on one
socket and reads the acknowledgements. A local netlink request answers in microseconds, so
it runs inline. pyroute2's conntrack socket is not used: its asyncio transport is a datagram
endpoint, which uvloop refuses for AF_NETLINK.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable
from typing import Final

from proxy.hold.netlink_attrs import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    attr,
    be16,
    message,
    nested,
    nfgen,
    walk_messages,
)
from proxy.hold.nfqueue_codec import NETLINK_NETFILTER

NFNL_SUBSYS_CTNETLINK: Final = 1
IPCTNL_MSG_CT_DELETE: Final = 2
CTA_TUPLE_ORIG: Final = 1
CTA_TUPLE_IP: Final = 1
CTA_TUPLE_PROTO: Final = 2
CTA_IP_V4_SRC: Final = 1
CTA_IP_V4_DST: Final = 2
CTA_PROTO_NUM: Final = 1
CTA_PROTO_SRC_PORT: Final = 2
CTA_PROTO_DST_PORT: Final = 3
_ERROR_CODE: Final = struct.Struct("=i")

Flow = tuple[str, str, int, int, int]
"""An IPv4 flow's original tuple: source, destination, protocol, source port, destination port."""


def delete_message(flow: Flow, seq: int) -> bytes:
    """The request that deletes ``flow``'s entry, asking for an acknowledgement."""
    saddr, daddr, proto, sport, dport = flow
    body = nfgen(socket.AF_INET) + nested(
        CTA_TUPLE_ORIG,
        nested(
            CTA_TUPLE_IP,
            attr(CTA_IP_V4_SRC, socket.inet_aton(saddr)),
            attr(CTA_IP_V4_DST, socket.inet_aton(daddr)),
        ),
        nested(
            CTA_TUPLE_PROTO,
            attr(CTA_PROTO_NUM, bytes((proto,))),
            be16(CTA_PROTO_SRC_PORT, sport),
            be16(CTA_PROTO_DST_PORT, dport),
        ),
    )
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
    return message(kind, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def acknowledgements(data: bytes) -> dict[int, int]:
    """Each acknowledgement in ``data``: sequence number -> errno (0 for success)."""
    return {
        seq: -_ERROR_CODE.unpack_from(data, offset + 16)[0]
        for kind, seq, offset, _length in walk_messages(data)
        if kind == NLMSG_ERROR
    }


def delete_flows(flows: Iterable[Flow], timeout: float = 0.5) -> dict[Flow, int]:
    """Delete each flow's entry in this network namespace; flow -> errno (0 deleted,
    ENOENT none there). OSError if the socket cannot be made (needs CAP_NET_ADMIN)."""
    pending = {seq: flow for seq, flow in enumerate(sorted(set(flows)), start=1)}
    results: dict[Flow, int] = {}
    if not pending:
        return results
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
    ) as sock:
        sock.bind((0, 0))
        sock.settimeout(timeout)
        sock.send(b"".join(delete_message(flow, seq) for seq, flow in pending.items()))
        while pending:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            for seq, code in acknowledgements(data).items():
                flow = pending.pop(seq, None)
                if flow is not None:
                    results[flow] = code
    for flow in pending.values():
        results[flow] = errno.ETIMEDOUT
    return results
