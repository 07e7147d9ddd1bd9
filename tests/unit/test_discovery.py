"""Listener discovery on real sockets in this process's network namespace.

Other processes may listen in the same namespace while these tests run, so every assertion
looks only at the sockets the test made (by inode), never at the whole set.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest
from pyroute2.netlink.diag import DiagSocket

from proxy.discovery import KINDS, ListenerScanner, diff, snapshot, without
from proxy.listeners import Listener
from proxy.sock_diag import (
    TCP_LISTEN,
    CachedDecoder,
    InetSocket,
    SockDiag,
    SockDiagError,
    _error,
    parse_dump,
)
from proxy.socket_counts import SocketCounts, inuse


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def tcp_listener(made: list[socket.socket], host: str, v6only: bool | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    made.append(sock)
    if v6only is not None:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.bind((host, 0))
    sock.listen()
    return sock


def udp_socket(made: list[socket.socket], host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    made.append(sock)
    sock.bind((host, 0))
    return sock


def found(sock: socket.socket, listeners: frozenset[Listener] | None = None) -> list[Listener]:
    listeners = snapshot() if listeners is None else listeners
    return [item for item in listeners if item.inode == inode(sock)]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::"])
def test_tcp_listener_appears_and_disappears(sockets: list[socket.socket], host: str) -> None:
    sock = tcp_listener(sockets, host)
    port = sock.getsockname()[1]
    assert found(sock) == [Listener("tcp", host, port, inode(sock), dual_stack=host == "::")]
    ino = inode(sock)
    sock.close()
    assert [item for item in snapshot() if item.inode == ino] == []


def test_ipv6_wildcard_reports_dual_stack_flag(sockets: list[socket.socket]) -> None:
    dual = tcp_listener(sockets, "::", v6only=False)
    only6 = tcp_listener(sockets, "::", v6only=True)
    listeners = snapshot()
    [dual_item] = found(dual, listeners)
    [only6_item] = found(only6, listeners)
    assert (dual_item.host, dual_item.dual_stack) == ("::", True)
    assert (only6_item.host, only6_item.dual_stack) == ("::", False)


def test_bound_but_not_listening_tcp_is_not_a_listener(sockets: list[socket.socket]) -> None:
    sock = socket.socket()
    sockets.append(sock)
    sock.bind(("127.0.0.1", 0))
    assert found(sock) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::"])
def test_bound_udp_socket_appears(sockets: list[socket.socket], host: str) -> None:
    sock = udp_socket(sockets, host)
    port = sock.getsockname()[1]
    assert found(sock) == [Listener("udp", host, port, inode(sock), dual_stack=host == "::")]


def test_connected_udp_socket_is_not_a_listener(sockets: list[socket.socket]) -> None:
    server = udp_socket(sockets, "127.0.0.1")
    client = udp_socket(sockets, "127.0.0.1")
    client.connect(server.getsockname())
    listeners = snapshot()
    assert found(client, listeners) == []
    assert len(found(server, listeners)) == 1


def test_tcp_connection_ends_are_not_listeners(sockets: list[socket.socket]) -> None:
    server = tcp_listener(sockets, "127.0.0.1")
    client = socket.create_connection(server.getsockname())
    sockets.append(client)
    accepted, _ = server.accept()
    sockets.append(accepted)
    listeners = snapshot()
    assert found(client, listeners) == []
    assert found(accepted, listeners) == []
    assert len(found(server, listeners)) == 1


def test_excluded_inodes_are_left_out(sockets: list[socket.socket]) -> None:
    mine = tcp_listener(sockets, "127.0.0.1")
    theirs = tcp_listener(sockets, "127.0.0.1")
    mirror_udp = udp_socket(sockets, "127.0.0.1")
    listeners = snapshot(exclude_inodes={inode(mine), inode(mirror_udp)})
    assert found(mine, listeners) == []
    assert found(mirror_udp, listeners) == []
    assert len(found(theirs, listeners)) == 1
    everything = snapshot()
    assert without(everything, {inode(theirs)}) == everything - set(found(theirs, everything))


def test_diff_reports_added_removed_and_relisten() -> None:
    a = Listener("tcp", "127.0.0.1", 8080, 11)
    b = Listener("udp", "::", 53, 12, dual_stack=True)
    b_again = Listener("udp", "::", 53, 13, dual_stack=True)
    assert diff(frozenset({a}), frozenset({a, b})) == (frozenset({b}), frozenset())
    assert diff(frozenset({a, b}), frozenset({a})) == (frozenset(), frozenset({b}))
    added, removed = diff(frozenset({a, b}), frozenset({a, b_again}))
    assert (added, removed) == (frozenset({b_again}), frozenset({b}))
    assert b.key == b_again.key == ("udp", "::", 53)


def test_listener_is_hashable_and_prints_like_an_address() -> None:
    item = Listener("tcp", "::1", 443, 7)
    assert {item: 1}[Listener("tcp", "::1", 443, 7)] == 1
    assert str(item) == "tcp [::1]:443"
    assert str(Listener("udp", "0.0.0.0", 53, 8)) == "udp 0.0.0.0:53"


def test_parser_agrees_with_pyroute2(sockets: list[socket.socket]) -> None:
    """The struct parser reads the same fields as pyroute2's own decoder, on live sockets."""
    for host in ("127.0.0.1", "::1", "::"):
        tcp_listener(sockets, host)
    with SockDiag() as diag, DiagSocket() as reference:
        reference.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            ours = parse_dump(diag.dump_raw(family, socket.IPPROTO_TCP, 1 << TCP_LISTEN))
            theirs = reference.get_sock_stats(family=family, states=1 << TCP_LISTEN)
            ours_keys = {(s.src, s.sport, s.inode, s.state) for s in ours}
            theirs_keys = {
                (m["idiag_src"], m["idiag_sport"], m["idiag_inode"], m["idiag_state"])
                for m in theirs
            }
            mine = {inode(sock) for sock in sockets}
            assert {k for k in ours_keys if k[2] in mine} == {
                k for k in theirs_keys if k[2] in mine
            }
            assert {k for k in ours_keys if k[2] in mine}


