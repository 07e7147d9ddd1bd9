"""The hold's sans-I/O parts: packet heads, queue messages, the probe's checks."""

from __future__ import annotations

import re
import socket
import struct

import pytest

from proxy.hold.netlink_attrs import NLMSGHDR, attr, message, nfgen, walk_attrs, walk_messages
from proxy.hold.nfqueue_codec import (
    NFQA_PACKET_HDR,
    NFQA_PAYLOAD,
    NFQA_VERDICT_HDR,
    bind_messages,
    is_packet,
    parse_packet,
    verdict_message,
)
from proxy.hold.packet_head import destination
from proxy.hold.probe import ProbeAnswer, ProbeError, parse_answer, parse_probe


def ipv4(proto: int, dst: str, dport: int, ihl: int = 5) -> bytes:
    header = bytes([0x40 | ihl]) + bytes(8) + bytes([proto]) + bytes(6)
    header += socket.inet_aton(dst) + bytes(ihl * 4 - 20)
    return header + struct.pack(">HH", 40000, dport) + bytes(16)


def ipv6(next_header: int, dst: str, dport: int) -> bytes:
    header = bytes([0x60]) + bytes(5) + bytes([next_header]) + bytes(17)
    header += socket.inet_pton(socket.AF_INET6, dst)
    return header + struct.pack(">HH", 40000, dport) + bytes(16)


@pytest.mark.parametrize(("number", "proto"), [(6, "tcp"), (17, "udp")])
def test_destination_of_ipv4_and_ipv6(number: int, proto: str) -> None:
    found = destination(ipv4(number, "127.0.0.1", 8080))
    assert found is not None and (found.proto, found.host, found.port) == (proto, "127.0.0.1", 8080)
    found = destination(ipv4(number, "127.0.0.2", 9, ihl=7))  # IP options move the ports
    assert found is not None and (found.host, found.port) == ("127.0.0.2", 9)
    found = destination(ipv6(number, "::1", 65535))
    assert found is not None and (found.proto, found.host, found.port) == (proto, "::1", 65535)
    assert found.family == socket.AF_INET6


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        ipv4(1, "127.0.0.1", 1),  # ICMP
        ipv6(0, "::1", 1),  # a hop-by-hop extension header
        ipv4(6, "127.0.0.1", 80)[:21],  # cut inside the ports
        bytes([0x50]) + bytes(60),  # not IP
    ],
)
def test_destination_of_anything_else_is_none(payload: bytes) -> None:
    assert destination(payload) is None


def test_queued_packet_is_parsed_from_its_message() -> None:
    head = ipv4(6, "127.0.0.1", 5000)
    body = nfgen(socket.AF_INET, 7)
    body += attr(NFQA_PACKET_HDR, struct.pack(">IHB", 4242, 0x0800, 1))
    body += attr(NFQA_PAYLOAD, head)
    data = message((3 << 8) | 0, 0, 0, body) + message(2, 0, 0, bytes(20))
    found = list(walk_messages(data))
    assert len(found) == 2 and is_packet(found[0][0]) and not is_packet(found[1][0])
    _kind, _seq, offset, length = found[0]
    packet = parse_packet(data, offset, length)
    assert packet is not None
    assert (packet.packet_id, packet.hook, packet.payload) == (4242, 1, head)
    no_header = message((3 << 8) | 0, 0, 0, nfgen(socket.AF_INET, 7) + attr(NFQA_PAYLOAD, head))
    assert parse_packet(no_header, 0, len(no_header)) is None


def test_verdict_names_the_queue_and_packet() -> None:
    data = verdict_message(0x4801, 99)
    length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data)
    assert length == len(data) and kind == (3 << 8) | 1
    assert data[NLMSGHDR.size + 2 : NLMSGHDR.size + 4] == b"\x48\x01"  # res_id, big-endian
    attrs = list(walk_attrs(data, NLMSGHDR.size + 4, len(data)))
    assert [(k, size) for k, _at, size in attrs] == [(NFQA_VERDICT_HDR, 8)]
    assert struct.unpack_from(">II", data, attrs[0][1]) == (1, 99)  # NF_ACCEPT, id


def test_bind_asks_for_an_ack_of_each_step() -> None:
    for request in bind_messages(5):
        _length, _kind, flags, _seq, _pid = NLMSGHDR.unpack_from(request)
        assert flags & 0x04


def test_walk_stops_at_a_truncated_attribute() -> None:
    data = attr(1, b"abcd") + struct.pack("=HH", 200, 2) + b"xx"
    assert [kind for kind, _at, _size in walk_attrs(data, 0, len(data))] == [1]


@pytest.mark.parametrize(
    "params",
    [{}, {"proto": "icmp", "port": 1}, {"proto": "tcp", "port": 0}, {"proto": "udp", "port": "80"}],
)
def test_bad_probe_is_refused_with_what_was_wrong(params: dict[str, object]) -> None:
    with pytest.raises(ProbeError, match="send proto tcp or udp"):
        parse_probe(params)


def test_probe_answer_keeps_only_mirrorable_addresses() -> None:
    assert parse_answer(["0.0.0.0", "10.1.2.3", "::1"]) == ProbeAnswer(["0.0.0.0", "::1"])
    answer = ProbeAnswer(["127.0.0.1"], kernel=True)
    assert parse_answer(answer.to_json()) == answer
    assert parse_answer({"hosts": []}) == ProbeAnswer([])


@pytest.mark.parametrize(
    "result", [None, "127.0.0.1", [1], {"hosts": "x"}, {"hosts": [], "kernel": "yes"}, {}]
)
def test_bad_probe_answer_is_refused_with_the_shape_expected(result: object) -> None:
    with pytest.raises(ProbeError, match=re.escape('answer {"hosts"')):
        parse_answer(result)
