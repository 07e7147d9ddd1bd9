"""One side of host networking, the same code in the daemon (host side) and the agent (VM side).

A peer watches the listening sockets of its own side and reports them to the other side;
mirrors the other side's listeners on its own loopback; and connects its own listeners for
the other side when asked. What differs between the two sides is passed in: which binds the
mirrors take, which ports are excluded, whether a local listener shadows a mirror (the VM's
own listener wins), how a stream to the other side is opened, and which local listeners
are worth reporting.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from proxy.addresses import Endpoint
from proxy.hold.hold_side import Ask, HoldSide, NobodyThere
from proxy.listener_watcher import ListenerWatcher
from proxy.listeners import Listener, ListenerKey, Proto
from proxy.mirror_set import Engine, MirrorSet, MirrorState
from proxy.states import MirrorPhase
from proxy.tcp_forwarder import TcpForwarder, TcpTarget
from proxy.udp_forwarder import DEFAULT_IDLE_TIMEOUT, UdpForwarder
from proxy.wire import ErrorCode, Listeners, Request
from proxy.wire import Listener as WireListener
from vm.transport.control_requests import serve_open_request
from vm.transport.stream_engines import stream_engine
from vm.transport.targets import TargetError, connect_target, listening_now
from vm.transport.wire_socket import WireSocket

OpenRemote = Callable[[Proto, str, int], Awaitable[socket.socket]]
"""Opens a socket to ``proto host:port`` on the other side (a stream, or a handed-over socket)."""

SendListeners = Callable[[list[WireListener], list[WireListener]], Awaitable[None]]
"""Sends a change of this side's listeners (added, removed) to the other side, if connected."""

DirectSocket = Callable[[socket.AddressFamily], socket.socket]
"""Makes an unconnected TCP socket inside the other side's network namespace (shared kernel)."""


def _wire_key(item: WireListener) -> tuple[str, str, int]:
    return (item.proto, item.host, item.port)


