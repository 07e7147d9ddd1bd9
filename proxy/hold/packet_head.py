"""What a held packet asks for: protocol, destination address and port, read from its head."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

from proxy.listeners import Proto

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
_PORTS: Final = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class Destination:
    """The socket a packet is addressed to."""

    proto: Proto
    family: int
    host: str
    port: int

    @property
    def key(self) -> tuple[Proto, int]:
        return self.proto, self.port


def destination(payload: bytes) -> Destination | None:
    """The TCP or UDP destination of an IPv4 or IPv6 packet, or None for anything else
    (another protocol, an IPv6 extension header, a head too short to read)."""
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4:
        header = (payload[0] & 0x0F) * 4
        if len(payload) < max(header, 20) + 4:
            return None
        number = payload[9]
        family, host = socket.AF_INET, socket.inet_ntop(socket.AF_INET, payload[16:20])
    elif version == 6:
        header = 40
        if len(payload) < header + 4:
            return None
        number = payload[6]
        family, host = socket.AF_INET6, socket.inet_ntop(socket.AF_INET6, payload[24:40])
    else:
        return None
    if number == IPPROTO_TCP:
        proto: Proto = "tcp"
    elif number == IPPROTO_UDP:
        proto = "udp"
    else:
        return None
    _sport, dport = _PORTS.unpack_from(payload, header)
    return Destination(proto, family, host, dport)
