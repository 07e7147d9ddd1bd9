"""Send held IPv4 packets again, so that the kernel path's NAT rules take their flow.

The hold sees a packet on the input hook, after the output hook's NAT has looked at it and
after conntrack has confirmed the flow's entry with no NAT. Let go, the packet reaches the
new user-space mirror, and so does every later packet of the flow, because they all match
that entry: a UDP flow begun that way stays on the relay for its whole life, even though the
kernel path carries the port a moment later. So, once the rules carry the port, the held
packets are dropped from the queue, their flows' conntrack entries deleted, and the same
bytes sent again from a raw socket (IP_HDRINCL): they leave through the output hook like the
client's own, conntrack makes a new entry, and the NAT rules send them on. The client's
address and port are unchanged, so replies come back to it as usual.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from typing import Final

from proxy.hold.conntrack_delete import Flow, delete_flows

log = logging.getLogger(__name__)

IP_DF: Final = 0x4000
_PORTS: Final = struct.Struct(">HH")


class FlowResender:
    """A raw socket for sending held IPv4 packets again (needs CAP_NET_RAW)."""

    def __init__(self) -> None:
        self._raw: socket.socket | None = None
        self.problem = ""

    def open(self) -> bool:
        """Open the raw socket; False (and ``problem`` says why) if this side cannot."""
        try:
            raw = socket.socket(
                socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW
            )
        except OSError as exc:
            self.problem = f"held UDP flows stay on the relay: no raw socket ({exc})"
            return False
        self._raw = raw  # blocking: a full send buffer drains in microseconds
        return True

    @property
    def available(self) -> bool:
        return self._raw is not None

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def forget(
        self, packets: list[bytes], already: frozenset[Flow] = frozenset()
    ) -> frozenset[Flow]:
        """Delete the conntrack entries of these packets' flows, so that the same packets
        sent again make new entries, which the NAT rules take. Flows in ``already`` are left
        alone: their entry now is the NATed one a resend made. Returns the flows forgotten
        so far (``already`` with these)."""
        flows = {flow for flow in map(_flow_of, packets) if flow is not None} - already
        if self._raw is not None and flows:
            _forget(flows)
        return already | flows

    def send(self, packets: list[bytes]) -> int:
        """Send the packets again in order (after ``forget``). Returns how many were sent;
        a packet this cannot read is skipped."""
        raw = self._raw
        if raw is None:
            return 0
        sent = 0
        for packet in packets:
            ready = resendable(packet)
            if ready is None:
                continue
            try:
                raw.sendto(ready, (socket.inet_ntoa(ready[16:20]), 0))
                sent += 1
            except OSError as exc:
                log.info("sending a held packet again failed: %s", exc)
        return sent


def _flow_of(packet: bytes) -> Flow | None:
    header = _ipv4_header_length(packet)
    if header is None:
        return None
    sport, dport = _PORTS.unpack_from(packet, header)
    return (
        socket.inet_ntoa(packet[12:16]),
        socket.inet_ntoa(packet[16:20]),
        packet[9],
        sport,
        dport,
    )


def _forget(flows: set[Flow]) -> None:
    """Delete these flows' conntrack entries (one already gone is no matter)."""
    try:
        results = delete_flows(flows)
    except OSError as exc:
        log.info("forgetting held flows in conntrack failed: %s", exc)
        return
    for flow, code in results.items():
        if code not in (0, errno.ENOENT):
            log.info("forgetting held flow %s in conntrack failed: %s", flow, os.strerror(code))


def can_resend(packet: bytes) -> bool:
    """True for a packet ``FlowResender`` sends again: a whole IPv4 UDP or TCP packet."""
    return _ipv4_header_length(packet) is not None


def _ipv4_header_length(packet: bytes) -> int | None:
    """The IPv4 header's length if ``packet`` is a whole, unfragmented IPv4 UDP or TCP
    packet with its ports, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    fragment = int.from_bytes(packet[6:8], "big") & 0x3FFF  # MF and the offset
    if header < 20 or total != len(packet) or len(packet) < header + 4 or fragment:
        return None
    if packet[9] not in (socket.IPPROTO_UDP, socket.IPPROTO_TCP):
        return None
    return header


def resendable(packet: bytes) -> bytes | None:
    """``packet`` as it is sent again: DF cleared (after NAT the route may have a smaller MTU,
    and the kernel then fragments it as it would the client's own datagram) and the transport
    checksum computed afresh (a loopback packet may carry only the pseudo-header's part). The
    kernel fills in the IP header's checksum. None for a packet this does not resend."""
    header = _ipv4_header_length(packet)
    if header is None:
        return None
    data = bytearray(packet)
    flags = int.from_bytes(data[6:8], "big") & ~IP_DF
    data[6:8] = flags.to_bytes(2, "big")
    proto = data[9]
    at = header + (6 if proto == socket.IPPROTO_UDP else 16)
    if len(data) < at + 2:
        return None
    data[at : at + 2] = b"\0\0"
    segment = bytes(data[header:])
    pseudo = bytes(data[12:20]) + bytes((0, proto)) + len(segment).to_bytes(2, "big")
    checksum = transport_checksum(pseudo + segment)
    if proto == socket.IPPROTO_UDP and checksum == 0:
        checksum = 0xFFFF  # 0 means "no checksum" in UDP over IPv4
    data[at : at + 2] = checksum.to_bytes(2, "big")
    return bytes(data)


def transport_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))  # native order; folded and swapped below
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    if socket.htons(1) != 1:  # little-endian host: the words were read byte-swapped
        checksum = ((checksum & 0xFF) << 8) | (checksum >> 8)
    return checksum
