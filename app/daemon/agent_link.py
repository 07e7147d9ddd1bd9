"""The daemon's control connection to the agent: connect, authenticate, reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from proxy.listeners import Proto
from proxy.wire import (
    Error,
    ErrorCode,
    Listener,
    Listeners,
    ProtocolError,
    Request,
    Response,
    StreamFailed,
    StreamRequest,
)
from proxy.wire.bounded_json import JsonValue
from vm.transport.address import TransportAddress
from vm.transport.control_requests import RequestTracker
from vm.transport.targets import TargetError
from vm.transport.wire_socket import WireSocket, connect_wire

log = logging.getLogger(__name__)

FIRST_RETRY = 0.05
MAX_RETRY = 1.0
REQUEST_TIMEOUT = 10.0

ListenerKey = tuple[Proto, str, int]


class AgentLink:
    """Keeps one authenticated control connection to the agent and reports what it says.

    ``on_vm_listeners`` gets the VM's whole listener set after every change (empty while
    the agent is away); ``on_stream_request`` serves the agent's StreamRequests;
    ``on_connected`` is called after each (re)connection, to send the host's listeners.
    """

    def __init__(
        self,
        address: TransportAddress,
        secret: bytes,
        *,
        on_vm_listeners: Callable[[set[ListenerKey]], Awaitable[None]],
        on_stream_request: Callable[[StreamRequest], None],
        on_connected: Callable[[], Awaitable[None]],
        on_request: Callable[[WireSocket, Request], None] = lambda wire, request: None,
        on_state: Callable[[str, str], None] = lambda state, detail: None,
    ) -> None:
        self.address = address
        self.secret = secret
        self.on_vm_listeners = on_vm_listeners
        self.on_stream_request = on_stream_request
        self.on_connected = on_connected
        self.on_request = on_request
        self.on_state = on_state
        self.vm_listeners: set[ListenerKey] = set()
        self.wire: WireSocket | None = None
        self.state = "connecting"
        self.detail = ""
        self.requests = RequestTracker()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self.wire is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is not None:
            # Cancel until it ends: a cancellation can be lost in a race with a connect that
            # finishes at the same moment, and a stop must not hang on that.
            while not task.done():
                task.cancel()
                if self.wire is not None:
                    self.wire.close()
                await asyncio.wait([task], timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if self.wire is not None:
            self.wire.close()
            self.wire = None

    def _set_state(self, state: str, detail: str = "") -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.on_state(state, detail)

    async def _run(self) -> None:
        delay = FIRST_RETRY
        while not self._stopping:
            try:
                sock = await self.address.connect()
                wire = await connect_wire(sock, "daemon", "control", self.secret)
            except ProtocolError as exc:
                # A wrong secret or version will not fix itself quickly: say so, retry slowly.
                self._set_state("refused", exc.message)
                await asyncio.sleep(MAX_RETRY)
                continue
            except (OSError, TimeoutError) as exc:
                self._set_state("connecting", f"agent not reachable at {self.address}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            delay = FIRST_RETRY
            self.wire = wire
            self._set_state("connected")
            try:
                await self.on_connected()
                await self._serve(wire)
            except (ProtocolError, OSError) as exc:
                log.info("agent control connection lost: %s", exc)
            finally:
                self.wire = None
                wire.close()
                self.requests.fail_all("the agent went away")
                self._set_state("connecting", "the agent went away; reconnecting")
                self.vm_listeners = set()
                await self.on_vm_listeners(set())

    async def _serve(self, wire: WireSocket) -> None:
        while True:
            event = await wire.next_event()
            if isinstance(event, Listeners):
                for item in event.removed:
                    self.vm_listeners.discard((item.proto, item.host, item.port))
                for item in event.added:
                    self.vm_listeners.add((item.proto, item.host, item.port))
                await self.on_vm_listeners(set(self.vm_listeners))
            elif isinstance(event, StreamRequest):
                self.on_stream_request(event)
            elif isinstance(event, Response):
                handed = wire.take_fd() if self.requests.expects_socket(event) else None
                self.requests.resolve(event, handed)
            elif isinstance(event, Request):
                self.on_request(wire, event)
            elif isinstance(event, Error):
                raise ProtocolError(event.code, event.message, remote=True)

    async def send_listeners(self, added: list[Listener], removed: list[Listener]) -> None:
        wire = self.wire
        if wire is None:
            return
        with contextlib.suppress(ProtocolError, OSError):
            for message in Listeners.batches(added, removed):
                await wire.send(message)

    async def stream_failed(self, failure: StreamFailed) -> None:
        wire = self.wire
        if wire is not None:
            with contextlib.suppress(ProtocolError, OSError):
                await wire.send(failure)

    async def request(self, method: str, params: dict[str, JsonValue] | None = None) -> Response:
        wire = self.wire
        if wire is None:
            raise ConnectionError("the agent is not connected")
        response, handed = await self.requests.call(wire, method, params or {})
        if handed is not None:
            handed.close()
        return response

    async def open_socket(self, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket connected to ``proto host:port`` in the VM, handed over by the agent."""
        wire = self.wire
        if wire is None:
            raise TargetError(ErrorCode.PEER_CLOSED, "the agent is not connected")
        return await self.requests.open(wire, proto, host, port)
