"""Relay UDP datagrams from a listen address to an upstream, one flow per client address.

Each client address gets its own upstream (by default a connected UDP socket to the
target), so replies find their way back and one client's errors stay its own. Flows
expire after an idle timeout, and their number is bounded: the longest idle is evicted.
"""

from __future__ import annotations

import asyncio
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.listening_socket import ListeningSocket
from proxy.receive_buffer import enlarge_receive_buffer
from proxy.tcp_forwarder import listen_error

MAX_DATAGRAM = 65_507
"""The largest UDP payload over IPv4; what every buffer here is sized for."""
RECV_SIZE = 65_536
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_FLOWS = 4096
PENDING_PER_FLOW = 64
DATAGRAMS_PER_WAKEUP = 64
LISTENER_RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for the listening socket, which every client shares. With the default
~208 KiB, 30,000 datagrams/s of 1,200 bytes lost 1-3 % at this socket whenever the relay was
scheduled late; with 4 MiB, none (tests/bench/bench_relay.py). Past net.core.rmem_max, which
many distributions leave at 208 KiB, only as root (proxy/receive_buffer.py)."""

Deliver = Callable[[bytes], None]


class FlowUpstream(Protocol):
    """Where one client's datagrams go; replies come back through the ``deliver`` callback."""

    def send(self, datagram: bytes) -> None: ...

    def close(self) -> None: ...


UpstreamFactory = Callable[[tuple[str, int], Deliver], Awaitable[FlowUpstream]]


