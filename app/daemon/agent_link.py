"""The daemon's control connection to the agent: connect, authenticate, reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from proxy.listeners import Proto
from proxy.states import LinkState
from proxy.wire import (
    ErrorCode,
    Listener,
    Listeners,
    ProtocolError,
    Response,
    StreamFailed,
)
from proxy.wire.bounded_json import JsonValue
from vm.peer.control_channel import ControlHandler, serve_control
from vm.transport.address import TransportAddress
from vm.transport.control_requests import RequestTracker
from vm.transport.targets import TargetError
from vm.transport.wire_socket import WireSocket, connect_wire

log = logging.getLogger(__name__)

FIRST_RETRY = 0.05
MAX_RETRY = 1.0
REQUEST_TIMEOUT = 10.0


class AgentLink:
    """Keeps one authenticated control connection to the agent; its messages go to
    ``handler`` (vm/peer/control_channel.py). ``on_connected`` runs after each
    (re)connection (to send the host's listeners), ``on_lost`` after each loss."""

    def __init__(
        self,
        address: TransportAddress,
        secret: bytes,
        handler: ControlHandler,
        *,
        on_connected: Callable[[], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
        on_state: Callable[[LinkState, str], None] = lambda state, detail: None,
    ) -> None:
        self.address = address
        self.secret = secret
        self.handler = handler
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.on_state = on_state
        self.wire: WireSocket | None = None
        self.state = LinkState.CONNECTING
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

    def _set_state(self, state: LinkState, detail: str = "") -> None:
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
                self._set_state(LinkState.REFUSED, exc.message)
                await asyncio.sleep(MAX_RETRY)
                continue
            except (OSError, TimeoutError) as exc:
                self._set_state(
                    LinkState.CONNECTING, f"agent not reachable at {self.address}: {exc}"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            delay = FIRST_RETRY
            self.wire = wire
            self._set_state(LinkState.CONNECTED)
            try:
                await self.on_connected()
                await serve_control(wire, self.handler, self.requests)
            except (ProtocolError, OSError) as exc:
                log.info("agent control connection lost: %s", exc)
            finally:
                self.wire = None
                wire.close()
                self.requests.fail_all("the agent went away")
                self._set_state(LinkState.CONNECTING, "the agent went away; reconnecting")
                await self.on_lost()

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

    async def request(
        self,
        method: str,
        params: dict[str, JsonValue] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Response:
        wire = self.wire
        if wire is None:
            raise ConnectionError("the agent is not connected")
        response, handed = await self.requests.call(wire, method, params or {}, timeout)
        if handed is not None:
            handed.close()
        return response

    async def open_socket(self, proto: Proto, host: str, port: int) -> socket.socket:
        """A socket connected to ``proto host:port`` in the VM, handed over by the agent."""
        wire = self.wire
        if wire is None:
            raise TargetError(ErrorCode.PEER_CLOSED, "the agent is not connected")
        return await self.requests.open(wire, proto, host, port)
