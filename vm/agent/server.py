"""The agent's main object: one per VM, serving the daemon over one transport address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import Any

from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.listener_watcher import ListenerWatcher
from proxy.listeners import Listener, Proto
from proxy.mirror_set import LOOPBACK_BINDS, Engine, MirrorSet
from proxy.wire import (
    Attach,
    Error,
    ErrorCode,
    Listeners,
    Open,
    OpenOk,
    ProtocolError,
    Request,
    Response,
    StreamFailed,
    StreamRequest,
)
from proxy.wire import Listener as WireListener
from vm.agent.commands import CommandError, Commands
from vm.agent.requests import STREAM_REQUEST_TIMEOUT, PendingStreams
from vm.transport.address import TransportAddress
from vm.transport.control_requests import OPEN, RequestTracker, serve_open_request
from vm.transport.mux_link import GuestMuxLink
from vm.transport.stream_engines import stream_engine
from vm.transport.targets import TargetError, connect_target, listening_now, relay_stream
from vm.transport.wire_socket import WireSocket, accept_wire

log = logging.getLogger(__name__)


def to_wire(listeners: frozenset[Listener]) -> list[WireListener]:
    return sorted(
        {WireListener(item.proto, item.host, item.port) for item in listeners},
        key=lambda x: (x.proto, x.host, x.port),
    )


class Agent:
    """Accepts the daemon's connections on ``address`` and does what they ask."""

    def __init__(self, address: TransportAddress, secret: bytes) -> None:
        self.address = address
        self.secret = secret
        self.control: WireSocket | None = None
        self.pending = PendingStreams()
        self.requests = RequestTracker()
        self.stream_counters = ForwardCounters()
        self.host_listeners: set[tuple[Proto, str, int]] = set()
        self.mirrors = MirrorSet(
            self._make_engine, binds=LOOPBACK_BINDS, local_ports=self._vm_listens
        )
        self.watcher = ListenerWatcher(self._on_vm_change, exclude=self.mirrors.own_inodes)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._mux_link: GuestMuxLink | None = None
        self.commands = Commands()
        self._control_lock = asyncio.Lock()
        self.stopped = asyncio.Event()

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.watcher.start()
        if self.address.multiplexed:  # streams arrive over one virtio-serial port
            self._mux_link = GuestMuxLink(self.address.path, self._on_stream_socket)
            await self._mux_link.start()
        else:
            self._listener = self.address.listen()
            loop.add_reader(self._listener.fileno(), self._on_acceptable)
        log.info("agent listening on %s", self.address)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is not None:
            loop.remove_reader(self._listener.fileno())
            self._listener.close()
        if self._mux_link is not None:
            await self._mux_link.close()
        await self.commands.close()
        await self.mirrors.close()
        await self.watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.control is not None:
            self.control.close()
        self.stopped.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_acceptable(self) -> None:
        assert self._listener is not None
        for _ in range(64):
            try:
                sock, _addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._spawn(self._serve_connection(sock))

    def _on_stream_socket(self, sock: socket.socket, _header: bytes) -> None:
        """A stream the daemon opened over the multiplexer: served like an accepted socket."""
        self._spawn(self._serve_connection(sock))

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
        else:
            wire.close()

    # -- control --------------------------------------------------------------------------

    async def _serve_control(self, wire: WireSocket) -> None:
        async with self._control_lock:
            if self.control is not None:  # a reconnecting daemon replaces the old channel
                self.control.close()
            self.control = wire
            for message in Listeners.batches(to_wire(self.watcher.current), []):
                await wire.send(message)
        try:
            while True:
                event = await wire.next_event()
                if isinstance(event, Listeners):
                    await self._on_host_listeners(event)
                elif isinstance(event, StreamFailed):
                    self.pending.fail(event.stream_id, event.code, event.message)
                elif isinstance(event, Request) and event.method == OPEN:
                    self._spawn(self._serve_open_request(wire, event))
                elif isinstance(event, Request):
                    self._spawn(self._answer_on(wire, event))  # exec may take seconds
                elif isinstance(event, Response):
                    handed = wire.take_fd() if self.requests.expects_socket(event) else None
                    self.requests.resolve(event, handed)
                elif isinstance(event, Error):
                    break
        except (ProtocolError, OSError) as exc:
            log.info("control connection ended: %s", exc)
        finally:
            if self.control is wire:
                self.control = None
                wire.close()
                self.pending.fail_all("the daemon went away")
                self.requests.fail_all("the daemon went away")
                # Without a daemon there is no host to reach: take the host's mirrors down.
                self.host_listeners.clear()
                await self.mirrors.set_remote([])

    async def _on_host_listeners(self, change: Listeners) -> None:
        for item in change.removed:
            self.host_listeners.discard((item.proto, item.host, item.port))
        for item in change.added:
            self.host_listeners.add((item.proto, item.host, item.port))
        await self.mirrors.set_remote(self.host_listeners)

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
        if request.method == "listeners":
            return Response(request.id, True, [str(item) for item in sorted(self.watcher.current)])
        return Response(request.id, False, f"unknown method {request.method!r}")

    def _on_vm_change(self, added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        self._spawn(self._report(added, removed))

    async def _report(self, added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        still = {(i.proto, i.host, i.port) for i in self.watcher.current}
        gone = frozenset(i for i in removed if (i.proto, i.host, i.port) not in still)
        wire = self.control
        if wire is not None:
            with contextlib.suppress(ProtocolError, OSError):
                for message in Listeners.batches(to_wire(added), to_wire(gone)):
                    await wire.send(message)
        await self.mirrors.reconcile()  # a VM listener may now shadow a host mirror

    def _vm_listens(self, proto: Proto, port: int) -> bool:
        return any(i.proto == proto and i.port == port for i in self.watcher.current)

    # -- streams the daemon opens (host -> VM) ---------------------------------------------

    async def _serve_open(self, wire: WireSocket, request: Open) -> None:
        if not listening_now(self.watcher.current, request.proto, request.host, request.port):
            await self._refuse(
                wire,
                ErrorCode.NOT_LISTENING,
                f"nothing listens on {request.proto} port {request.port} "
                f"at {request.host} in the VM",
            )
            return
        try:
            target = await connect_target(request.proto, request.host, request.port)
        except TargetError as exc:
            await self._refuse(wire, exc.code, str(exc))
            return
        if self.address.passes_fds:
            with contextlib.suppress(OSError):
                await wire.send(OpenOk(), (target.fileno(),))
            target.close()
            wire.close()
            return
        await wire.send(OpenOk())
        await relay_stream(request.proto, wire.sock, target, self.stream_counters)

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

    async def _serve_open_request(self, wire: WireSocket, request: Request) -> None:
        """The daemon asks for a VM port (unix transport): connect it, hand it over."""
        await serve_open_request(wire, request, self.watcher.current, "in the VM")

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

    def _make_engine(self, proto: Proto, bind: Endpoint, remote_host: str) -> Engine:
        port = bind.port

        async def open_socket(proto: Proto) -> socket.socket:
            return await self._request_stream(proto, remote_host, port)

        return stream_engine(proto, bind, open_socket)
