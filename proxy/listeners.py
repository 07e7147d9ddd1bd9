"""What listener discovery reports: one listening TCP socket or bound, unconnected UDP socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Proto = Literal["tcp", "udp"]
"""The one spelling of a layer-4 protocol, everywhere in hostnet (wire messages included)."""

ListenerKey = tuple[Proto, str, int]
"""What identifies a listener across the two sides: protocol, address literal and port."""


@dataclass(frozen=True, slots=True, order=True)
class Listener:
    """A socket that accepts traffic on ``host:port`` in the scanned network namespace.

    ``host`` is the numeric local address as the kernel reports it: ``0.0.0.0`` and ``::`` for
    wildcards, ``::ffff:a.b.c.d`` for an IPv4-mapped bind. ``inode`` tells two sockets on the
    same address apart: a new inode for the same ``key`` means the program listened again.
    ``dual_stack`` is True for an IPv6 wildcard (``::``) with IPV6_V6ONLY off, which also
    accepts IPv4; ``hosts`` says what that covers.
    ``interface`` is the ifindex the socket is bound to (SO_BINDTODEVICE, scope), 0 for none.
    Several sockets may share a key (SO_REUSEPORT); each is reported.
    """

    proto: Proto
    host: str
    port: int
    inode: int
    dual_stack: bool = False
    interface: int = 0

    @property
    def key(self) -> ListenerKey:
        """The identity a mirror is keyed on: protocol, address and port."""
        return (self.proto, self.host, self.port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def hosts(self) -> tuple[str, ...]:
        """The addresses this socket listens on, as the other side is told: a dual-stack
        ``::`` is ``0.0.0.0`` too, so IPv4 mirrors reach it over IPv4 (``127.0.0.1``), as a
        client in its own namespace would, and the kernel path can carry it."""
        return (self.host, "0.0.0.0") if self.dual_stack else (self.host,)

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{self.proto} {host}:{self.port}"
