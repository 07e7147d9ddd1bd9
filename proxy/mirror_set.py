"""Keeping local mirrors in step with the other side's listeners.

Given the other side's listeners, a :class:`MirrorSet` decides which local mirrors should
exist (one per protocol, port and local bind address), starts and stops them, and keeps a
visible state for every port: active, or why not (conflict, privileged, excluded, the
local side's own listener wins). Ports that failed are retried until the cause clears.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from proxy.addresses import Endpoint
from proxy.counters import ForwardCounters
from proxy.listeners import Proto
from proxy.states import MirrorPhase
from proxy.tcp_forwarder import ListenError, TcpForwarder
from proxy.udp_forwarder import UdpForwarder

log = logging.getLogger(__name__)

RETRY_INTERVAL = 1.0
DRAIN_CHECK_INTERVAL = 1.0
"""Seconds between checks whether a draining UDP mirror's flows have all gone idle."""
CLOSED_GRACE = 2.0
"""Seconds a closed mirror's inode stays excluded from discovery (longer than any scan)."""
LOOPBACK_BINDS = ("127.0.0.1", "::1")
ALL_INTERFACE_BINDS = ("0.0.0.0", "::")
MIRRORABLE_HOSTS = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1"})

Engine = TcpForwarder | UdpForwarder
MakeEngine = Callable[[Proto, Endpoint, str], Engine]
"""Builds a (not yet started) forwarder for ``proto``, listening on ``bind``, relaying to
the other side's address ``remote_host`` (the port is the bind's port)."""


@dataclass(frozen=True, order=True)
class MirrorKey:
    proto: Proto
    port: int
    bind: str


