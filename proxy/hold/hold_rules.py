"""The nf_tables table that sends first packets to ports with no listener to our queue.

One table per hostnet instance and namespace, ``inet hostnet_hold_<queue>``, owned by the
netlink socket that made it (NFT_TABLE_F_OWNER): the kernel removes it when that socket
closes, so a crashed daemon or agent leaves no rule behind. Its one chain, on the input hook,
says:

    came in on another interface than lo                        -> accept (nothing held)
    to 127.0.0.0/8 or ::1, TCP with SYN and without ACK, or UDP:
        a socket exists (a listener or bound socket for it)     -> accept (nothing held)
        else                                                    -> queue, bypass

Only ``lo``: a packet the kernel path's NAT rules brought in over hostnet's link is for a port
the other side already mirrors, and after their DNAT (before their SNAT to loopback) its source
is the link's address, so a UDP socket connected to its client would not be found for it. The
socket lookup is made only for the packets that could be held, not for every TCP segment.

The ``socket`` expression looks the packet's socket up at that moment, so no set of
listening ports has to be kept in step (and cannot lag). The queue is nft's own ``queue``
expression, or, on kernels built without it (NFT_QUEUE unset), xtables' NFQUEUE target
through nft_compat. ``bypass``: while nobody
reads the queue, packets pass as if the rule were not there.

Written as raw nf_tables netlink messages (include/uapi/linux/netfilter/nf_tables.h): a
handful of fixed messages, checked against the kernel by the tests in tests/integration.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Final

from proxy.errors import HostnetOSError
from proxy.hold.netlink_attrs import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    attr,
    be16,
    be32,
    be32_signed,
    message,
    nested,
    nfgen,
    string,
    walk_messages,
)
from proxy.hold.nfqueue_codec import NETLINK_NETFILTER

NFNL_SUBSYS_NFTABLES: Final = 10
NFNL_MSG_BATCH_BEGIN: Final = 16
NFNL_MSG_BATCH_END: Final = 17
NFT_MSG_NEWTABLE: Final = 0
NFT_MSG_NEWCHAIN: Final = 3
NFT_MSG_NEWRULE: Final = 6
NFPROTO_INET: Final = 1
NFPROTO_IPV4: Final = 2
NFPROTO_IPV6: Final = 10
NF_INET_LOCAL_IN: Final = 1
NF_ACCEPT: Final = 1
NFT_TABLE_F_OWNER: Final = 2

CHAIN_PRIORITY: Final = -150
"""Before the filter hooks (0) of other tables: a held packet is decided before any of them."""

_REG_VERDICT: Final = 0
_REG_1: Final = 1
_META_IIF: Final = 4
_META_NFPROTO: Final = 15
_CMP_NEQ: Final = 1
LOOPBACK_IFINDEX: Final = 1
"""``lo``'s interface index, the same in every network namespace."""
_META_L4PROTO: Final = 16
_PAYLOAD_NETWORK: Final = 1
_PAYLOAD_TRANSPORT: Final = 2
_SOCKET_TRANSPARENT: Final = 0
_TCP_SYN: Final = 0x02
_TCP_ACK: Final = 0x10
NFQ_FLAG_BYPASS: Final = 0x01
NFT_QUEUE_FLAG_BYPASS: Final = 0x01
_NFQ_INFO_V3: Final = struct.Struct("=HHH")  # queuenum, queues_total, flags (host order)


class HoldRulesError(HostnetOSError):
    """The kernel refused the hold table or its queue; the message names what is missing."""


def table_name(queue: int) -> str:
    return f"hostnet_hold_{queue}"


# --- expressions --------------------------------------------------------------------------


def _expr(name: str, *data: bytes) -> bytes:
    return nested(1, string(1, name), nested(2, *data))  # NFTA_LIST_ELEM{EXPR_NAME, EXPR_DATA}


def _meta(key: int) -> bytes:
    return _expr("meta", be32(1, _REG_1), be32(2, key))  # DREG, KEY


def _cmp_eq(value: bytes, op: int = 0) -> bytes:
    """``op`` NFT_CMP_EQ (0) or NFT_CMP_NEQ (1)."""
    return _expr("cmp", be32(1, _REG_1), be32(2, op), nested(3, attr(1, value)))  # SREG, OP, DATA


def _payload(base: int, offset: int, length: int) -> bytes:
    return _expr(
        "payload", be32(1, _REG_1), be32(2, base), be32(3, offset), be32(4, length)
    )  # DREG, BASE, OFFSET, LEN


def _bitwise(mask: bytes) -> bytes:
    return _expr(
        "bitwise",
        be32(1, _REG_1),
        be32(2, _REG_1),
        be32(3, len(mask)),
        nested(4, attr(1, mask)),
        nested(5, attr(1, bytes(len(mask)))),
    )  # SREG, DREG, LEN, MASK, XOR


def _socket_found() -> bytes:
    """Breaks the rule (no match) when no socket would take the packet."""
    return _expr("socket", be32(1, _SOCKET_TRANSPARENT), be32(2, _REG_1))  # KEY, DREG


def _accept() -> bytes:
    verdict = nested(2, nested(2, be32_signed(1, NF_ACCEPT)))  # DATA{VERDICT{CODE}}
    return _expr("immediate", be32(1, _REG_VERDICT), verdict)


def _queue(queue: int, compat: bool) -> bytes:
    """nft's own ``queue num N bypass``, or xtables' NFQUEUE target (``compat``)."""
    if compat:
        info = _NFQ_INFO_V3.pack(queue, 1, NFQ_FLAG_BYPASS)
        return _expr("target", string(1, "NFQUEUE"), be32(2, 3), attr(3, info))  # NAME, REV, INFO
    return _expr("queue", be16(1, queue), be16(2, 1), be16(3, NFT_QUEUE_FLAG_BYPASS))


