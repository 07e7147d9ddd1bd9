"""One VM's kernel path: its two tables, the ports in them, their counters, their removal.

The daemon owns one :class:`KernelPath` per VM while host networking is on. It says which
ports the kernel should carry (``set_ports``), in both directions, exactly when the
user-space mirrors for them are up; the mirrors stay bound either way (they reserve the
port and carry ``::1``). Applying is serialised: the newest wanted set wins, and what is
applied is always what ``carried`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from proxy.counters import ForwardCounters
from proxy.nat import ruleset
from proxy.nat.nft import NftError, interface_exists, run_nft, run_nft_async, write_sysctl
from proxy.nat.ruleset import NatLink, PortKey

log = logging.getLogger(__name__)


class KernelPath:
    """The kernel path of one VM, whose namespace is ``vm_netns`` (a path setns can enter)."""

    def __init__(
        self,
        link: NatLink,
        vm_netns: str,
        *,
        expose_all: bool = False,
        host_netns: str | None = None,
    ) -> None:
        self.link = link
        self.vm_netns = vm_netns
        self.host_netns = host_netns  # None: this process's namespace (tests pass another)
        self.expose_all = expose_all
        self.carried: frozenset[PortKey] = frozenset()
        self._counters: dict[PortKey, ForwardCounters] = {}
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        """Both tables, empty, replacing whatever an earlier daemon left (one transaction a
        side, so a connection it carried keeps its NAT), and route_localnet on both ends."""
        async with self._lock:
            adopted = await self._ports_in_place()
            vm_table, host_table = (
                ruleset.vm_table(self.link),
                ruleset.host_table(self.link, expose_all=self.expose_all),
            )
            vm_ports = ruleset.vm_ports(self.link, add=adopted)
            host_ports = ruleset.host_ports(self.link, add=adopted)
            await run_nft_async(
                {"nftables": vm_table["nftables"] + vm_ports["nftables"]}, netns=self.vm_netns
            )
            await self._host({"nftables": host_table["nftables"] + host_ports["nftables"]})
            await asyncio.get_running_loop().run_in_executor(None, self._localnet, "1")
            self.carried = adopted
            self._counters = {}
            self._started = True

    async def _ports_in_place(self) -> frozenset[PortKey]:
        """The ports a table of the same name carries now (a killed daemon's): kept through
        the replacement, so they work on until discovery has caught up."""
        try:
            answer = await self._host(ruleset.list_counters(self.link.table))
        except NftError:
            return frozenset()  # no such table
        return ports_named(answer)

    async def _host(self, document: ruleset.Document) -> dict[str, Any]:
        return await run_nft_async(document, netns=self.host_netns)

    def _localnet(self, value: str) -> None:
        write_sysctl(ruleset.sysctl_key(self.link.host_if), value, netns=self.host_netns)
        write_sysctl(ruleset.sysctl_key(self.link.vm_if), value, netns=self.vm_netns)

    async def set_ports(self, wanted: Iterable[PortKey]) -> None:
        """Carry exactly ``wanted``: the difference, in three transactions at most."""
        target = frozenset(wanted)
        async with self._lock:
            if not self._started or target == self.carried:
                return
            add, remove = target - self.carried, self.carried - target
            # A port's far side goes in before its entry (for to_vm the entry is the host's
            # output rule, for to_host the VM's): a packet the entry sends over the link must
            # find the far rule already there, else it is refused (or a UDP flow is pinned
            # un-NATed in conntrack). Removals go entry first, in the VM's first transaction
            # for to_host, and for to_vm the VM then refuses from that moment on.
            to_vm_add = {key for key in add if key[0] == "to_vm"}
            await run_nft_async(
                ruleset.vm_ports(self.link, add=to_vm_add, remove=remove), netns=self.vm_netns
            )
            await self._host(ruleset.host_ports(self.link, add=add, remove=remove))
            await run_nft_async(
                ruleset.vm_ports(self.link, add=add - to_vm_add), netns=self.vm_netns
            )
            self.carried = target
            for key in remove:
                self._counters.pop(key, None)

    async def set_expose_all(self, expose_all: bool) -> None:
        """Rebuild the host table for the new address match, with the same ports."""
        async with self._lock:
            if expose_all == self.expose_all:
                return
            self.expose_all = expose_all
            if not self._started:
                return
            table = ruleset.host_table(self.link, expose_all=expose_all)
            ports = ruleset.host_ports(self.link, add=self.carried)
            await self._host({"nftables": table["nftables"] + ports["nftables"]})

    async def refresh_counters(self) -> None:
        """Read every port's named counters from the host table. Not under the lock: the
        listing takes milliseconds with hundreds of ports, and a held first packet waiting
        for ``set_ports`` must not wait for it too. A port added meanwhile reads as zero
        until the next refresh."""
        carried = self.carried
        if not self._started or not carried:
            return
        try:
            answer = await self._host(ruleset.list_counters(self.link.table))
        except NftError:
            if self._started:
                raise
            return  # closed meanwhile: the table went with it
        self._counters = counters_from(answer, carried & self.carried)

    def counters(self, key: PortKey) -> ForwardCounters | None:
        """What the kernel carried for ``key`` since it was added; None if not carried."""
        if key not in self.carried:
            return None
        return self._counters.get(key, ForwardCounters())

    async def close(self) -> None:
        """Remove both tables and route_localnet; a VM already gone is not an error."""
        async with self._lock:
            self._started = False
            self.carried = frozenset()
            await self._host(ruleset.delete_table(self.link.table))
            with contextlib.suppress(NftError):
                await run_nft_async(ruleset.delete_table(self.link.table), netns=self.vm_netns)
            await asyncio.get_running_loop().run_in_executor(None, self._localnet_off)

    def _localnet_off(self) -> None:
        with contextlib.suppress(NftError):  # the link went with the VM
            write_sysctl(ruleset.sysctl_key(self.link.host_if), "0", netns=self.host_netns)
        with contextlib.suppress(NftError):
            write_sysctl(ruleset.sysctl_key(self.link.vm_if), "0", netns=self.vm_netns)


def counters_from(
    answer: dict[str, Any], carried: Iterable[PortKey]
) -> dict[PortKey, ForwardCounters]:
    """Per-port counters from ``nft -j list counters``: connections (or UDP flows) and bytes."""
    by_name: dict[str, tuple[int, int]] = {}
    for item in answer.get("nftables", []):
        counter = item.get("counter") if isinstance(item, dict) else None
        if isinstance(counter, dict) and isinstance(counter.get("name"), str):
            by_name[counter["name"]] = (
                int(counter.get("packets", 0)),
                int(counter.get("bytes", 0)),
            )
    result: dict[PortKey, ForwardCounters] = {}
    for key in carried:
        direction, proto, port = key
        conns = by_name.get(ruleset.counter_name(direction, "conns", proto, port), (0, 0))[0]
        bytes_in = by_name.get(ruleset.counter_name(direction, "in", proto, port), (0, 0))[1]
        bytes_out = by_name.get(ruleset.counter_name(direction, "out", proto, port), (0, 0))[1]
        counters = ForwardCounters(bytes_in=bytes_in, bytes_out=bytes_out)
        if proto == "tcp":
            counters.connections_total = conns
        else:
            counters.udp_flows_total = conns
        result[key] = counters
    return result


def ports_named(answer: dict[str, Any]) -> frozenset[PortKey]:
    """The ports whose connection counters ``nft -j list counters`` shows."""
    ports: set[PortKey] = set()
    for item in answer.get("nftables", []):
        counter = item.get("counter") if isinstance(item, dict) else None
        name = counter.get("name") if isinstance(counter, dict) else None
        if not isinstance(name, str):
            continue
        parts = name.rsplit("_", 3)
        if len(parts) == 4 and parts[1] == "conns" and parts[3].isdigit():
            direction, _, proto, port = parts
            if direction in ("to_vm", "to_host") and proto in ("tcp", "udp"):
                ports.add((direction, proto, int(port)))  # type: ignore[arg-type]
    return frozenset(ports)


def remove_host_table(host_if: str) -> None:
    """Remove the host table of the VM whose link was ``host_if`` (the VM is being torn down
    or was left by a killed daemon); nothing to do without nft."""
    with contextlib.suppress(NftError):
        run_nft(ruleset.delete_table(ruleset.table_for(host_if)))


def remove_stale_tables() -> list[str]:
    """Remove host tables of ours whose link interface is gone: their VM no longer exists.
    Tables of live VMs (other daemons' too) are left alone. Returns the names removed."""
    try:
        answer = run_nft(ruleset.list_tables())
    except NftError:
        return []
    removed = []
    for item in answer.get("nftables", []):
        table = item.get("table") if isinstance(item, dict) else None
        if not isinstance(table, dict):
            continue
        name = str(table.get("name", ""))
        host_if = ruleset.interface_of(name)
        if host_if is not None and not interface_exists(host_if):
            with contextlib.suppress(NftError):
                run_nft(ruleset.delete_table(name))
                removed.append(name)
    return removed
