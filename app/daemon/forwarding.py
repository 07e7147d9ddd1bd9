"""Host networking while it is allowed: VM listeners mirrored on the host, host listeners
reported to the agent, and the agent's requests for host ports served."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from app.daemon.agent_link import AgentLink, ListenerKey
from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.listener_watcher import ListenerWatcher
from proxy.listeners import Listener, Proto
from proxy.mirror_set import (
    ALL_INTERFACE_BINDS,
    LOOPBACK_BINDS,
    MIRRORABLE_HOSTS,
    Engine,
    MirrorSet,
    MirrorState,
)
from proxy.tcp_forwarder import TcpForwarder, TcpTarget
from proxy.udp_forwarder import DEFAULT_IDLE_TIMEOUT, UdpForwarder
from proxy.wire import ErrorCode, ProtocolError, Request, Response, StreamFailed, StreamRequest
from proxy.wire import Listener as WireListener
from vm.backends.netns_sockets import NamespaceSockets
from vm.transport.address import TransportAddress
from vm.transport.control_requests import OPEN, serve_open_request
from vm.transport.stream_engines import stream_engine
from vm.transport.streams import attach_stream, open_stream
from vm.transport.targets import TargetError, connect_target, listening_now, relay_stream
from vm.transport.wire_socket import WireSocket

log = logging.getLogger(__name__)

VM_MIRROR_POLL = 0.5


def host_listeners_to_report(listeners: frozenset[Listener]) -> set[WireListener]:
    """The host listeners the VM should see: loopback and wildcard ones, once per key."""
    return {WireListener(i.proto, i.host, i.port) for i in listeners if i.host in MIRRORABLE_HOSTS}


class Forwarding:
    """Everything that runs while host networking is on, for one VM."""

    def __init__(
        self,
        address: TransportAddress,
        secret: bytes,
        *,
        expose_all: bool,
        excluded: Callable[[int], bool],
        on_mirror: Callable[[MirrorState], None],
        on_link_state: Callable[[str, str], None],
        on_vm_mirrors: Callable[[list[dict[str, Any]]], None] = lambda mirrors: None,
        vm_sockets: NamespaceSockets | None = None,
        udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.vm_sockets = vm_sockets
        self.udp_idle_timeout = udp_idle_timeout
        self.address = address
        self.secret = secret
        self.reverse_counters = ForwardCounters()
        self.mirrors = MirrorSet(
            self._make_engine,
            binds=ALL_INTERFACE_BINDS if expose_all else LOOPBACK_BINDS,
            excluded_ports=excluded,
            on_change=on_mirror,
        )
        self.host_watcher = ListenerWatcher(self._on_host_change, exclude=self.mirrors.own_inodes)
        self.link = AgentLink(
            address,
            secret,
            on_vm_listeners=self._on_vm_listeners,
            on_stream_request=self._on_stream_request,
            on_connected=self._send_all_host_listeners,
            on_request=self._on_request,
            on_state=on_link_state,
        )
        self.reported: set[WireListener] = set()
        self.vm_mirrors: list[dict[str, Any]] = []
        self.on_vm_mirrors = on_vm_mirrors
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.host_watcher.start()
        self.link.start()
        self._spawn(self._poll_vm_mirrors())

    async def _poll_vm_mirrors(self) -> None:
        """The agent's mirrors of host ports, with their states, for ``hostnet ports``."""
        while True:
            await asyncio.sleep(VM_MIRROR_POLL)
            mirrors: list[dict[str, Any]] = []
            if self.link.connected:
                with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                    response = await self.link.request("mirrors")
                    if response.ok and isinstance(response.result, list):
                        mirrors = response.result
            if mirrors != self.vm_mirrors:
                self.vm_mirrors = mirrors
                self.on_vm_mirrors(mirrors)

    async def stop(self) -> None:
        await self.link.stop()
        await self.mirrors.close()
        await self.host_watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- settings that apply live ---------------------------------------------------------

    async def set_expose_all(self, expose_all: bool) -> None:
        await self.mirrors.set_binds(ALL_INTERFACE_BINDS if expose_all else LOOPBACK_BINDS)

    def set_udp_idle_timeout(self, seconds: float) -> None:
        self.udp_idle_timeout = seconds
        for mirror in self.mirrors.states():
            if isinstance(mirror.engine, UdpForwarder):
                mirror.engine.set_idle_timeout(seconds)

    async def set_excluded(self, excluded: Callable[[int], bool]) -> None:
        self.mirrors.excluded_ports = excluded
        for mirror in self.mirrors.states():
            if mirror.state == "active" and excluded(mirror.key.port):
                mirror.state = "pending"
                await self.mirrors.stop_engine(mirror)
        await self.mirrors.reconcile()

    # -- VM -> host mirrors ---------------------------------------------------------------

    async def _on_vm_listeners(self, listeners: set[ListenerKey]) -> None:
        await self.mirrors.set_remote(listeners)

    def _vm_socket(self, family: socket.AddressFamily) -> socket.socket:
        vm_sockets = self.vm_sockets
        if vm_sockets is None:
            raise OSError(errno.ENETDOWN, "the VM's namespace is being replaced")
        return vm_sockets.take(family)

    def replace_vm_sockets(self, vm_sockets: NamespaceSockets | None) -> None:
        """After the VM was made anew: sockets from the new namespace from now on."""
        old, self.vm_sockets = self.vm_sockets, vm_sockets
        if old is not None:
            old.stop()

    async def _open(self, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket to ``proto host:port`` in the VM: handed over on the control connection
        where host and VM share a kernel, else a stream connection of its own."""
        if self.address.passes_fds:
            return await self.link.open_socket(proto, host, port)
        return await open_stream(self.address, self.secret, "daemon", proto, host, port)

    def _make_engine(self, proto: Proto, bind: Endpoint, remote_host: str) -> Engine:
        port = bind.port
        vm_sockets = self.vm_sockets
        if proto == "tcp" and vm_sockets is not None:
            # Same kernel, and a thread of ours inside the VM's namespace: connect the VM
            # listener ourselves, with callbacks; one splice, no round trip to the agent.
            target = Endpoint(remote_host, port)
            return TcpForwarder(bind, TcpTarget(target, make_socket=self._vm_socket))

        async def open_socket(proto: Proto) -> socket.socket:
            return await self._open(proto, remote_host, port)

        return stream_engine(proto, bind, open_socket, self.udp_idle_timeout)

    # -- host -> VM: what the agent mirrors, and its requests ------------------------------

    def _on_host_change(self, added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        self._spawn(self._send_host_delta())

    async def _send_host_delta(self) -> None:
        now = host_listeners_to_report(self.host_watcher.current)
        added, removed = now - self.reported, self.reported - now
        self.reported = now
        if added or removed:
            await self.link.send_listeners(sorted(added, key=_key), sorted(removed, key=_key))

    async def _send_all_host_listeners(self) -> None:
        self.reported = host_listeners_to_report(self.host_watcher.current)
        await self.link.send_listeners(sorted(self.reported, key=_key), [])

    def _on_request(self, wire: WireSocket, request: Request) -> None:
        if request.method == OPEN:
            self._spawn(self._serve_open(wire, request))
        else:
            self._spawn(
                self._answer(
                    wire,
                    Response(request.id, False, f"the daemon does not answer {request.method!r}"),
                )
            )

    async def _answer(self, wire: WireSocket, response: Response) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            await wire.send(response)

    async def _serve_open(self, wire: WireSocket, request: Request) -> None:
        """The agent asks for a host port (unix transport): connect it, hand it over."""
        await serve_open_request(wire, request, self.host_watcher.current, "on the host")

    def _on_stream_request(self, request: StreamRequest) -> None:
        self._spawn(self._serve_stream_request(request))

    async def _serve_stream_request(self, request: StreamRequest) -> None:
        if not listening_now(self.host_watcher.current, request.proto, request.host, request.port):
            await self.link.stream_failed(
                StreamFailed(
                    request.stream_id,
                    ErrorCode.NOT_LISTENING,
                    f"nothing listens on host {request.proto} port {request.port}",
                )
            )
            return
        try:
            target = await connect_target(request.proto, request.host, request.port)
        except TargetError as exc:
            await self.link.stream_failed(StreamFailed(request.stream_id, exc.code, str(exc)))
            return
        try:
            stream = await attach_stream(
                self.address, self.secret, "daemon", request.stream_id, target
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            log.info("attach of stream %d failed: %s", request.stream_id, exc)
            target.close()
            return
        if stream is None:  # handed over: the agent relays with one splice
            target.close()
            return
        with contextlib.suppress(OSError):
            await relay_stream(request.proto, stream, target, self.reverse_counters)


def _key(item: WireListener) -> tuple[str, str, int]:
    return (item.proto, item.host, item.port)
