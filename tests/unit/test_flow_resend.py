"""Held packets sent again (proxy/hold/flow_resend.py) and the conntrack delete request
(proxy/hold/conntrack_delete.py): plain bytes, checked against what the kernel would accept."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.hold.conntrack_delete import (
    CTA_TUPLE_ORIG,
    acknowledgements,
    delete_message,
)
from proxy.hold.flow_resend import IP_DF, can_resend, resendable, transport_checksum
from proxy.hold.netlink_attrs import NFGENMSG, NLMSGHDR, walk_attrs

SRC, DST = socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2")


def ipv4_udp(payload: bytes, *, checksum: int = 0x1234, flags: int = IP_DF) -> bytes:
    udp = struct.pack(">HHHH", 40000, 5201, 8 + len(payload), checksum) + payload
    header = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, flags, 64, socket.IPPROTO_UDP, 0, SRC, DST
    )
    return header + udp


def pseudo_sum_ok(packet: bytes) -> bool:
    """The receiver's check: the one's-complement sum over pseudo-header and segment is 0."""
    segment = packet[20:]
    pseudo = packet[12:20] + bytes((0, packet[9])) + len(segment).to_bytes(2, "big")
    return transport_checksum(pseudo + segment) == 0


@given(st.binary(max_size=1500))
def test_a_resent_udp_packet_has_a_valid_checksum_and_may_be_fragmented(payload: bytes) -> None:
    packet = ipv4_udp(payload, checksum=0xBEEF)  # a wrong (pseudo-header only) checksum
    again = resendable(packet)
    assert again is not None
    assert pseudo_sum_ok(again)
    assert int.from_bytes(again[6:8], "big") & IP_DF == 0
    assert again[:6] == packet[:6] and again[8:26] == packet[8:26]  # addresses, ports, length
    assert again[28:] == payload


def test_the_checksum_matches_a_known_value() -> None:
    # RFC 1071's example words 0001 f203 f4f5 f6f7 sum to 0xddf2; the checksum is ~0xddf2.
    assert transport_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x60" + bytes(47),  # IPv6: the kernel path carries IPv4 only
        ipv4_udp(b"x", flags=0x2000),  # a first fragment (MF)
        ipv4_udp(b"x", flags=0x0001),  # a later fragment
        ipv4_udp(b"x")[:-1],  # shorter than its total length
        ipv4_udp(b"x")[:9] + bytes((1,)) + ipv4_udp(b"x")[10:],  # ICMP
    ],
)
def test_what_is_not_a_whole_ipv4_udp_or_tcp_packet_is_not_resent(packet: bytes) -> None:
    assert not can_resend(packet)
    assert resendable(packet) is None


def test_the_conntrack_delete_names_the_original_tuple() -> None:
    flow = ("127.0.0.1", "127.0.0.2", socket.IPPROTO_UDP, 40000, 5201)
    data = delete_message(flow, seq=7)
    length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data)
    assert (length, kind, seq) == (len(data), (1 << 8) | 2, 7)
    start = NLMSGHDR.size + NFGENMSG.size
    ((orig_kind, orig_at, orig_size),) = walk_attrs(data, start, length)
    assert orig_kind == CTA_TUPLE_ORIG
    inner = {kind: (at, size) for kind, at, size in walk_attrs(data, orig_at, orig_at + orig_size)}
    ip_at, ip_size = inner[1]
    addresses = [data[at : at + size] for _k, at, size in walk_attrs(data, ip_at, ip_at + ip_size)]
    assert addresses == [SRC, DST]
    proto_at, proto_size = inner[2]
    values = [
        data[at : at + size] for _k, at, size in walk_attrs(data, proto_at, proto_at + proto_size)
    ]
    assert values == [bytes((17,)), (40000).to_bytes(2, "big"), (5201).to_bytes(2, "big")]


def test_acknowledgements_are_read_by_sequence() -> None:
    ack = NLMSGHDR.pack(36, 2, 0, 3, 0) + struct.pack("=i", -2) + NLMSGHDR.pack(16, 0, 0, 3, 0)
    assert acknowledgements(ack) == {3: 2}
