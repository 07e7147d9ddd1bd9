"""Both ends of the virtio-serial multiplexer: the host dialling QEMU's chardev socket, and
the guest holding its ``/dev/vportNpM``. Each keeps one :class:`MuxSession` at a time and
starts a fresh one (new SETTINGS, no old streams) whenever the byte stream starts over.

Host (daemon): QEMU is the server of the chardev socket and takes one client. The link
connects, runs a session until the socket drops (QEMU exited or the VM rebooted) or the
peer breaks the protocol, then reconnects with backoff. ``open_socket()`` waits for a live
session. One link per socket path per event loop (:func:`host_link`).

Guest (agent): the port is opened once, non-blocking. While no host client is connected,
read() returns EOF and write() would block; a session starts on the first read that is not
EOF and ends at the next EOF (the host went away); then the link polls for the next host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from proxy.mux import MuxError
from vm.transport.mux_liveness import Liveness
from vm.transport.mux_session import MuxSession, StreamHandler
from vm.virtio_port import find_virtio_port

log = logging.getLogger(__name__)

FIRST_RETRY = 0.05
MAX_RETRY = 1.0
HOST_POLL = 0.1  # how often the guest looks for a host while none is connected


class HostMuxLink:
    """The daemon's end: a reconnecting client of QEMU's chardev unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = asyncio.get_running_loop()
        self.session: MuxSession | None = None
        self.sessions = 0  # how many sessions ran (a reconnect starts a new one)
        self.liveness = Liveness()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        delay = FIRST_RETRY
        while not self._closing:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await self.loop.sock_connect(sock, self.path)
            except OSError:
                sock.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            delay = FIRST_RETRY
            session = MuxSession(sock.fileno(), "daemon")
            self.session = session
            self.sessions += 1
            self._wake()
            watchdog = self.loop.create_task(self.liveness.watch(session))
            try:
                session.start()
                await session.finished.wait()
                log.info("virtio-serial link %s: %s; reconnecting", self.path, session.reason)
            finally:
                watchdog.cancel()
                session.close("the link closed")
                if self.session is session:
                    self.session = None
                sock.close()
                self._wake()
            await asyncio.sleep(FIRST_RETRY)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_ready(self, timeout: float) -> MuxSession:
        """The live session once the guest answered (its SETTINGS arrived)."""
        self.start()
        async with asyncio.timeout(timeout):
            while True:
                session = self.session
                if session is not None and session.alive:
                    waiter = asyncio.ensure_future(session.peer_ready.wait())
                    changed = asyncio.ensure_future(self._changed.wait())
                    try:
                        await asyncio.wait([waiter, changed], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        changed.cancel()
                    if session.peer_ready.is_set() and session.alive:
                        return session
                else:
                    await self._changed.wait()

    async def open_socket(self, header: bytes = b"", timeout: float = 5.0) -> socket.socket:
        """A new stream to the guest, as the local end of a socketpair."""
        try:
            session = await self.wait_ready(timeout)
        except TimeoutError:
            raise ConnectionRefusedError(
                f"the VM's agent does not answer on virtio-serial {self.path} "
                f"(within {timeout:.0f}s): is the VM running and its agent started?"
            ) from None
        try:
            return session.open_socket(header)
        except MuxError as exc:
            raise ConnectionRefusedError(f"virtio-serial {self.path}: {exc}") from None

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.session is not None:
            self.session.close("the link closed")
            self.session = None


_host_links: dict[str, HostMuxLink] = {}


def host_link(path: str) -> HostMuxLink:
    """The one link to ``path`` in this event loop, started on first use."""
    link = _host_links.get(path)
    if link is None or link.loop is not asyncio.get_running_loop() or link._closing:
        link = HostMuxLink(path)
        _host_links[path] = link
    link.start()
    return link


def guest_silence(path: str) -> str | None:
    """Why the guest behind ``path`` counts as hung (no answer to pings), or None."""
    link = _host_links.get(path)
    return link.liveness.silent if link is not None else None


async def close_host_link(path: str) -> None:
    link = _host_links.pop(path, None)
    if link is not None and link.loop is asyncio.get_running_loop():
        await link.close()


class GuestMuxLink:
    """The agent's end: the named virtio-serial port, serving the streams the host opens."""

    def __init__(self, port: str, on_stream: StreamHandler) -> None:
        self.port = port
        self.on_stream = on_stream
        self.device: Path | None = None
        self.fd = -1
        self.session: MuxSession | None = None
        self.sessions = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, find_timeout: float = 10.0) -> None:
        """Open the port (a device path, or a port name looked up in sysfs) and serve it."""
        if self.port.startswith("/"):
            self.device = Path(self.port)
        else:
            self.device = await asyncio.to_thread(find_virtio_port, self.port, timeout=find_timeout)
        try:
            self.fd = os.open(self.device, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot open virtio-serial port {self.device}: {exc.strerror} "
                "(another program may hold it: a port opens once)",
            ) from None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _wait_for_host(self) -> bytes:
        """Poll until a host is connected; the first bytes it sent (maybe none)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return b""  # connected, nothing sent yet
            if data:
                return data
            await asyncio.sleep(HOST_POLL)

    async def _run(self) -> None:
        while True:
            first = await self._wait_for_host()
            session = MuxSession(self.fd, "agent", self.on_stream)
            self.session = session
            self.sessions += 1
            try:
                session.start(first)
                await session.finished.wait()
                log.info("virtio-serial session ended: %s", session.reason)
            finally:
                session.close("the link closed")
                self.session = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.session is not None:
            self.session.close("the agent stopped")
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
