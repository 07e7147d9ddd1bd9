"""Host networking while it is allowed, the daemon's side: a Peer (vm/peer/peer.py) on the
host, the control link to the agent, and what only the host side does — opening VM ports
on the control link or as streams, the shared-kernel fast path, and the agent's mirrors'
states for ``hostnet ports``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from app.daemon.agent_link import AgentLink
from proxy.counters import ForwardCounters
from proxy.errors import HostnetError
from proxy.hold.hold_side import KernelFirst, no_kernel_path
from proxy.hold.port_check import PortCheck, port_check_in
from proxy.hold.probe import (
    HOLD_STATUS,
    PROBE,
    PROBE_TIMEOUT,
    ProbeAnswer,
    parse_answer,
    probe_params,
)
from proxy.listeners import Listener, Proto
from proxy.mirror_set import ALL_INTERFACE_BINDS, LOOPBACK_BINDS, MIRRORABLE_HOSTS, MirrorState
from proxy.states import LinkState
from proxy.udp_forwarder import DEFAULT_IDLE_TIMEOUT
from proxy.wire import Listener as WireListener
from proxy.wire import Listeners, ProtocolError, Request, Response, StreamFailed, StreamRequest
from vm.peer.peer import Peer
from vm.transport.address import TransportAddress
from vm.transport.control_requests import OPEN
from vm.transport.namespace_sockets import NamespaceSockets
from vm.transport.streams import attach_stream, open_stream
from vm.transport.targets import TargetError, relay_stream
from vm.transport.wire_socket import WireSocket

log = logging.getLogger(__name__)

VM_MIRROR_POLL = 0.5


def reported_to_vm(listener: Listener) -> bool:
    """The host listeners the VM may see: loopback and wildcard ones only."""
    return listener.host in MIRRORABLE_HOSTS


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
        on_link_state: Callable[[LinkState, str], None],
        on_vm_mirrors: Callable[[list[dict[str, Any]]], None] = lambda mirrors: None,
        vm_sockets: NamespaceSockets | None = None,
        udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.address = address
        self.secret = secret
        self.reverse_counters = ForwardCounters()
        self.peer = Peer(
            side="on the host",
            open_remote=self._open,
            send_listeners=self._send_listeners,
            binds=ALL_INTERFACE_BINDS if expose_all else LOOPBACK_BINDS,
            excluded_ports=excluded,
            reports=reported_to_vm,
            on_mirror=on_mirror,
            udp_idle_timeout=udp_idle_timeout,
            probe_remote=self._probe_vm,
            other="VM",
        )
        self.mirrors = self.peer.mirrors
        self.vm_check: PortCheck | None = None
        self.vm_hold: dict[str, Any] = {}
        self.link = AgentLink(
            address,
            secret,
            self,
            on_connected=self._on_connected,
            on_lost=self.peer.remote_gone,
            on_state=on_link_state,
        )
        self.vm_sockets: NamespaceSockets | None = None
        self.replace_vm_sockets(vm_sockets)
        self.vm_mirrors: list[dict[str, Any]] = []
        self.on_vm_mirrors = on_vm_mirrors
        self.kernel_takes: KernelFirst = no_kernel_path
        """The kernel path's rules for host ports the agent is about to mirror (its probes)."""

    async def start(self) -> None:
        await self.peer.start()
        self.link.start()
        self.peer.spawn(self._poll_vm_mirrors())

    async def stop(self) -> None:
        await self.link.stop()
        await self.peer.stop()
        self._look_into_vm(None)

    async def _on_connected(self) -> None:
        await self.peer.report_all()
        # A request: its answer is read by the control loop, which starts after this returns.
        self.peer.spawn(self._tell_agent_udp_idle_timeout(self.peer.udp_idle_timeout))

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
                    response = await self.link.request(HOLD_STATUS)
                    if response.ok and isinstance(response.result, dict):
                        self.vm_hold = response.result
            if mirrors != self.vm_mirrors:
                self.vm_mirrors = mirrors
                self.on_vm_mirrors(mirrors)

    def hold_status(self) -> dict[str, Any]:
        """Each side's hold of first packets (proxy/hold): on or off and why, with counters."""
        return {"host": self.peer.hold.status(), "vm": self.vm_hold}

    # -- settings that apply live ---------------------------------------------------------

    async def set_expose_all(self, expose_all: bool) -> None:
        await self.peer.set_binds(ALL_INTERFACE_BINDS if expose_all else LOOPBACK_BINDS)

    def set_udp_idle_timeout(self, seconds: float) -> None:
        self.peer.set_udp_idle_timeout(seconds)
        self.peer.spawn(self._tell_agent_udp_idle_timeout(seconds))

    async def _tell_agent_udp_idle_timeout(self, seconds: float) -> None:
        if self.link.connected:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await self.link.request("udp_idle_timeout", {"seconds": seconds})

    async def set_excluded(self, excluded: Callable[[int], bool]) -> None:
        await self.peer.set_excluded(excluded)

    # -- VM ports, reached from the host --------------------------------------------------

    def _vm_socket(self, family: socket.AddressFamily) -> socket.socket:
        vm_sockets = self.vm_sockets
        if vm_sockets is None:
            raise OSError(errno.ENETDOWN, "the VM's namespace is being replaced")
        return vm_sockets.take(family)

    def replace_vm_sockets(self, vm_sockets: NamespaceSockets | None) -> None:
        """After the VM was made anew: sockets from the new namespace from now on."""
        old, self.vm_sockets = self.vm_sockets, vm_sockets
        self.peer.direct_socket = self._vm_socket if vm_sockets is not None else None
        self._look_into_vm(vm_sockets)
        if old is not None:
            old.stop()

    def _look_into_vm(self, vm_sockets: NamespaceSockets | None) -> None:
        """Where the daemon can enter the VM's namespace, a held host client to a port with
        no socket there at all is let go without asking the agent (a faster refusal)."""
        if self.vm_check is not None:
            self.vm_check.close()
            self.vm_check = None
        if vm_sockets is not None:
            try:
                self.vm_check = port_check_in(vm_sockets.netns_path)
            except OSError as exc:
                log.info("held ports are checked through the agent only: %s", exc)
        self.peer.look_into_remote(self._nobody_in_vm)

    def _nobody_in_vm(self, proto: Proto, port: int) -> bool:
        check = self.vm_check
        if check is None:
            return False
        try:
            return not check.listeners(proto, port)
        except OSError:
            return False

    async def _probe_vm(self, proto: Proto, port: int) -> ProbeAnswer | None:
        """Who listens on ``proto`` ``port`` in the VM now, asked of the agent (held packets)."""
        if not self.link.connected:
            return None
        response = await self.link.request(PROBE, probe_params(proto, port), PROBE_TIMEOUT)
        return parse_answer(response.result) if response.ok else ProbeAnswer([])

    async def _open(self, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket to ``proto host:port`` in the VM: handed over on the control connection
        where host and VM share a kernel, else a stream connection of its own."""
        if self.address.passes_fds:
            return await self.link.open_socket(proto, host, port)
        return await open_stream(self.address, self.secret, "daemon", proto, host, port)

    # -- the agent's control messages (ControlHandler) ------------------------------------

    async def on_listeners(self, change: Listeners) -> None:
        await self.peer.on_remote_listeners(change)

    async def _send_listeners(self, added: list[WireListener], removed: list[WireListener]) -> None:
        await self.link.send_listeners(added, removed)

    def on_request(self, wire: WireSocket, request: Request) -> None:
        if request.method == OPEN:
            self.peer.spawn(self.peer.serve_open_request(wire, request))
        elif request.method == PROBE:
            self.peer.spawn(self._answer_probe(wire, request))
        else:
            refusal = Response(request.id, False, f"the daemon does not answer {request.method!r}")
            self.peer.spawn(self._answer(wire, refusal))

    async def _answer_probe(self, wire: WireSocket, request: Request) -> None:
        """The agent holds a VM client's first packet: who listens on the host, and, for
        UDP, whether the kernel path's rules carry the port now (``kernel_takes`` puts it
        in them first; then the agent sends the held packets through the rules)."""
        try:
            hosts = list(self.peer.hold.answer(request.params))
            kernel = False
            if hosts and request.params.get("proto") == "udp":
                kernel = await self.kernel_takes("udp", int(request.params["port"]), hosts)
        except (HostnetError, OSError) as exc:
            await self._answer(wire, Response(request.id, False, str(exc)))
            return
        # A bare list unless the kernel carries it: what an agent of any version reads.
        result = ProbeAnswer(hosts, kernel).to_json() if kernel else hosts
        await self._answer(wire, Response(request.id, True, result))

    async def _answer(self, wire: WireSocket, response: Response) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            await wire.send(response)

    def on_stream_failed(self, failure: StreamFailed) -> None:
        log.info("the agent reports a failed stream %d: %s", failure.stream_id, failure.message)

    def on_stream_request(self, request: StreamRequest) -> None:
        self.peer.spawn(self._serve_stream_request(request))

    async def _serve_stream_request(self, request: StreamRequest) -> None:
        """The agent asks for a host port (transports without descriptor passing)."""
        try:
            target = await self.peer.connect_local(request.proto, request.host, request.port)
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