@dataclass
class MirrorState:
    """What one mirror is doing; ``state`` is active, conflict, privileged, excluded,
    shadowed (the local side's own listener wins) or error, with ``reason`` unless active."""

    key: MirrorKey
    remote_host: str
    state: MirrorPhase = MirrorPhase.PENDING
    reason: str = ""
    engine: Engine | None = field(default=None, repr=False)

    @property
    def counters(self) -> ForwardCounters:
        return self.engine.counters if self.engine is not None else ForwardCounters()

    def as_dict(self) -> dict[str, object]:
        return {
            "proto": self.key.proto,
            "port": self.key.port,
            "bind": self.key.bind,
            "remote_host": self.remote_host,
            "state": self.state,
            "reason": self.reason,
            "counters": self.counters.as_dict(),
        }


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pick_remote_host(bind: str, remote_hosts: Iterable[str]) -> str:
    """The other side's address to reach for a mirror on ``bind``: same family first,
    a wildcard reached through that family's loopback."""
    hosts = sorted(remote_hosts)
    same = [h for h in hosts if _family_of(h) == _family_of(bind)] or hosts
    host = same[0]
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class MirrorSet:
    """The local mirrors of the other side's listeners, reconciled on every change."""

    def __init__(
        self,
        make_engine: MakeEngine,
        *,
        binds: tuple[str, ...] = LOOPBACK_BINDS,
        excluded_ports: Callable[[int], bool] = lambda port: False,
        local_ports: Callable[[Proto, int], bool] = lambda proto, port: False,
        on_change: Callable[[MirrorState], None] = lambda state: None,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.make_engine = make_engine
        self.binds = binds
        self.excluded_ports = excluded_ports
        self.local_ports = local_ports
        self.on_change = on_change
        self.retry_interval = retry_interval
        self.mirrors: dict[MirrorKey, MirrorState] = {}
        self._remote: dict[tuple[Proto, int], set[str]] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._recently_closed: dict[int, float] = {}
        # UDP mirrors whose listener went away while flows still ran through them: a UDP
        # server often connect()s its socket to its first client (iperf3 does), and then no
        # longer listens. They serve those flows until all are idle, then stop.
        self._draining: dict[MirrorKey, UdpForwarder] = {}
        self._drain_check: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._held_back: dict[tuple[Proto, int], float] = {}

    def hold_back(self, proto: Proto, port: int, seconds: float) -> None:
        """Start no mirror on ``proto`` ``port`` for ``seconds``, or until ``let_start``: the
        hold is sending the port's first packets through the kernel path's rules, and a
        mirror that discovery made meanwhile would take the packets that follow them."""
        self._held_back[(proto, port)] = time.monotonic() + seconds

    def let_start(self, proto: Proto, port: int) -> None:
        self._held_back.pop((proto, port), None)

    def _is_held_back(self, proto: Proto, port: int) -> bool:
        until = self._held_back.get((proto, port))
        if until is None:
            return False
        if until < time.monotonic():
            del self._held_back[(proto, port)]
            return False
        return True

    def own_inodes(self) -> set[int]:
        """Inodes of the mirrors' listening sockets: discovery leaves these out.

        Mirrors closed in the last CLOSED_GRACE seconds count too: a scan that started
        before the close can still hold the socket, and must not report it as a program's
        listener (the other side would mirror our own mirror back).
        """
        inodes = set()
        engines = [m.engine for m in self.mirrors.values() if m.engine is not None]
        for engine in [*engines, *self._draining.values()]:
            try:
                inodes.add(engine.socket_inode)
            except (OSError, AssertionError):
                pass
        if self._recently_closed:
            now = time.monotonic()
            for inode, until in list(self._recently_closed.items()):
                if until < now:
                    del self._recently_closed[inode]
                else:
                    inodes.add(inode)
        return inodes

    def states(self) -> list[MirrorState]:
        return [self.mirrors[key] for key in sorted(self.mirrors)]

    async def set_remote(self, listeners: Iterable[tuple[Proto, str, int]]) -> None:
        """Replace the other side's listeners with ``listeners`` and reconcile."""
        remote: dict[tuple[Proto, int], set[str]] = {}
        for proto, host, port in listeners:
            if host in MIRRORABLE_HOSTS:
                remote.setdefault((proto, port), set()).add(host)
        self._remote = remote
        await self.reconcile()

    async def set_binds(self, binds: tuple[str, ...]) -> None:
        if binds != self.binds:
            self.binds = binds
            await self.stop_all()
            self._closed = False
            await self.reconcile()

    async def reconcile(self) -> None:
        async with self._lock:
            if self._closed:
                return
            wanted = {
                MirrorKey(proto, port, bind): pick_remote_host(bind, hosts)
                for (proto, port), hosts in self._remote.items()
                for bind in self.binds
            }
            for key in [k for k in self.mirrors if k not in wanted]:
                await self._remove(key)
            for key, remote_host in sorted(wanted.items()):
                mirror = self.mirrors.get(key)
                if mirror is None:
                    mirror = self.mirrors[key] = MirrorState(key, remote_host)
                elif mirror.remote_host != remote_host:
                    # The other side now listens on a better address (a VM listener on ::
                    # joined 0.0.0.0): restart the mirror towards it, not just stop it.
                    await self.stop_engine(mirror)
                    mirror.remote_host = remote_host
                    if mirror.state == MirrorPhase.ACTIVE:
                        mirror.state = MirrorPhase.PENDING
                if mirror.state != MirrorPhase.ACTIVE:
                    await self._try_start(mirror)
            self._schedule_retry()

    async def _try_start(self, mirror: MirrorState) -> None:
        key = mirror.key
        if self.excluded_ports(key.port):
            self._set(
                mirror, MirrorPhase.EXCLUDED, f"port {key.port} is in the excluded ports setting"
            )
            return
        if self.local_ports(key.proto, key.port):
            self._set(
                mirror, MirrorPhase.SHADOWED, f"a local program already listens on port {key.port}"
            )
            return
        if self._is_held_back(key.proto, key.port):
            return  # pending; the retry timer (or the hold, sooner) starts it
        draining = self._draining.pop(key, None)
        if draining is not None:  # listening again: the draining mirror carries on
            mirror.engine = draining
            self._set(mirror, MirrorPhase.ACTIVE, "")
            return
        engine = self.make_engine(key.proto, Endpoint(key.bind, key.port), mirror.remote_host)
        try:
            await engine.start()
        except ListenError as exc:
            if exc.errno == errno.EADDRINUSE:
                self._set(mirror, MirrorPhase.CONFLICT, str(exc))
            elif exc.errno == errno.EACCES:
                self._set(mirror, MirrorPhase.PRIVILEGED, str(exc))
            else:
                self._set(mirror, MirrorPhase.ERROR, str(exc))
            return
        mirror.engine = engine
        self._set(mirror, MirrorPhase.ACTIVE, "")

    def _set(self, mirror: MirrorState, state: MirrorPhase, reason: str) -> None:
        if (mirror.state, mirror.reason) != (state, reason):
            mirror.state, mirror.reason = state, reason
            self.on_change(mirror)

    async def stop_engine(self, mirror: MirrorState) -> None:
        if mirror.engine is not None:
            engine, mirror.engine = mirror.engine, None
            try:
                self._recently_closed[engine.socket_inode] = time.monotonic() + CLOSED_GRACE
            except (OSError, AssertionError):
                pass
            await engine.stop()

    async def _remove(self, key: MirrorKey) -> None:
        mirror = self.mirrors.pop(key)
        engine = mirror.engine
        if isinstance(engine, UdpForwarder) and engine.flow_count and not self._closed:
            mirror.engine = None
            self._draining[key] = engine
            self._schedule_drain_check()
        await self.stop_engine(mirror)
        mirror.state, mirror.reason = MirrorPhase.REMOVED, ""
        self.on_change(mirror)

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if any(m.state != MirrorPhase.ACTIVE for m in self.mirrors.values()) and not self._closed:
            loop = asyncio.get_running_loop()

            def retry() -> None:
                task = loop.create_task(self.reconcile())
                self._retry_tasks.add(task)
                task.add_done_callback(self._retry_tasks.discard)

            self._retry = loop.call_later(self.retry_interval, retry)

    def _schedule_drain_check(self) -> None:
        if self._drain_check is None:
            loop = asyncio.get_running_loop()
            self._drain_check = loop.call_later(DRAIN_CHECK_INTERVAL, self._check_draining)

    def _check_draining(self) -> None:
        self._drain_check = None
        for key, engine in list(self._draining.items()):
            if not engine.flow_count:
                del self._draining[key]
                self._stop_later(engine)
        if self._draining:
            self._schedule_drain_check()

    def _stop_later(self, engine: UdpForwarder) -> None:
        try:
            self._recently_closed[engine.socket_inode] = time.monotonic() + CLOSED_GRACE
        except (OSError, AssertionError):
            pass
        task = asyncio.get_running_loop().create_task(engine.stop())
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def stop_all(self) -> None:
        """Stop every mirror (connections in flight are reset); nothing is retried."""
        async with self._lock:
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            for key in list(self.mirrors):
                await self._remove(key)
            if self._drain_check is not None:
                self._drain_check.cancel()
                self._drain_check = None
            draining, self._draining = list(self._draining.values()), {}
            for engine in draining:
                await engine.stop()

    async def close(self) -> None:
        self._remote = {}
        await self.stop_all()
