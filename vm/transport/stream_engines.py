"""Mirrors whose connections go to the other side through a socket-opening function."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

from proxy.addresses import Endpoint
from proxy.listeners import Proto
from proxy.mirror_set import Engine
from proxy.tcp_forwarder import TcpForwarder
from proxy.udp_forwarder import (
    DEFAULT_IDLE_TIMEOUT,
    Deliver,
    FlowUpstream,
    SocketUpstream,
    UdpForwarder,
)
from vm.transport.datagram_stream import StreamFlowUpstream

OpenSocket = Callable[[Proto], Awaitable[socket.socket]]
"""Opens a socket to the mirrored port on the other side, for TCP or UDP."""


def stream_engine(
    proto: Proto,
    bind: Endpoint,
    open_socket: OpenSocket,
    udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> Engine:
    """A TCP or UDP forwarder on ``bind`` whose upstreams ``open_socket`` provides.

    For UDP the socket is either a connected UDP socket (handed over: datagrams as they
    are) or a stream carrying length-prefixed datagrams.
    """
    if proto == "tcp":

        async def connect(_client: tuple[str, int]) -> socket.socket:
            return await open_socket("tcp")

        return TcpForwarder(bind, connect)

    forwarder: UdpForwarder

    async def upstream(_client: tuple[str, int], deliver: Deliver) -> FlowUpstream:
        sock = await open_socket("udp")
        if sock.type == socket.SOCK_DGRAM:
            return SocketUpstream(sock, deliver, forwarder.counters)
        return StreamFlowUpstream(sock, deliver, forwarder.counters)

    forwarder = UdpForwarder(bind, upstream, idle_timeout=udp_idle_timeout)
    return forwarder
