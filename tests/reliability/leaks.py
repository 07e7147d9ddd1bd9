"""What a daemon and its namespace VM hold: sockets, processes, namespaces, for leak checks."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.daemon_fixture import RunningDaemon


def socket_inodes(pid: int) -> list[str]:
    """The inodes of the sockets ``pid`` has open (empty once it is gone)."""
    inodes = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def socket_count(pid: int) -> int:
    """How many sockets the process ``pid`` has open."""
    return len(socket_inodes(pid))


def _listening_inodes(pid: int) -> set[str]:
    """Inodes of TCP sockets in LISTEN in the network namespace of ``pid``."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def connection_socket_count(pid: int) -> int:
    """Sockets of ``pid`` that are not TCP listeners: mirrors come and go with the host's
    own listeners (other programs), connections and streams must not leak."""
    listening = _listening_inodes(pid)
    return sum(1 for inode in socket_inodes(pid) if inode not in listening)


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "netlink", "packet")


def _table_inodes(pid: int) -> set[str]:
    """Inodes of every socket in the tables of the network namespace ``pid`` is in."""
    inodes: set[str] = set()
    for table in _TABLES:
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        column = {"unix": 6, "packet": 8}.get(table, 9)
        for line in lines:
            fields = line.split()
            if len(fields) > column:
                inodes.add(fields[column])
    return inodes


def listener_count(pid: int) -> int:
    """TCP listeners ``pid`` holds in its own namespace (mirrors follow other programs)."""
    listening = _listening_inodes(pid)
    return sum(1 for inode in socket_inodes(pid) if inode in listening)


def live_socket_count(pid: int, also_in_namespaces_of: tuple[int, ...] = ()) -> int:
    """Sockets of ``pid`` that are bound or connected somewhere: listed in its own network
    namespace's tables or in those of the processes given (the VM's, through its agent).

    A socket made but never bound nor connected (the daemon keeps a few ready inside the VM's
    namespace) is in no table and holds nothing a leak check cares about.
    """
    known = _table_inodes(pid)
    for other in also_in_namespaces_of:
        known |= _table_inodes(other)
    return sum(1 for inode in socket_inodes(pid) if inode in known)


@dataclass(frozen=True)
class Holdings:
    daemon_sockets: int
    agents: int
    agent_sockets: int
    namespaces: int
    host_links: int

    @classmethod
    def of(cls, daemon: RunningDaemon) -> Holdings:
        vm_dir = daemon.home / "state" / "vm"
        agents = processes_mentioning(f"--secret-file {vm_dir}/secret")
        name = daemon.netns["name"] if (vm_dir / "netns.json").exists() else ""
        host_if = "hn" + name.removeprefix("hostnet-") + "h" if name else ""
        return cls(
            daemon_sockets=live_socket_count(daemon.proc.pid, tuple(agents)),
            agents=len(agents),
            agent_sockets=sum(socket_count(pid) for pid in agents),
            namespaces=int(bool(name) and Path("/run/netns", name).exists()),
            host_links=int(bool(host_if) and Path("/sys/class/net", host_if).exists()),
        )


def settled_holdings(daemon: RunningDaemon, timeout: float = 3.0) -> Holdings:
    """What the daemon and VM hold once it stops moving: the connections a test just made to
    check a mirror are closed asynchronously, and must not count as held before a fault."""
    deadline = time.monotonic() + timeout
    last = Holdings.of(daemon)
    while True:
        time.sleep(0.3)
        now = Holdings.of(daemon)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def assert_nothing_leaked(daemon: RunningDaemon, before: Holdings, settle: float = 2.0) -> None:
    """Within ``settle`` seconds the daemon and VM hold what they held ``before`` the fault."""
    deadline = time.monotonic() + settle
    while True:
        now = Holdings.of(daemon)
        if now == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked: before the fault {before}, after recovery {now}")
        time.sleep(0.05)
