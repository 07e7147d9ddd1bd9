"""The engine an attached VM runs itself: hostnet relays to it and watches it, and never
starts or stops it (it belongs to the VM).

The host's docker.sock (mode 0600, in hostnet's runtime folder, vm/engine/api_relay.py)
relays each connection through the VM's agent, as an ``OpenEngine`` stream over whatever
transport reaches it (vm/transport/streams.py); the agent connects that stream to the VM's
engine socket and to nothing else (vm/agent/engine_socket.py). Every ``POLL`` seconds the
engine's ``/info`` is asked the same way: the state is ``running`` (owner ``vm``) while it
answers, ``none`` while the agent finds no engine, ``unavailable`` while the agent cannot
be reached. While there is no engine the socket stays and answers each request with the
reason, as an HTTP error the docker CLI prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.errors import HostnetError
from proxy.wire import ErrorCode, ProtocolError
from vm.backends.protocol import VmEngineLink
from vm.engine.api_relay import ApiSocketRelay
from vm.engine.layout import EngineLayout
from vm.engine.ping import engine_info
from vm.engine.state import EngineOwner, EngineState, EngineStatus
from vm.transport.streams import StreamRefused, open_engine_stream

log = logging.getLogger(__name__)

POLL = 2.0
OWN = "the VM's own engine: hostnet neither starts nor stops it"
OLD_AGENT = (ErrorCode.UNKNOWN_TYPE, ErrorCode.WRONG_STATE, ErrorCode.BAD_MESSAGE)


class VmEngineUnreachable(HostnetError, ConnectionError):
    """The agent did not connect a stream to its VM's engine; ``code`` says how it refused
    (NOT_LISTENING: the VM runs no engine)."""

    def __init__(self, code: ErrorCode, problem: str, fix: str = "") -> None:
        HostnetError.__init__(self, problem, fix)
        self.code = code


@dataclass(frozen=True)
class VmOwnEngineTarget:
    """The engine of the VM that ``link``'s agent serves."""

    link: VmEngineLink

    def supervisor(
        self, layout: EngineLayout, on_change: Callable[[EngineStatus], None]
    ) -> VmOwnEngine:
        return VmOwnEngine(layout, self, on_change)


class VmOwnEngine:
    """Relays the host's docker.sock to the attached VM's engine and reports its state."""

    def __init__(
        self,
        layout: EngineLayout,
        target: VmOwnEngineTarget,
        on_change: Callable[[EngineStatus], None] = lambda status: None,
    ) -> None:
        self.layout = layout
        self.target = target
        self.on_change = on_change
        self.status = EngineStatus(
            EngineState.STARTING,
            "looking for the VM's own engine",
            layout.docker_host,
            owner=EngineOwner.VM,
        )
        self._api = ApiSocketRelay(layout.api_socket, self.open_api)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._api.start()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop relaying: the VM's engine and its containers keep running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._api.close()
        self._set(replace(self.status, state=EngineState.OFF, detail="", storage_driver=""))

    async def open_api(self) -> socket.socket:
        """A stream to the VM's engine API, through its agent (VmEngineUnreachable or
        another ConnectionError says why)."""
        link = self.target.link
        try:
            return await open_engine_stream(link.address, link.secret)
        except StreamRefused as exc:
            if exc.code in OLD_AGENT:
                raise VmEngineUnreachable(
                    exc.code,
                    "the VM's agent cannot reach its engine (it predates OpenEngine streams)",
                    "update the agent in the VM",
                ) from None
            raise VmEngineUnreachable(exc.code, exc.reason) from None
        except ProtocolError as exc:
            raise VmEngineUnreachable(
                exc.code, f"the VM's agent refused the stream: {exc.message}"
            ) from None

    async def _watch(self) -> None:
        while True:
            self._set(await self._look())
            await asyncio.sleep(POLL)

    async def _look(self) -> EngineStatus:
        try:
            info = await engine_info(await self.open_api())
        except VmEngineUnreachable as exc:
            state = EngineState.NONE if exc.code is ErrorCode.NOT_LISTENING else None
            return self._status(state or EngineState.UNAVAILABLE, str(exc))
        except (OSError, TimeoutError) as exc:
            return self._status(
                EngineState.UNAVAILABLE,
                f"cannot reach the VM's engine through its agent at "
                f"{self.target.link.address}: {exc}",
            )
        version = str(info.get("ServerVersion", "?"))
        return self._status(
            EngineState.RUNNING,
            f"{OWN} (Docker Engine {version})",
            storage_driver=str(info.get("Driver", "")),
        )

    def _status(self, state: EngineState, detail: str, storage_driver: str = "") -> EngineStatus:
        return replace(self.status, state=state, detail=detail, storage_driver=storage_driver)

    def _set(self, status: EngineStatus) -> None:
        if status != self.status:
            if status.state is not self.status.state:
                log.info("the VM's own engine: %s %s", status.state, status.detail)
            self.status = status
            self.on_change(status)
