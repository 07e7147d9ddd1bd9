"""One forward, TCP or UDP: a listen address relayed to a target, with start, stop and counters."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.listeners import Proto
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from proxy.udp_forwarder import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS, UdpForwarder


@dataclass(frozen=True)
class ForwardSpec:
    proto: Proto
    listen: Endpoint
    target: Endpoint
    udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    udp_max_flows: int = DEFAULT_MAX_FLOWS


class Forward:
    """A running forward made from a :class:`ForwardSpec`."""

    def __init__(self, spec: ForwardSpec) -> None:
        self.spec = spec
        self.engine: TcpForwarder | UdpForwarder
        if spec.proto == "tcp":
            self.engine = TcpForwarder(spec.listen, tcp_connector(spec.target))
        else:
            self.engine = UdpForwarder(
                spec.listen,
                target=spec.target,
                idle_timeout=spec.udp_idle_timeout,
                max_flows=spec.udp_max_flows,
            )

    @property
    def counters(self) -> ForwardCounters:
        return self.engine.counters

    @property
    def bound(self) -> Endpoint:
        return self.engine.bound

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