class Peer:
    """Mirrors of the other side's listeners, and this side's listeners for the other side."""

    def __init__(
        self,
        *,
        side: str,
        open_remote: OpenRemote,
        send_listeners: SendListeners,
        binds: tuple[str, ...],
        excluded_ports: Callable[[int], bool] = lambda port: False,
        local_wins: bool = False,
        reports: Callable[[Listener], bool] = lambda listener: True,
        on_mirror: Callable[[MirrorState], None] = lambda mirror: None,
        udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        probe_remote: Ask | None = None,
        other: str = "other side",
    ) -> None:
        self.side = side  # "on the host" or "in the VM", for messages
        self.open_remote = open_remote
        self.send_listeners = send_listeners
        self.reports = reports
        self.udp_idle_timeout = udp_idle_timeout
        self.direct_socket: DirectSocket | None = None
        self.mirrors = MirrorSet(
            self._make_engine,
            binds=binds,
            excluded_ports=excluded_ports,
            on_change=on_mirror,
            local_ports=self._listens_locally if local_wins else lambda proto, port: False,
        )
        self.watcher = ListenerWatcher(self._on_local_change, exclude=self.mirrors.own_inodes)
        # First packets to our ports with no listener wait for the other side (proxy/hold).
        self.hold = HoldSide(
            other=other,
            own_inodes=self.mirrors.own_inodes,
            adopt=self.watcher.adopt,
            ask=probe_remote,
            mirror=self._mirror_remote_port,
            hold_back=self.mirrors.hold_back,
            let_start=self.mirrors.let_start,
        )
        self.remote: set[ListenerKey] = set()
        self.reported: set[WireListener] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.watcher.start()
        self.hold.start()

    async def stop(self) -> None:
        await self.hold.stop()
        await self.mirrors.close()
        await self.watcher.stop()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the peer owns: cancelled on stop, never lost to the GC."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- this side's listeners, for the other side -----------------------------------------

    def _worth_reporting(self) -> set[WireListener]:
        return {
            WireListener(item.proto, host, item.port)
            for item in self._reachable()
            if self.reports(item)
            for host in item.hosts
        }

    def _reachable(self) -> frozenset[Listener]:
        """This side's listeners less the excluded ports: excluded in both directions."""
        excluded = self.mirrors.excluded_ports
        return frozenset(item for item in self.watcher.current if not excluded(item.port))

    async def report_all(self) -> None:
        """After a (re)connection: the other side gets the whole set anew."""
        self.reported = self._worth_reporting()
        await self.send_listeners(sorted(self.reported, key=_wire_key), [])

    def _on_local_change(self, added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        self.spawn(self._report_change())

    async def _report_change(self) -> None:
        now = self._worth_reporting()
        added, removed = now - self.reported, self.reported - now
        self.reported = now
        if added or removed:
            await self.send_listeners(sorted(added, key=_wire_key), sorted(removed, key=_wire_key))
        await self.mirrors.reconcile()  # a local listener may now shadow a mirror

    def _listens_locally(self, proto: Proto, port: int) -> bool:
        return any(i.proto == proto and i.port == port for i in self.watcher.current)

    def listens_now(self, proto: Proto, host: str, port: int) -> bool:
        return listening_now(self._reachable(), proto, host, port)

    async def connect_local(self, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket connected to this side's ``proto host:port``, for the other side. Only a
        port that listens right now is connected: a peer is not a general proxy."""
        if not self.listens_now(proto, host, port):
            raise TargetError(
                ErrorCode.NOT_LISTENING,
                f"nothing listens on {proto} port {port} at {host} {self.side}",
            )
        return await connect_target(proto, host, port)

    async def serve_open_request(self, wire: WireSocket, request: Request) -> None:
        """The other side asks for one of our ports on the control connection (shared
        kernel): connect it and hand the socket over in the answer."""
        await serve_open_request(wire, request, self._reachable(), self.side)

    # -- the other side's listeners, mirrored here ----------------------------------------

    async def on_remote_listeners(self, change: Listeners) -> None:
        for item in change.removed:
            self.remote.discard((item.proto, item.host, item.port))
        for item in change.added:
            self.remote.add((item.proto, item.host, item.port))
        await self.mirrors.set_remote(self.remote)

    async def _mirror_remote_port(self, proto: Proto, port: int, hosts: list[str]) -> None:
        """A held client waits for this: the other side's listeners on ``port``, mirrored
        now, through the same rules as discovery's (exclusions, the local listener wins)."""
        self.remote.update((proto, host, port) for host in hosts)
        self.mirrors.let_start(proto, port)
        await self.mirrors.set_remote(self.remote)

    def look_into_remote(self, nobody_there: NobodyThere) -> None:
        """Where this side can see the other side's sockets itself (a shared kernel), a held
        packet for a port with no socket there is let go without asking (a faster refusal)."""
        self.hold.nobody_there = nobody_there

    async def remote_gone(self) -> None:
        """The other side went away: its listeners with it, until it reports them again."""
        self.remote.clear()
        await self.mirrors.set_remote(())

    def _make_engine(self, proto: Proto, bind: Endpoint, remote_host: str) -> Engine:
        port = bind.port
        direct = self.direct_socket
        if proto == "tcp" and direct is not None:
            # Same kernel, and sockets made inside the other side's namespace: connect the
            # listener ourselves, with callbacks; one splice, no round trip to the other side.
            return TcpForwarder(bind, TcpTarget(Endpoint(remote_host, port), make_socket=direct))

        async def open_socket(proto: Proto) -> socket.socket:
            return await self.open_remote(proto, remote_host, port)

        return stream_engine(proto, bind, open_socket, self.udp_idle_timeout)

    # -- settings that apply live ---------------------------------------------------------

    async def set_binds(self, binds: tuple[str, ...]) -> None:
        await self.mirrors.set_binds(binds)

    def set_udp_idle_timeout(self, seconds: float) -> None:
        self.udp_idle_timeout = seconds
        for mirror in self.mirrors.states():
            if isinstance(mirror.engine, UdpForwarder):
                mirror.engine.set_idle_timeout(seconds)

    async def set_excluded(self, excluded: Callable[[int], bool]) -> None:
        self.mirrors.excluded_ports = excluded
        for mirror in self.mirrors.states():
            if mirror.state == MirrorPhase.ACTIVE and excluded(mirror.key.port):
                mirror.state = MirrorPhase.PENDING
                await self.mirrors.stop_engine(mirror)
        await self._report_change()  # excluded ports leave the other side's view too