def test_cached_decoder_decodes_only_new_records(sockets: list[socket.socket]) -> None:
    tcp_listener(sockets, "127.0.0.1")
    calls: list[InetSocket] = []

    def convert(sock: InetSocket) -> int:
        calls.append(sock)
        return sock.inode

    decoder = CachedDecoder(convert)
    with SockDiag() as diag:
        raw = diag.dump_raw(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_LISTEN)
        first = decoder.decode(raw)
        decoded = len(calls)
        assert decoded >= 1
        assert decoder.decode(raw) == first
        assert len(calls) == decoded
        new = tcp_listener(sockets, "127.0.0.1")
        second = decoder.decode(diag.dump_raw(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_LISTEN))
        assert inode(new) in second
        assert len(calls) == decoded + 1


def test_parse_dump_stops_at_a_truncated_record() -> None:
    assert parse_dump(b"") == []
    assert parse_dump(b"\x10\x00\x00\x00\x14\x00") == []
    assert parse_dump(b"\x90\x00\x00\x00\x14\x00\x02\x00" + bytes(40)) == []


def test_scanner_returns_the_same_set_when_nothing_changed(sockets: list[socket.socket]) -> None:
    with ListenerScanner() as scanner:
        # Other programs on this machine may open or close listeners between two scans;
        # when both scans agree, the second must be the very same (cached) set.
        for _ in range(20):
            first = scanner.scan()
            second = scanner.scan()
            if second == first:
                break
        assert second is first
        sock = tcp_listener(sockets, "::1")
        assert len(found(sock, scanner.scan())) == 1
        assert scanner.problems == []
    assert len(KINDS) == 4


def test_socket_counts_move_on_listen_and_bind(sockets: list[socket.socket]) -> None:
    counts = SocketCounts()
    try:
        sock = socket.socket()
        sockets.append(sock)
        sock.bind(("127.0.0.1", 0))
        before = counts.read()
        sock.listen()
        assert counts.read() != before
        before = counts.read()
        udp_socket(sockets, "::1")
        assert counts.read() != before
        assert len(before) == 6
        assert inuse(before) == before[2:]
    finally:
        counts.close()


def test_unsupported_dump_error_names_the_module_and_fix() -> None:
    exc = _error(errno.ENOENT, socket.AF_INET6, socket.IPPROTO_UDP)
    assert isinstance(exc, SockDiagError)
    assert "IPv6 udp" in str(exc)
    assert "modprobe udp_diag" in str(exc)
    other = _error(errno.EACCES, socket.AF_INET, socket.IPPROTO_TCP)
    assert "IPv4 tcp" in str(other)
