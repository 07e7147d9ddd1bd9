"""The daemon's side of the kernel path: which ports the kernel carries, decided from the
same mirrors that discovery drives, and what each port row then says.

A port is carried by the kernel when its IPv4 user-space mirror is active towards the other
side's IPv4 loopback (or wildcard) listener: VM ports from the daemon's mirrors, host ports
from the agent's mirrors (as reported to the daemon). The mirror stays bound either way: it
reserves the port and carries ``::1``; the NAT rules take IPv4 connections before it sees
them. Anything the kernel path cannot do leaves the proxy carrying the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, fields
from typing import Any

from proxy.counters import ForwardCounters
from proxy.mirror_set import MirrorState, pick_remote_host
from proxy.nat.kernel_path import KernelPath
from proxy.nat.nft import NftError, nft_available
from proxy.nat.ruleset import Direction, NatLink, PortKey, Proto
from proxy.states import MirrorPhase
from vm.backends.protocol import Backend

log = logging.getLogger(__name__)

COUNTERS_INTERVAL = 1.0
ADOPT_GRACE = 3.0
"""Seconds a port is kept carried without a mirror that says so: a killed daemon's ports
after a restart, and a port put in for a held packet before the agent's mirror is seen."""
CARRIED_BINDS = frozenset({"127.0.0.1", "0.0.0.0"})
"""The IPv4 mirrors whose connections the NAT rules can take (``::1`` stays on the proxy)."""


@dataclass
class DataPathChoice:
    """What the setting asked for, what carries ports, and why not the kernel if not."""

    setting: str
    active: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"setting": self.setting, "active": self.active, "detail": self.detail}


def kernel_path_for(setting: str, backend: Backend | None, *, expose_all: bool) -> KernelPath | str:
    """The kernel path for ``backend``'s VM, or the reason there is none."""
    if setting == "proxy":
        return "HostNetworkingDataPath is proxy"
    if os.geteuid() != 0:
        return "the kernel path needs the daemon to run as root; the proxy carries every port"
    link = backend.shared_kernel_link() if backend is not None else None
    if link is None:
        name = backend.name if backend is not None else "no"
        return f"the {name} backend has no kernel link (the namespace VM as root has one)"
    if not nft_available():
        return "nftables is missing (libnftables and nft(8)): install the nftables package"
    nat_link = NatLink(link.host_if, link.vm_if, link.host_ip, link.vm_ip)
    return KernelPath(nat_link, link.netns_path, expose_all=expose_all)


def wanted_ports(
    vm_side: Iterable[MirrorState],
    host_side: Iterable[dict[str, Any]],
    excluded: Callable[[int], bool],
) -> frozenset[PortKey]:
    """The ports the kernel should carry now, from both sides' active IPv4 mirrors."""
    wanted: set[PortKey] = set()
    for mirror in vm_side:
        key = mirror.key
        if (
            mirror.state == MirrorPhase.ACTIVE
            and key.bind in CARRIED_BINDS
            and mirror.remote_host == "127.0.0.1"
            and not excluded(key.port)
        ):
            wanted.add(("to_vm", key.proto, key.port))
    for item in host_side:
        proto, port = item.get("proto"), item.get("port")
        if (
            item.get("state") == MirrorPhase.ACTIVE
            and item.get("bind") == "127.0.0.1"
            and item.get("remote_host") == "127.0.0.1"
            and proto in ("tcp", "udp")
            and isinstance(port, int)
            and not excluded(port)
        ):
            wanted.add(("to_host", proto, port))
    return frozenset(wanted)


def ipv4_mirror_qualifies(hosts: Iterable[str], port: int, excluded: Callable[[int], bool]) -> bool:
    """Whether the 127.0.0.1 mirror of a port the other side listens on at ``hosts`` is one
    the kernel carries (as ``wanted_ports`` decides once the mirror is made)."""
    return pick_remote_host("127.0.0.1", hosts) == "127.0.0.1" and not excluded(port)


