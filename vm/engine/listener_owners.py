"""Which process holds a listening port, read from /proc (no docker, no sock_diag).

``/proc/PID/net/tcp`` (and tcp6, udp, udp6) list the sockets of PID's network namespace
with their inodes; ``/proc/*/fd`` links name ``socket:[INODE]``. Where the VM shares the
host's kernel (the namespace VM), the daemon reads the VM's sockets through any process in
it, and a container's process shows its container id in ``/proc/PID/cgroup``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"
_TABLES = (
    ("tcp", "tcp", TCP_LISTEN),
    ("tcp", "tcp6", TCP_LISTEN),
    ("udp", "udp", UDP_UNCONNECTED),
    ("udp", "udp6", UDP_UNCONNECTED),
)
_CONTAINER_ID = re.compile(r"(?:/docker/|docker-)([0-9a-f]{64})")

PortKey = tuple[str, int]  # (proto, port)

PORT_OWNERS = "port_owners"
"""The agent's request for the owners of its VM's listeners, where the daemon cannot read
the VM's /proc itself (an attached VM): answered with ``owners_to_json``."""


@dataclass(frozen=True)
class ProcessOwner:
    pid: int
    name: str
    container_id: str = ""
    proxy_for: tuple[str, int] | None = None
    """For docker-proxy: the container address and port it forwards to."""


def listening_inodes(netns_pid: int | str, proc: Path = Path("/proc")) -> dict[PortKey, set[int]]:
    """The inodes of the listening TCP and bound UDP sockets in ``netns_pid``'s namespace."""
    found: dict[PortKey, set[int]] = {}
    for proto, table, wanted in _TABLES:
        try:
            lines = (proc / str(netns_pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != wanted:
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
            if inode:
                found.setdefault((proto, port), set()).add(inode)
    return found


def socket_holders(inodes: Iterable[int], proc: Path = Path("/proc")) -> dict[int, int]:
    """For each inode, one process holding it (inode -> pid)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    holders: dict[int, int] = {}
    if not wanted:
        return holders
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"{entry.path}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                inode = wanted.get(target)
                if inode is not None and inode not in holders:
                    holders[inode] = int(entry.name)
        if len(holders) == len(wanted):
            break
    return holders


def describe(pid: int, proc: Path = Path("/proc")) -> ProcessOwner:
    base = proc / str(pid)
    try:
        name = (base / "comm").read_text().strip()
    except OSError:
        name = "?"
    container_id = ""
    try:
        match = _CONTAINER_ID.search((base / "cgroup").read_text())
        container_id = match.group(1) if match else ""
    except OSError:
        pass
    proxy_for = None
    if name == "docker-proxy":
        proxy_for = _proxy_target(base)
    return ProcessOwner(pid, name, container_id, proxy_for)


def _proxy_target(base: Path) -> tuple[str, int] | None:
    try:
        args = (base / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    options = dict(zip(args[1::2], args[2::2], strict=False))
    address, port = options.get("-container-ip"), options.get("-container-port")
    if address is None or port is None or not port.isdigit():
        return None
    return address, int(port)


def port_owners(
    netns_pid: int | str, ignore_pids: Iterable[int] = (), proc: Path = Path("/proc")
) -> dict[PortKey, ProcessOwner]:
    """Who listens on each port of ``netns_pid``'s namespace, leaving out ``ignore_pids``
    (hostnet's own mirrors)."""
    ignored = set(ignore_pids)
    by_port = listening_inodes(netns_pid, proc)
    holders = socket_holders({i for inodes in by_port.values() for i in inodes}, proc)
    owners: dict[PortKey, ProcessOwner] = {}
    for key, inodes in by_port.items():
        pids = sorted({holders[i] for i in inodes if i in holders} - ignored)
        if pids:
            owners[key] = describe(pids[0], proc)
    return owners


def owners_to_json(owners: dict[PortKey, ProcessOwner]) -> list[dict[str, Any]]:
    return [
        {
            "proto": proto,
            "port": port,
            "pid": owner.pid,
            "name": owner.name,
            "container_id": owner.container_id,
            "proxy_for": list(owner.proxy_for) if owner.proxy_for else None,
        }
        for (proto, port), owner in sorted(owners.items())
    ]


def owners_from_json(items: object) -> dict[PortKey, ProcessOwner]:
    """The agent's answer read back; entries that are not as ``owners_to_json`` makes them
    are left out."""
    owners: dict[PortKey, ProcessOwner] = {}
    for item in items if isinstance(items, list) else []:
        try:
            proxy = item.get("proxy_for")
            owners[(str(item["proto"]), int(item["port"]))] = ProcessOwner(
                int(item["pid"]),
                str(item["name"]),
                str(item.get("container_id") or ""),
                (str(proxy[0]), int(proxy[1])) if proxy else None,
            )
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            continue
    return owners
