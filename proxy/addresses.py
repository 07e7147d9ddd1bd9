"""Parsing and naming socket addresses: ``HOST:PORT`` and ``[V6]:PORT``, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from proxy.errors import HostnetError


class AddressError(HostnetError, ValueError):
    """An address the user gave cannot be used; the message says why and how to write it."""

    exit_code = 2


@dataclass(frozen=True)
class Endpoint:
    """A numeric host and a port: where to listen or where to connect."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_EXAMPLES = "write it as 127.0.0.1:8080, [::1]:8080 or localhost:8080"


def parse_endpoint(text: str, *, allow_port_zero: bool = False) -> Endpoint:
    """Parse ``HOST:PORT``: HOST is an IPv4 literal, a bracketed IPv6 literal or ``localhost``."""
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise AddressError(
                f"bad address {text!r}: an IPv6 address needs [brackets]:PORT; {_EXAMPLES}"
            )
        host, port_text = text[1:close], text[close + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise AddressError(f"bad address {text!r}: HOST:PORT expected; {_EXAMPLES}")
        if ":" in host:
            raise AddressError(
                f"bad address {text!r}: put an IPv6 address in brackets; {_EXAMPLES}"
            )
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise AddressError(
            f"bad address {text!r}: {host!r} is not an IP address; {_EXAMPLES}"
        ) from None
    if not port_text.isdigit():
        raise AddressError(
            f"bad address {text!r}: port {port_text!r} is not a number from 1 to 65535"
        )
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise AddressError(f"bad address {text!r}: port {port} is outside {low}..65535")
    return Endpoint(str(ip), port)
