"""Snapshots of this network namespace's listeners via sock_diag, and diffs between them.

A listener is a TCP socket in LISTEN or a bound, unconnected UDP socket (state TCP_CLOSE with
no peer), IPv4 or IPv6. The kernel filters by state and family, so a dump walks only the
listening hash for TCP and returns no connection. Sockets whose inode the caller excludes
(its own mirrors) are left out, so a side never mirrors a mirror.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Container, Iterable
from typing import Final

from proxy.listeners import Listener, Proto
from proxy.sock_diag import (
    TCP_CLOSE,
    TCP_LISTEN,
    CachedDecoder,
    InetSocket,
    SockDiag,
    SockDiagError,
)

_Kind = tuple[int, int, int, Proto]
KINDS: Final[tuple[_Kind, ...]] = (
    (socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_LISTEN, "tcp"),
    (socket.AF_INET6, socket.IPPROTO_TCP, 1 << TCP_LISTEN, "tcp"),
    (socket.AF_INET, socket.IPPROTO_UDP, 1 << TCP_CLOSE, "udp"),
    (socket.AF_INET6, socket.IPPROTO_UDP, 1 << TCP_CLOSE, "udp"),
)
_UNSUPPORTED: Final = (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL, errno.EPROTONOSUPPORT)


def listener_of(proto: Proto, sock: InetSocket) -> Listener | None:
    """The listener ``sock`` is, or None (a TCP socket not in LISTEN, a connected or unbound
    UDP socket)."""
    if proto == "tcp":
        if sock.state != TCP_LISTEN:
            return None
    elif sock.state != TCP_CLOSE or sock.dport != 0 or sock.sport == 0:
        return None  # connected (has a peer) or not bound to a port
    return Listener(
        proto=proto,
        host=sock.src,
        port=sock.sport,
        inode=sock.inode,
        dual_stack=sock.family == socket.AF_INET6 and sock.src == "::" and not sock.v6only,
        interface=sock.interface,
    )


def _converter(proto: Proto) -> CachedDecoder[Listener]:
    return CachedDecoder(lambda sock: listener_of(proto, sock))


class ListenerScanner:
    """Dumps the listeners of the current network namespace, cheaply when nothing changed.

    Keeps one netlink socket open (bound to the namespace it was created in) and the raw bytes
    of the last dump of each kind: an unchanged dump is not decoded again. A kind the kernel
    cannot dump (no udp_diag, no IPv6) is skipped and named in ``problems``.
    """

    def __init__(self) -> None:
        self._diag = SockDiag()
        self._decoders = {kind: _converter(kind[3]) for kind in KINDS}
        self._raw: dict[_Kind, bytes] = {}
        self._parts: dict[_Kind, list[Listener]] = {}
        self._all: frozenset[Listener] = frozenset()
        self._skipped: dict[_Kind, str] = {}

    @property
    def problems(self) -> list[str]:
        """Why some kinds of socket are not listed (empty when all four are)."""
        return list(self._skipped.values())

    def scan(self) -> frozenset[Listener]:
        """Every listener in the namespace, the caller's own included."""
        changed = False
        for kind in KINDS:
            if kind in self._skipped:
                continue
            family, protocol, states, _proto = kind
            try:
                raw = self._diag.dump_raw(family, protocol, states)
            except SockDiagError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self._skipped[kind] = str(exc)
                if len(self._skipped) == len(KINDS):
                    raise
                raw = b""
            if raw != self._raw.get(kind):
                self._raw[kind] = raw
                self._parts[kind] = self._decoders[kind].decode(raw)
                changed = True
        if changed:
            self._all = frozenset(item for part in self._parts.values() for item in part)
        return self._all

    def close(self) -> None:
        self._diag.close()

    def __enter__(self) -> ListenerScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def without(listeners: Iterable[Listener], exclude_inodes: Container[int]) -> frozenset[Listener]:
    """The listeners whose inode is not in ``exclude_inodes``."""
    return frozenset(item for item in listeners if item.inode not in exclude_inodes)


def snapshot(exclude_inodes: Container[int] = frozenset()) -> frozenset[Listener]:
    """The listeners of the current network namespace now, less the excluded inodes.

    A socket's inode is ``os.fstat(sock.fileno()).st_ino``; it exists from socket() on, so a
    forwarder can exclude a mirror before it binds.
    """
    with ListenerScanner() as scanner:
        return without(scanner.scan(), exclude_inodes)


def diff(
    old: frozenset[Listener], new: frozenset[Listener]
) -> tuple[frozenset[Listener], frozenset[Listener]]:
    """(added, removed) going from ``old`` to ``new``. A re-listen shows in both (new inode)."""
    return new - old, old - new