class SocketUpstream:
    """A connected UDP socket to the target, read by the event loop.

    The socket may come from elsewhere (a socket the other side of the VM boundary
    connected and handed over), so this class only needs it connected.
    """

    def __init__(self, sock: socket.socket, deliver: Deliver, counters: ForwardCounters) -> None:
        self.loop = asyncio.get_running_loop()
        self.deliver = deliver
        self.counters = counters
        self.sock = sock
        sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def send(self, datagram: bytes) -> None:
        try:
            self.sock.send(datagram)
        except (BlockingIOError, ConnectionRefusedError):
            # A full buffer drops the datagram, as UDP would; a refusal (ICMP port
            # unreachable from an earlier datagram) is counted, and the flow stays.
            self.counters.note_error("upstream send dropped or refused")
        except OSError as exc:
            self.counters.note_error(f"upstream send failed: {exc.strerror}")

    def _on_readable(self) -> None:
        for _ in range(DATAGRAMS_PER_WAKEUP):
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                self.counters.note_error("upstream port unreachable")
                continue
            except OSError as exc:
                self.counters.note_error(f"upstream receive failed: {exc.strerror}")
                return
            self.deliver(data)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def connect_udp(target: Endpoint) -> socket.socket:
    """A non-blocking UDP socket connected to ``target``."""
    sock = socket.socket(target.family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(target.sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


def socket_upstream_factory(target: Endpoint, counters: ForwardCounters) -> UpstreamFactory:
    async def make(_client: tuple[str, int], deliver: Deliver) -> FlowUpstream:
        return SocketUpstream(connect_udp(target), deliver, counters)

    return make


class _Flow:
    __slots__ = ("client", "last_seen", "pending", "ready", "upstream")

    def __init__(self, client: tuple[str, int], now: float) -> None:
        self.client = client
        self.last_seen = now
        self.upstream: FlowUpstream | None = None
        self.pending: list[bytes] = []
        self.ready = False


def open_udp_listener(endpoint: Endpoint) -> socket.socket:
    sock = socket.socket(endpoint.family, socket.SOCK_DGRAM)
    try:
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_error(endpoint, exc, "UDP") from None
    return sock


class UdpForwarder(ListeningSocket):
    """Relays datagrams on ``listen`` through per-client flows made by ``upstream_factory``."""

    def __init__(
        self,
        listen: Endpoint,
        upstream_factory: UpstreamFactory | None = None,
        *,
        target: Endpoint | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_flows: int = DEFAULT_MAX_FLOWS,
        sock: socket.socket | None = None,
    ) -> None:
        self.listen = listen
        self.counters = ForwardCounters()
        if upstream_factory is None:
            if target is None:
                raise ValueError("UdpForwarder needs a target or an upstream factory")
            upstream_factory = socket_upstream_factory(target, self.counters)
        self.upstream_factory = upstream_factory
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        self._sock = sock
        self._flows: OrderedDict[tuple[str, int], _Flow] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def flow_count(self) -> int:
        return len(self._flows)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._sock is None:
            self._sock = open_udp_listener(self.listen)
        self._sock.setblocking(False)
        enlarge_receive_buffer(self._sock, LISTENER_RECEIVE_BUFFER)
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._schedule_sweep()

    async def stop(self) -> None:
        if self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in list(self._flows):
            self._drop(client)

    def _on_readable(self) -> None:
        assert self._sock is not None and self._loop is not None
        now = self._loop.time()
        for _ in range(DATAGRAMS_PER_WAKEUP):
            try:
                data, client = self._sock.recvfrom(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.counters.note_error(f"receive failed: {exc.strerror}")
                return
            client = client[:2]
            self.counters.udp_datagrams_in += 1
            self.counters.bytes_in += len(data)
            flow = self._flows.get(client)
            if flow is None:
                flow = self._open_flow(client, now)
            else:
                flow.last_seen = now
                self._flows.move_to_end(client)
            if flow.ready:
                assert flow.upstream is not None
                flow.upstream.send(data)
            elif len(flow.pending) < PENDING_PER_FLOW:
                flow.pending.append(data)
            else:
                self.counters.note_error("datagram dropped while the flow was opening")

    def _open_flow(self, client: tuple[str, int], now: float) -> _Flow:
        assert self._loop is not None
        while len(self._flows) >= self.max_flows:
            oldest = next(iter(self._flows))
            self._drop(oldest)
            self.counters.udp_flows_evicted += 1
        flow = _Flow(client, now)
        self._flows[client] = flow
        self.counters.udp_flows_open += 1
        self.counters.udp_flows_total += 1
        task = self._loop.create_task(self._connect_flow(flow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flow

    async def _connect_flow(self, flow: _Flow) -> None:
        def deliver(data: bytes) -> None:
            self._reply(flow, data)

        try:
            upstream = await self.upstream_factory(flow.client, deliver)
        except (TimeoutError, OSError, ConnectionError) as exc:
            self.counters.note_error(f"flow upstream failed: {exc}")
            if self._flows.get(flow.client) is flow:
                self._drop(flow.client)
            return
        if self._flows.get(flow.client) is not flow:  # evicted or stopped meanwhile
            upstream.close()
            return
        flow.upstream = upstream
        flow.ready = True
        for data in flow.pending:
            upstream.send(data)
        flow.pending.clear()

    def _reply(self, flow: _Flow, data: bytes) -> None:
        if self._sock is None or self._flows.get(flow.client) is not flow:
            return
        assert self._loop is not None
        flow.last_seen = self._loop.time()
        self._flows.move_to_end(flow.client)
        try:
            self._sock.sendto(data, flow.client)
        except BlockingIOError:
            self.counters.note_error("reply dropped: send buffer full")
            return
        except OSError as exc:
            self.counters.note_error(f"reply failed: {exc.strerror}")
            return
        self.counters.udp_datagrams_out += 1
        self.counters.bytes_out += len(data)

    def _drop(self, client: tuple[str, int]) -> None:
        flow = self._flows.pop(client)
        self.counters.udp_flows_open -= 1
        if flow.upstream is not None:
            flow.upstream.close()

    def set_idle_timeout(self, seconds: float) -> None:
        """Change the idle timeout of this forwarder's flows; takes effect at once."""
        self.idle_timeout = seconds
        if self._sweeper is not None and self._loop is not None:
            self._sweeper.cancel()
            self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        interval = min(max(self.idle_timeout / 4, 0.05), 5.0)
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        deadline = self._loop.time() - self.idle_timeout
        while self._flows:
            client, flow = next(iter(self._flows.items()))
            if flow.last_seen > deadline:
                break
            self._drop(client)
        self._schedule_sweep()