def _loopback(family: int) -> list[bytes]:
    if family == socket.AF_INET:
        return [
            _meta(_META_NFPROTO),
            _cmp_eq(bytes([NFPROTO_IPV4])),
            _payload(_PAYLOAD_NETWORK, 16, 1),  # first byte of the destination
            _cmp_eq(bytes([127])),
        ]
    return [
        _meta(_META_NFPROTO),
        _cmp_eq(bytes([NFPROTO_IPV6])),
        _payload(_PAYLOAD_NETWORK, 24, 16),
        _cmp_eq(socket.inet_pton(socket.AF_INET6, "::1")),
    ]


def _first_packet(number: int) -> list[bytes]:
    found = [_meta(_META_L4PROTO), _cmp_eq(bytes([number]))]
    if number == socket.IPPROTO_TCP:
        found += [
            _payload(_PAYLOAD_TRANSPORT, 13, 1),  # TCP flags
            _bitwise(bytes([_TCP_SYN | _TCP_ACK])),
            _cmp_eq(bytes([_TCP_SYN])),
        ]
    return found


# --- messages -----------------------------------------------------------------------------


def _nft(kind: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | kind


def ruleset_batch(queue: int, compat: bool = False) -> tuple[bytes, int]:
    """The batch that makes the hold table for ``queue``, and how many acks it asks for;
    ``compat`` queues with xtables' NFQUEUE target instead of nft's own queue expression."""
    name = table_name(queue)
    ack = NLM_F_REQUEST | NLM_F_ACK
    head = nfgen(NFPROTO_INET)
    parts = [
        message(_nft(NFT_MSG_NEWTABLE), ack | NLM_F_CREATE, 1,
                head + string(1, name) + be32(2, NFT_TABLE_F_OWNER)),
        message(_nft(NFT_MSG_NEWCHAIN), ack | NLM_F_CREATE, 2,
                head + string(1, name) + string(3, "input")
                + nested(4, be32(1, NF_INET_LOCAL_IN), be32_signed(2, CHAIN_PRIORITY))
                + be32(5, NF_ACCEPT) + string(7, "filter")),
    ]  # fmt: skip
    not_on_lo = [_meta(_META_IIF), _cmp_eq(struct.pack("=I", LOOPBACK_IFINDEX), _CMP_NEQ)]
    rules = [[*not_on_lo, _accept()]]
    for family in (socket.AF_INET, socket.AF_INET6):
        for number in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            candidate = [*_loopback(family), *_first_packet(number)]
            rules.append([*candidate, _socket_found(), _accept()])
            rules.append([*candidate, _queue(queue, compat)])
    for seq, expressions in enumerate(rules, start=3):
        body = head + string(1, name) + string(2, "input") + nested(4, *expressions)
        parts.append(message(_nft(NFT_MSG_NEWRULE), ack | NLM_F_CREATE | NLM_F_APPEND, seq, body))
    batch_head = nfgen(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
    begin = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, batch_head)
    end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, len(parts) + 3, batch_head)
    return begin + b"".join(parts) + end, len(parts)


_INT: Final = struct.Struct("=i")


def install(queue: int) -> socket.socket:
    """Make the hold table for ``queue`` in this namespace; it lives as long as the returned
    socket stays open. HoldRulesError if the kernel refuses (no nf_tables, no socket lookup
    or queue support, not allowed).

    nft's own queue expression first; a kernel without it (NFT_QUEUE unset) gets xtables'
    NFQUEUE target through nft_compat. A batch is all or nothing, so a refused one leaves no
    half-made table behind.
    """
    try:
        return _install(queue, compat=False)
    except HoldRulesError as exc:
        if exc.errno not in _NO_QUEUE_EXPRESSION:
            raise
        native = exc
    try:
        return _install(queue, compat=True)
    except HoldRulesError as exc:
        raise HoldRulesError(exc.errno, f"{native.problem}; and {exc.problem}", exc.fix) from None


_NO_QUEUE_EXPRESSION: Final = (errno.ENOENT, errno.EOPNOTSUPP)


def _install(queue: int, compat: bool) -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
    )
    try:
        sock.bind((0, 0))
        sock.settimeout(5)
        batch, wanted = ruleset_batch(queue, compat)
        sock.send(batch)
        acked = 0
        while acked < wanted:
            data = sock.recv(65536)
            for kind, seq, offset, _length in walk_messages(data):
                if kind != NLMSG_ERROR:
                    continue
                (code,) = _INT.unpack_from(data, offset + 16)
                if code:
                    raise _refused(-code, seq, compat)
                acked += 1
    except BaseException:
        sock.close()
        raise
    return sock


def _refused(code: int, seq: int, compat: bool) -> HoldRulesError:
    queue_rule = "a queue rule (xt_NFQUEUE through nft_compat)" if compat else "a queue rule"
    rules = {1: "the table", 2: "its input chain", 3: "the interface rule"}
    what = rules.get(seq, "a socket-lookup rule" if seq % 2 == 0 else queue_rule)
    reason = errno.errorcode.get(code, str(code))
    if code == errno.EPERM:
        fix = "run as root (or with CAP_NET_ADMIN in this namespace)"
    elif code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EAFNOSUPPORT):
        fix = "use a kernel with nf_tables, nft_socket and nft_queue (or nft_compat and xt_NFQUEUE)"
    else:
        fix = "check the kernel's netfilter support"
    return HoldRulesError(code, f"the kernel refused {what} of the hold table ({reason})", fix)
