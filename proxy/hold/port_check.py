"""A targeted check: who listens on one port of this network namespace right now.

Discovery polls and lags by tens of milliseconds; a held packet needs the answer now. This
dumps the listeners of one protocol (both families) with sock_diag, which for TCP walks only
the listening hash, and keeps those on the port: tens of microseconds with a few sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Container

from proxy.discovery import listener_of
from proxy.listeners import Listener, Proto
from proxy.netns_entry import call_in_netns
from proxy.sock_diag import TCP_CLOSE, TCP_LISTEN, SockDiag, parse_dump

_STATES = {"tcp": 1 << TCP_LISTEN, "udp": 1 << TCP_CLOSE}
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


class PortCheck:
    """Answers ``listeners(proto, port)`` for the namespace it was made in."""

    def __init__(self) -> None:
        self._diag = SockDiag()

    def listeners(
        self, proto: Proto, port: int, exclude_inodes: Container[int] = frozenset()
    ) -> frozenset[Listener]:
        """The listeners on ``proto`` ``port`` now, less the excluded inodes (our mirrors)."""
        found: set[Listener] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            raw = self._diag.dump_raw(family, _PROTOCOLS[proto], _STATES[proto])
            for sock in parse_dump(raw):
                if sock.sport != port or sock.inode in exclude_inodes:
                    continue
                listener = listener_of(proto, sock)
                if listener is not None:
                    found.add(listener)
        return frozenset(found)

    def close(self) -> None:
        self._diag.close()


def port_check_in(netns_path: str) -> PortCheck:
    """A PortCheck of the network namespace at ``netns_path``: a short-lived thread enters
    it and opens the netlink socket, which keeps that namespace. OSError if it cannot."""
    return call_in_netns(netns_path, PortCheck, name="port-check-setns")
