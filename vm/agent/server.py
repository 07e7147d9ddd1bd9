"""The agent's main object: one per VM, serving the daemon over one transport address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from proxy.accept_loop import AcceptLoop
from proxy.counters import ForwardCounters
from proxy.errors import HostnetError
from proxy.hold.probe import (
    HOLD_STATUS,
    PROBE,
    PROBE_TIMEOUT,
    ProbeAnswer,
    parse_answer,
    probe_params,
)
from proxy.listeners import Proto
from proxy.mirror_set import LOOPBACK_BINDS
from proxy.wire import (
    Attach,
    Error,
    ErrorCode,
    Listeners,
    Open,
    OpenEngine,
    OpenOk,
    ProtocolError,
    Request,
    Response,
    StreamFailed,
    StreamRequest,
)
from proxy.wire import Listener as WireListener
from vm.agent.commands import CommandError, Commands
from vm.agent.engine_socket import ENGINE_SOCKETS, connect_engine
from vm.agent.requests import STREAM_REQUEST_TIMEOUT, PendingStreams
from vm.engine.listener_owners import PORT_OWNERS, owners_to_json, port_owners
from vm.peer.control_channel import serve_control
from vm.peer.peer import Peer
from vm.transport.address import TransportAddress
from vm.transport.control_requests import OPEN, RequestTracker
from vm.transport.mux_link import GuestMuxLink
from vm.transport.targets import TargetError, relay_stream
from vm.transport.wire_socket import WireSocket, accept_wire

log = logging.getLogger(__name__)


class Agent:
    """Accepts the daemon's connections on ``address`` and does what they ask.

    The mirroring itself is a Peer (vm/peer/peer.py), the same code the daemon runs; what
    is the agent's own is accepting connections (or multiplexed streams), serving streams
    the daemon opens, asking the daemon for host ports, and running commands.

    ``engine_sockets`` are the only unix sockets an ``OpenEngine`` stream reaches: the VM's
    own container engine (vm/agent/engine_socket.py), never a path the daemon names.
    """

    def __init__(
        self,
        address: TransportAddress,
        secret: bytes,
        engine_sockets: Sequence[Path] = ENGINE_SOCKETS,
    ) -> None:
        self.address = address
        self.secret = secret
        self.engine_sockets = tuple(engine_sockets)
        self.control: WireSocket | None = None
        self.pending = PendingStreams()
        self.requests = RequestTracker()
        self.stream_counters = ForwardCounters()
        self.peer = Peer(
            side="in the VM",
            open_remote=self._request_stream,
            send_listeners=self._send_listeners,
            binds=LOOPBACK_BINDS,
            local_wins=True,  # the VM's own listener wins over a mirror of a host port
            probe_remote=self._probe_host,
            other="host",
        )
        self.mirrors = self.peer.mirrors
        self.watcher = self.peer.watcher
        self._tasks = self.peer.tasks  # every task the agent runs, for leak checks
        self._accepting: AcceptLoop | None = None
        self._mux_link: GuestMuxLink | None = None
        self.commands = Commands()
        self._control_lock = asyncio.Lock()
        self.stopped = asyncio.Event()

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.peer.start()
        if self.address.multiplexed:  # streams arrive over one virtio-serial port
            self._mux_link = GuestMuxLink(self.address.path, self._on_stream_socket)
            await self._mux_link.start()
        else:
            self._accepting = AcceptLoop(self.address.listen(), self._on_connection, _accept_failed)
            self._accepting.start()
        log.info("agent listening on %s", self.address)

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.stop()
            self._accepting.sock.close()
        if self._mux_link is not None:
            await self._mux_link.close()
        await self.commands.close()
        await self.peer.stop()
        if self.control is not None:
            self.control.close()
        self.stopped.set()

    def _on_connection(self, sock: socket.socket, _address: object) -> None:
        self.peer.spawn(self._serve_connection(sock))

    def _on_stream_socket(self, sock: socket.socket, _header: bytes) -> None:
        """A stream the daemon opened over the multiplexer: served like an accepted socket."""
        self.peer.spawn(self._serve_connection(sock))

    async def _serve_connection(self, sock: socket.socket) -> None:
        try:
            wire = await accept_wire(sock, "agent", self.secret)
        except (ProtocolError, OSError, TimeoutError) as exc:
            log.warning("refused a connection: %s", exc)
            return
        assert wire.connection is not None
        if wire.connection.purpose == "control":
            await self._serve_control(wire)
            return
        try:
            event = await wire.next_event()
        except (ProtocolError, OSError) as exc:
            log.warning("stream failed before it opened: %s", exc)
            wire.close()
            return
        if isinstance(event, Open):
            await self._serve_open(wire, event)
        elif isinstance(event, Attach):
            await self._serve_attach(wire, event)
        elif isinstance(event, OpenEngine):
            await self._serve_engine(wire)
        else:
            wire.close()

    # -- control --------------------------------------------------------------------------

    async def _serve_control(self, wire: WireSocket) -> None:
        async with self._control_lock:
            if self.control is not None:  # a reconnecting daemon replaces the old channel
                self.control.close()
            self.control = wire
            await self.peer.report_all()
        try:
            await serve_control(wire, self, self.requests)
        except (ProtocolError, OSError) as exc:
            log.info("control connection ended: %s", exc)
        finally:
            if self.control is wire:
                self.control = None
                wire.close()
                self.pending.fail_all("the daemon went away")
                self.requests.fail_all("the daemon went away")
                # Without a daemon there is no host to reach: take the host's mirrors down.
                await self.peer.remote_gone()

    async def _send_listeners(self, added: list[WireListener], removed: list[WireListener]) -> None:
        wire = self.control
        if wire is not None:
            with contextlib.suppress(ProtocolError, OSError):
                for message in Listeners.batches(added, removed):
                    await wire.send(message)

    # ControlHandler: what the daemon sends on the control connection

    async def on_listeners(self, change: Listeners) -> None:
        await self.peer.on_remote_listeners(change)

    def on_stream_failed(self, failure: StreamFailed) -> None:
        self.pending.fail(failure.stream_id, failure.code, failure.message)

    def on_stream_request(self, request: StreamRequest) -> None:
        log.warning("the daemon sent a StreamRequest, which only the agent sends; ignored")

    def on_request(self, wire: WireSocket, request: Request) -> None:
        if request.method == OPEN:
            self.peer.spawn(self.peer.serve_open_request(wire, request))
        else:
            self.peer.spawn(self._answer_on(wire, request))  # exec may take seconds

    async def _answer_on(self, wire: WireSocket, request: Request) -> None:
        response = await self._answer(request)
        with contextlib.suppress(ProtocolError, OSError):
            await wire.send(response)

    async def _answer(self, request: Request) -> Response:
        if request.method in ("exec", "kill"):
            try:
                if request.method == "exec":
                    return Response(request.id, True, await self.commands.exec(request.params))
                return Response(request.id, True, self.commands.kill(request.params))
            except CommandError as exc:
                return Response(request.id, False, str(exc))
        if request.method == "ping":
            return Response(request.id, True, "pong")
        if request.method == "mirrors":
            return Response(request.id, True, [m.as_dict() for m in self.mirrors.states()])
        if request.method == PROBE:
            try:
                return Response(request.id, True, list(self.peer.hold.answer(request.params)))
            except (HostnetError, OSError) as exc:
                return Response(request.id, False, str(exc))
        if request.method == HOLD_STATUS:
            return Response(request.id, True, self.peer.hold.status())
        if request.method == PORT_OWNERS:  # who holds this VM's listeners (for hostnet ports)
            owners = await asyncio.to_thread(port_owners, "self", (os.getpid(),))
            return Response(request.id, True, owners_to_json(owners))
        if request.method == "listeners":
            return Response(request.id, True, [str(item) for item in sorted(self.watcher.current)])
        if request.method == "udp_idle_timeout":
            seconds = request.params.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                return Response(request.id, False, 'udp_idle_timeout needs "seconds" > 0')
            self.peer.set_udp_idle_timeout(float(seconds))
            return Response(request.id, True, float(seconds))
        return Response(request.id, False, f"unknown method {request.method!r}")

    async def _probe_host(self, proto: Proto, port: int) -> ProbeAnswer | None:
        """Who listens on ``proto`` ``port`` on the host now, asked of the daemon (held packets)."""
        wire = self.control
        if wire is None:
            return None
        response, handed = await self.requests.call(
            wire, PROBE, probe_params(proto, port), PROBE_TIMEOUT
        )
        if handed is not None:
            handed.close()
        return parse_answer(response.result) if response.ok else ProbeAnswer([])

    # -- streams the daemon opens (host -> VM) ---------------------------------------------

    async def _serve_open(self, wire: WireSocket, request: Open) -> None:
        try:
            target = await self.peer.connect_local(request.proto, request.host, request.port)
        except TargetError as exc:
            await self._refuse(wire, exc.code, str(exc))
            return
        await self._serve_target(wire, request.proto, target)

    async def _serve_engine(self, wire: WireSocket) -> None:
        """An OpenEngine stream: the VM's own engine API socket, and nothing else."""
        try:
            target = await connect_engine(self.engine_sockets)
        except TargetError as exc:
            await self._refuse(wire, exc.code, str(exc))
            return
        await self._serve_target(wire, "tcp", target)

    async def _serve_target(self, wire: WireSocket, proto: Proto, target: socket.socket) -> None:
        """Answer the opened stream with ``target``: handed over, or relayed to it."""
        if self.address.passes_fds:
            with contextlib.suppress(OSError):
                await wire.send(OpenOk(), (target.fileno(),))
            target.close()
            wire.close()
            return
        await wire.send(OpenOk())
        await relay_stream(proto, wire.sock, target, self.stream_counters)

    async def _refuse(self, wire: WireSocket, code: ErrorCode, message: str) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            await wire.send(Error.clipped(code, message))
        wire.close()

    # -- streams the agent asks for (VM -> host) -------------------------------------------

    async def _serve_attach(self, wire: WireSocket, attach: Attach) -> None:
        future = self.pending.take(attach.stream_id)
        if future is None or future.done():
            await self._refuse(
                wire, ErrorCode.UNKNOWN_STREAM, f"no stream {attach.stream_id} was requested"
            )
            return
        handed = wire.take_fd()
        try:
            await wire.send(OpenOk())
        except (ProtocolError, OSError) as exc:
            future.set_exception(TargetError(ErrorCode.PEER_CLOSED, str(exc)))
            wire.close()
            return
        if handed is not None:
            wire.close()
            future.set_result(handed)
        else:
            future.set_result(wire.sock)

    async def _request_stream(self, proto: Proto, host: str, port: int) -> socket.socket:
        wire = self.control
        if wire is None:
            raise TargetError(ErrorCode.PEER_CLOSED, "the daemon is not connected")
        if self.address.passes_fds:
            return await self.requests.open(wire, proto, host, port)
        stream_id, future = self.pending.new()
        try:
            await wire.send(StreamRequest(stream_id, proto, host, port))
            async with asyncio.timeout(STREAM_REQUEST_TIMEOUT):
                sock = await future
        except (ProtocolError, OSError, TimeoutError) as exc:
            raise TargetError(ErrorCode.TIMEOUT, f"stream to host {proto} {port}: {exc}") from None
        finally:
            self.pending.forget(stream_id)
        assert sock is not None
        return sock


def _accept_failed(exc: OSError) -> None:
    log.warning("accept failed: %s", exc)