class KernelCarrier:
    """Keeps one KernelPath's ports in step with the mirrors, and its counters fresh.

    A mirror that moves only says so (``mirrors_moved``); what the kernel should carry is
    worked out from ``wanted`` once per rules change, when the applying task next wakes. A
    thousand mirrors coming up at once are then a handful of passes over them, not one pass
    per mirror: that was a thousand times two thousand, and it kept the event loop from the
    control API for seconds.

    Counters are read (one ``nft`` run) every COUNTERS_INTERVAL only while ``watched`` says
    someone follows them (the app's live table); otherwise a reader asks for them with
    ``refresh_if_stale``, so an unwatched daemon spends nothing on them.
    """

    def __init__(
        self,
        path: KernelPath,
        wanted: Callable[[], frozenset[PortKey]],
        watched: Callable[[], bool] = lambda: True,
    ) -> None:
        self.path = path
        self.error = ""
        self._wanted = wanted
        self._watched = watched
        self._counters_read_at = -COUNTERS_INTERVAL
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._adopted: frozenset[PortKey] = frozenset()
        self._adopt_until = 0.0
        self._anticipated: dict[PortKey, float] = {}

    async def start(self) -> None:
        """Make both tables (replacing a killed daemon's, whose ports are kept for
        ADOPT_GRACE seconds while discovery catches up) and start following the mirrors."""
        await self.path.start()
        self._adopted = self.path.carried
        if self._adopted:
            loop = asyncio.get_running_loop()
            self._adopt_until = loop.time() + ADOPT_GRACE
            loop.call_later(ADOPT_GRACE, self._changed.set)
        self._spawn(self._apply_changes())
        self._spawn(self._refresh_counters())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def restart(self) -> None:
        """The VM's namespace was made anew: both tables again, then the ports. A failure
        leaves the proxy carrying, and is shown in the status."""
        try:
            await self.path.start()
        except NftError as exc:
            self.error = str(exc)
            log.warning("kernel path: remaking the rules failed: %s", exc)
            return
        self._changed.set()

    async def apply_now(self) -> None:
        """Carry what the mirrors want before returning (a setting that takes ports away)."""
        try:
            await self.path.set_ports(self._all_wanted())
        except NftError as exc:
            self.error = str(exc)
            log.warning("kernel path: %s", exc)

    def mirrors_moved(self) -> None:
        """A mirror changed state, or the other side's mirrors did: look again soon."""
        self._changed.set()

    async def carry_now(self, key: PortKey) -> bool:
        """Carry ``key`` before returning, for a held first packet that waits for it; True
        if the rules carry it now. It stays carried for ADOPT_GRACE even if no mirror says
        so yet (the agent's mirrors are seen by polling), then follows the mirrors again."""
        loop = asyncio.get_running_loop()
        self._anticipated[key] = loop.time() + ADOPT_GRACE
        loop.call_later(ADOPT_GRACE, self._changed.set)
        try:
            await self.path.set_ports(self._all_wanted())
        except NftError as exc:
            self.error = str(exc)
            log.warning("kernel path: %s", exc)
        return key in self.path.carried

    def _all_wanted(self) -> frozenset[PortKey]:
        """What the mirrors want, with a killed daemon's ports and the held packets' ports
        while their grace lasts."""
        now = asyncio.get_running_loop().time()
        wanted = set(self._wanted())
        if now < self._adopt_until:
            wanted |= self._adopted  # a killed daemon's ports, until discovery catches up
        for key, until in list(self._anticipated.items()):
            if now < until:
                wanted.add(key)
            else:
                del self._anticipated[key]
        return frozenset(wanted)

    async def _apply_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.path.set_ports(self._all_wanted())
                self.error = ""
            except NftError as exc:
                # The proxy mirrors keep carrying; say why, and try again on the next change.
                self.error = str(exc)
                log.warning("kernel path: %s", exc)

    async def _refresh_counters(self) -> None:
        while True:
            await asyncio.sleep(COUNTERS_INTERVAL)
            if self._watched():
                await self.refresh_if_stale()

    async def refresh_if_stale(self) -> None:
        """Read the counters again unless they were read within COUNTERS_INTERVAL."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._counters_read_at < COUNTERS_INTERVAL:
            return
        self._counters_read_at = loop.time()
        with contextlib.suppress(NftError):
            await self.path.refresh_counters()

    def path_of(self, direction: Direction, proto: str, port: int, address: str) -> str:
        """``kernel`` if the rules carry this row's IPv4 connections, else ``proxy``."""
        if address in CARRIED_BINDS and (direction, proto, port) in self.path.carried:
            return "kernel"
        return "proxy"

    def counters(self, direction: Direction, proto: Proto, port: int) -> ForwardCounters | None:
        return self.path.counters((direction, proto, port))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.path.close()
        except NftError as exc:
            log.warning("kernel path: removing the rules failed: %s", exc)


def add_counters(row: dict[str, Any], kernel: ForwardCounters) -> None:
    """Add what the kernel carried to the proxy's counters in a port row."""
    counters = row["counters"]
    for item in fields(ForwardCounters):
        value = getattr(kernel, item.name)
        if isinstance(value, int) and isinstance(counters.get(item.name), int):
            counters[item.name] += value
