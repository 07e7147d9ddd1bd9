"""The local end of a stream: is the target listening now, connect it, relay a stream to it.

Both the agent (VM targets) and the daemon (host targets) connect only to ports that
listen on their side right now, and only on loopback or the listener's own address: a
stream is never a way into other addresses of either network.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.errors import HostnetError
from proxy.listeners import Listener, Proto
from proxy.tcp_forwarder import connect_socket, tune
from proxy.tcp_relay import counted_relay, relay_until_done
from proxy.udp_forwarder import connect_udp
from proxy.wire import ErrorCode
from vm.transport.datagram_stream import UdpStreamBridge

CONNECT_TIMEOUT = 5.0
_WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


class TargetError(HostnetError, ConnectionError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def listening_now(listeners: Iterable[Listener], proto: Proto, host: str, port: int) -> bool:
    """True if a listener accepts ``proto host:port`` now (its own address or a wildcard)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for listener in listeners:
        if listener.proto != proto or listener.port != port:
            continue
        if listener.host in (host, _WILDCARD[family]):
            return True
        if family == socket.AF_INET and listener.host == "::" and listener.dual_stack:
            return True
    return False


async def connect_target(proto: Proto, host: str, port: int) -> socket.socket:
    """A connected, non-blocking socket to the local target, or TargetError saying why."""
    target = Endpoint(host, port)
    if proto == "udp":
        try:
            return connect_udp(target)
        except OSError as exc:
            raise TargetError(ErrorCode.UNREACHABLE, f"udp {target}: {exc.strerror}") from None
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await connect_socket(sock, target.sockaddr, CONNECT_TIMEOUT)
    except TimeoutError:
        sock.close()
        raise TargetError(ErrorCode.TIMEOUT, f"tcp {target} did not answer in time") from None
    except OSError as exc:
        sock.close()
        code = ErrorCode.REFUSED if exc.errno == errno.ECONNREFUSED else ErrorCode.UNREACHABLE
        raise TargetError(code, f"tcp {target}: {exc.strerror}") from None
    tune(sock)
    return sock


async def relay_stream(
    proto: Proto, stream: socket.socket, target: socket.socket, counters: ForwardCounters
) -> None:
    """Relay a raw stream connection to ``target`` until both are done."""
    if proto == "udp":
        bridge = UdpStreamBridge(stream, target, counters)
        await bridge.done
        return
    await relay_until_done(counted_relay(stream, target, counters))
