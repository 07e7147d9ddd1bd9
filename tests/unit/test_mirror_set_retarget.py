"""A mirror whose remote address changes (the other side adds a better listener) keeps
serving: it is restarted towards the new address, not left stopped but marked active."""

from __future__ import annotations

import socket

from proxy.addresses import Endpoint
from proxy.listeners import Proto
from proxy.mirror_set import Engine, MirrorSet
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from proxy.udp_forwarder import UdpForwarder


def make_engine(proto: Proto, bind: Endpoint, remote_host: str) -> Engine:
    target = Endpoint(remote_host, 9)  # never connected to here
    if proto == "tcp":
        return TcpForwarder(bind, tcp_connector(target))
    return UdpForwarder(bind, target=target)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET6, kind) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def bound(kind: int, port: int) -> bool:
    """Something holds [::1]:port."""
    with socket.socket(socket.AF_INET6, kind) as probe:
        try:
            probe.bind(("::1", port))
        except OSError:
            return True
    return False


async def test_a_retargeted_mirror_is_restarted() -> None:
    cases: list[tuple[Proto, int]] = [("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)]
    for proto, kind in cases:
        port = free_port(kind)
        mirrors = MirrorSet(make_engine, binds=("::1",))
        try:
            await mirrors.set_remote([(proto, "0.0.0.0", port)])
            (mirror,) = mirrors.states()
            assert (mirror.remote_host, mirror.state) == ("127.0.0.1", "active")
            await mirrors.set_remote([(proto, "0.0.0.0", port), (proto, "::", port)])
            (mirror,) = mirrors.states()
            assert mirror.remote_host == "::1"
            assert mirror.state == "active" and mirror.engine is not None
            assert bound(kind, port), f"{proto} mirror on [::1]:{port} holds no socket"
        finally:
            await mirrors.close()
