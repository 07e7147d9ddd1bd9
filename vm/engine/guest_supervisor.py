"""The daemon's supervision of a dockerd that runs inside a QEMU guest.

The same supervisor as for the namespace VM (start, wait for ``/_ping``, watch, restart with
back-off, state in ``hostnet status``); only the process hooks differ. dockerd is started and
stopped by the guest's engine helper (vm/engine/guest_engine.py) over the VM's engine port,
and the host's docker.sock (mode 0600, in hostnet's runtime folder) is a listener of the
daemon's (vm/engine/api_relay.py) that carries each connection to dockerd's socket in the
guest over that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from vm.backends.protocol import GuestEngineLink
from vm.engine.api_relay import ApiSocketRelay
from vm.engine.guest_engine import API_REQUEST, START_REQUEST, STOP_REQUEST
from vm.engine.layout import EngineLayout
from vm.engine.state import EngineStatus
from vm.engine.supervisor import STOP_TIMEOUT, EngineRefused, EngineSupervisor
from vm.transport.mux_link import close_host_link, host_link

log = logging.getLogger(__name__)

LINK_TIMEOUT = 30.0
"""How long a request waits for the guest's engine helper (it starts with the guest)."""


@dataclass(frozen=True)
class GuestEngineTarget:
    """An engine inside the guest that ``link`` reaches."""

    link: GuestEngineLink

    def supervisor(
        self, layout: EngineLayout, on_change: Callable[[EngineStatus], None]
    ) -> EngineSupervisor:
        return GuestEngineSupervisor(layout, self, on_change)


class GuestEngineSupervisor(EngineSupervisor):
    def __init__(
        self,
        layout: EngineLayout,
        target: GuestEngineTarget,
        on_change: Callable[[EngineStatus], None] = lambda status: None,
    ) -> None:
        super().__init__(layout, target, on_change, log_file=target.link.log_file)
        self.serial_socket = target.link.serial_socket
        self._api = ApiSocketRelay(layout.api_socket, self._open_api)
        self._watcher: asyncio.Task[None] | None = None
        self._guest_pid = 0
        self._ended = ""

    async def stop(self) -> None:
        await super().stop()
        self._api.close()
        await close_host_link(self.serial_socket)

    # -- the guest's engine helper ----------------------------------------------------------

    async def _request(self, header: bytes) -> socket.socket:
        try:
            return await host_link(self.serial_socket).open_socket(header, LINK_TIMEOUT)
        except ConnectionError as exc:
            raise EngineRefused(f"the guest's engine helper does not answer: {exc}") from None

    async def _prepare(self) -> None:
        """The host's docker.sock, relayed to the guest's (made once)."""
        self._api.start()

    async def _open_api(self) -> socket.socket:
        return await host_link(self.serial_socket).open_socket(API_REQUEST, LINK_TIMEOUT)

    async def _launch(self, driver: str) -> bool:
        """Ask the guest to start dockerd; watch the answer stream for its exit."""
        options = json.dumps({"storage_driver": driver}).encode()
        stream = await self._request(START_REQUEST + options)
        reader, writer = await asyncio.open_unix_connection(sock=stream)
        first = (await reader.readline()).decode(errors="replace").strip()
        if not first.startswith("running "):
            writer.close()
            raise EngineRefused(first.removeprefix("error ") or "the guest's engine helper hung up")
        self._guest_pid = int(first.split()[1])
        self._ended = ""
        self._watcher = asyncio.get_running_loop().create_task(self._watch_exit(reader, writer))
        return False

    async def _watch_exit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode(errors="replace").strip()
        except OSError as exc:
            line = f"the VM's engine port closed ({exc})"
        finally:
            writer.close()
        self._ended = line.removeprefix("exited ") or "the VM's engine port closed"

    def _alive(self) -> bool:
        return self._guest_pid != 0 and not self._ended

    def _pid(self) -> int:
        return self._guest_pid

    def _exit_text(self) -> str:
        return self._ended or "exited"

    async def _stop_dockerd(self) -> None:
        if self._alive():
            with contextlib.suppress(EngineRefused, OSError):
                stream = await self._request(STOP_REQUEST)
                reader, writer = await asyncio.open_unix_connection(sock=stream)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.readline(), STOP_TIMEOUT + 5)
                writer.close()
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self._guest_pid = 0

    def _release_mounts(self) -> None:
        """dockerd's mounts are the guest's: they go with it."""
