"""The kernel path through a real daemon as root on a real namespace VM: ports carried by
NAT in both directions with ``path: kernel`` rows, the same semantics and security as the
proxy, and the rules' life: off, stop, SIGKILL and restart (an open connection survives)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.nat.nft import nft_available
from proxy.nat.ruleset import table_for
from tests.integration.daemon_fixture import RunningDaemon, daemon_session, start_daemon
from tests.integration.nat_namespaces import ASK, PEER
from tests.integration.vm_helpers import free_port, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces and nft need root"),
    pytest.mark.skipif(not nft_available(), reason="libnftables missing: apt install nftables"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    home = tmp_path_factory.mktemp("hostnet-home")
    excluded = {"HostNetworkingExcludedPorts": [EXCLUDED]}
    yield from daemon_session(home, {"HostNetworkingEnabled": True, **excluded})


EXCLUDED = 7399


def row(daemon: RunningDaemon, direction: str, proto: str, port: int) -> dict[str, Any] | None:
    """The IPv4 loopback row of ``port`` in ``direction``."""
    for entry in daemon.ports():
        address = entry["host_address"] if direction == "vm-to-host" else entry["vm_address"]
        if (entry["direction"], entry["proto"], entry["port"], address) == (
            direction,
            proto,
            port,
            "127.0.0.1",
        ):
            return entry
    return None


def on_kernel(daemon: RunningDaemon, direction: str, proto: str, port: int) -> bool:
    entry = row(daemon, direction, proto, port)
    return entry is not None and entry["state"] == "active" and entry["path"] == "kernel"


def serve(prefix: list[str], proto: str, host: str, port: int) -> subprocess.Popen[str]:
    """A server answering ``PEER_ADDRESS:message``, run with ``prefix``."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", PEER, proto, host, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def ask(
    prefix: list[str], proto: str, host: str, port: int, message: str, timeout: float = 2
) -> str:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", ASK, proto, host, str(port), message, str(timeout)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def host_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def vm_in(daemon: RunningDaemon) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{daemon.netns['name']}"]


def test_status_says_the_kernel_carries(daemon: RunningDaemon) -> None:
    wait_for(
        lambda: daemon.client.get("/v1/status")["data_path"]["active"] == "kernel", 10, "kernel"
    )
    status = daemon.client.get("/v1/status")
    assert status["data_path"] == {"setting": "auto", "active": "kernel", "detail": ""}
    assert table_for(daemon.netns["host_if"]) in host_tables()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_vm_loopback_port_is_carried_by_the_kernel_and_sees_a_loopback_peer(
    daemon: RunningDaemon, proto: str
) -> None:
    port = free_port(proto)
    server = serve(vm_in(daemon), proto, "127.0.0.1", port)
    try:
        wait_for(lambda: on_kernel(daemon, "vm-to-host", proto, port), 10, "the kernel path")
        assert ask([], proto, "127.0.0.1", port, "hello") == "127.0.0.1:hello"
        entry = row(daemon, "vm-to-host", proto, port)
        assert entry is not None
        total = "connections_total" if proto == "tcp" else "udp_flows_total"
        wait_for(
            lambda: (
                (row(daemon, "vm-to-host", proto, port) or {"counters": {total: 0}})["counters"][
                    total
                ]
                >= 1
            ),
            5,
            "the kernel's counters in the port row",
        )
        # ::1 stays on the user-space mirror, which is still bound and listening.
        six = next(
            e
            for e in daemon.ports()
            if e["port"] == port and e["host_address"] == "::1" and e["proto"] == proto
        )
        assert six["path"] == "proxy" and six["state"] == "active"
    finally:
        server.kill()
        server.wait()
    wait_for(lambda: row(daemon, "vm-to-host", proto, port) is None, 5, "the row to go")
    if proto == "tcp":
        assert ask([], "tcp", "127.0.0.1", port, "x", 0.5).startswith("error:")


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_host_loopback_port_is_carried_into_the_vm_and_sees_a_loopback_peer(
    daemon: RunningDaemon, proto: str
) -> None:
    port = free_port(proto)
    server = serve([], proto, "127.0.0.1", port)
    try:
        wait_for(lambda: on_kernel(daemon, "host-to-vm", proto, port), 10, "the kernel path")
        assert ask(vm_in(daemon), proto, "127.0.0.1", port, "hi") == "127.0.0.1:hi"
    finally:
        server.kill()
        server.wait()


def test_the_vm_reaches_no_excluded_and_no_unmirrored_host_loopback_port(
    daemon: RunningDaemon,
) -> None:
    """An excluded port and a port on another loopback address (never mirrored) stay out of
    the VM's reach: by its loopback, by the host's link address, and by a route of the VM's
    own that sends loopback packets over the link."""
    mirrored = free_port()
    hidden = free_port()
    subprocess.run(["ip", "addr", "add", "127.0.0.99/8", "dev", "lo"], capture_output=True)
    servers = [
        serve([], "tcp", "127.0.0.1", mirrored),
        serve([], "tcp", "127.0.0.1", EXCLUDED),
        serve([], "tcp", "127.0.0.99", hidden),
    ]
    vm = vm_in(daemon)
    host_ip, vm_if = daemon.netns["host_ip"], f"hn{daemon.netns['name'][8:]}v"
    try:
        wait_for(lambda: on_kernel(daemon, "host-to-vm", "tcp", mirrored), 10, "a mirror")
        assert ask(vm, "tcp", "127.0.0.1", mirrored, "ok") == "127.0.0.1:ok"
        assert row(daemon, "host-to-vm", "tcp", EXCLUDED) is None
        for port in (EXCLUDED, hidden):
            assert ask(vm, "tcp", "127.0.0.1", port, "x", 0.5).startswith("error:"), port
            assert ask(vm, "tcp", host_ip, port, "x", 0.5).startswith("error:"), port
        subprocess.run([*vm, "ip", "route", "add", "127.0.0.99/32", "dev", vm_if], check=True)
        try:
            assert ask(vm, "tcp", "127.0.0.99", hidden, "x", 1).startswith("error:")
        finally:
            subprocess.run([*vm, "ip", "route", "del", "127.0.0.99/32", "dev", vm_if])
    finally:
        for server in servers:
            server.kill()
            server.wait()
        subprocess.run(["ip", "addr", "del", "127.0.0.99/8", "dev", "lo"], capture_output=True)


def test_a_host_address_other_than_loopback_reaches_no_vm_port(daemon: RunningDaemon) -> None:
    """The loopback-only default: the host's link address does not lead to a VM port."""
    port = free_port()
    server = serve(vm_in(daemon), "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: on_kernel(daemon, "vm-to-host", "tcp", port), 10, "the kernel path")
        assert ask([], "tcp", daemon.netns["host_ip"], port, "x", 0.5).startswith("error:")
    finally:
        server.kill()
        server.wait()


PG_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


def test_postgres_allowing_only_loopback_peers_accepts_the_host(daemon: RunningDaemon) -> None:
    """The semantics test: pg_hba admits 127.0.0.1/32 only, and the host's psql gets in."""
    bindir = next(Path("/usr/lib/postgresql").glob("*/bin"), None)
    if bindir is None:
        pytest.skip("PostgreSQL missing: apt install postgresql")
    # The postgres user cannot enter pytest's private folder: a folder of its own in /tmp.
    data = Path(tempfile.mkdtemp(prefix="hostnet-pg-"))
    os.chown(data, *_postgres_ids())
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust"],
        check=True,
        capture_output=True,
    )
    (data / "pg_hba.conf").write_text(PG_HBA)
    port = free_port()
    server = subprocess.Popen(
        [
            *vm_in(daemon),
            *as_pg,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: on_kernel(daemon, "vm-to-host", "tcp", port), 20, "postgres's port")
        query = "select inet_client_addr()"
        done = subprocess.run(
            ["psql", f"host=127.0.0.1 port={port} user=postgres dbname=postgres", "-Atc", query],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "127.0.0.1"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


LINE_CLIENT = r"""
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
for line in sys.stdin:
    c.sendall(line.strip().encode()); print(c.recv(65536).decode(), flush=True)
"""


def talk(client: subprocess.Popen[str], message: str) -> str:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(message + "\n")
    client.stdin.flush()
    return client.stdout.readline().strip()


def test_a_kernel_connection_survives_a_killed_daemon_and_its_restart(tmp_path: Path) -> None:
    """conntrack holds the open connection while no daemon runs; the next daemon replaces the
    dead one's tables in place; turning host networking off then removes them."""
    first = start_daemon(tmp_path, {"HostNetworkingEnabled": True})
    port = free_port()
    server = serve(vm_in(first), "tcp", "127.0.0.1", port)
    client: subprocess.Popen[str] | None = None
    second: RunningDaemon | None = None
    table = table_for(first.netns["host_if"])
    try:
        wait_for(lambda: on_kernel(first, "vm-to-host", "tcp", port), 10, "the kernel path")
        client = subprocess.Popen(
            [sys.executable, "-c", LINE_CLIENT, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert talk(client, "before") == "127.0.0.1:before"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        assert talk(client, "meanwhile") == "127.0.0.1:meanwhile"
        assert table in host_tables()  # what the killed daemon left
        second = start_daemon(tmp_path, None)
        wait_for(lambda: on_kernel(second, "vm-to-host", "tcp", port), 10, "the kernel path again")
        assert talk(client, "after") == "127.0.0.1:after"
        result = second.cli("settings", "set", "HostNetworkingEnabled", "false")
        assert result.returncode == 0, result.stderr
        started = time.monotonic()
        wait_for(lambda: table not in host_tables(), 5, "the rules to go when turned off")
        print(f"rules removed {time.monotonic() - started:.3f} s after the setting was written")
    finally:
        if client is not None:
            client.kill()
        server.kill()
        server.wait()
        if second is not None:
            second.stop()
        first.stop()
    assert table not in host_tables()


def test_a_stopped_daemon_leaves_no_rules(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, {"HostNetworkingEnabled": True})
    table = table_for(daemon.netns["host_if"])
    wait_for(lambda: table in host_tables(), 10, "the kernel path's table")
    daemon.stop()
    assert table not in host_tables()


def test_the_proxy_setting_keeps_the_kernel_out(tmp_path: Path) -> None:
    settings = {"HostNetworkingEnabled": True, "HostNetworkingDataPath": "proxy"}
    for daemon in daemon_session(tmp_path, settings):
        assert daemon.client.get("/v1/status")["data_path"]["active"] == "proxy"
        port = free_port()
        server = serve(vm_in(daemon), "tcp", "127.0.0.1", port)
        try:
            wait_for(
                lambda d=daemon, p=port: (
                    (row(d, "vm-to-host", "tcp", p) or {}).get("state") == "active"
                ),
                10,
                "the mirror",
            )
            assert row(daemon, "vm-to-host", "tcp", port)["path"] == "proxy"  # type: ignore[index]
            assert ask([], "tcp", "127.0.0.1", port, "p") == "127.0.0.1:p"
            assert table_for(daemon.netns["host_if"]) not in host_tables()
        finally:
            server.kill()
            server.wait()


def test_a_destroyed_vm_gets_its_kernel_path_back(tmp_path: Path) -> None:
    """The namespace is deleted under the daemon (its table goes with it); the daemon makes a
    new VM and both tables again, and a new VM port is carried by the kernel."""
    daemon = start_daemon(tmp_path, {"HostNetworkingEnabled": True})
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["data_path"]["active"] == "kernel",
            10,
            "the kernel path",
        )
        name = daemon.netns["name"]
        old_agent = daemon.netns["agent_pid"]
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", name], check=True)

        def remade() -> bool:
            try:  # the state file is written anew while the VM is made again
                agent = daemon.netns["agent_pid"]
            except (OSError, ValueError):
                return False
            status = daemon.client.get("/v1/status")
            return bool(agent != old_agent and status["agent"]["state"] == "connected")

        wait_for(remade, 20, "a new VM and its agent")
        port = free_port()
        server = serve(vm_in(daemon), "tcp", "127.0.0.1", port)
        try:
            wait_for(lambda: on_kernel(daemon, "vm-to-host", "tcp", port), 10, "the kernel path")
            assert ask([], "tcp", "127.0.0.1", port, "again") == "127.0.0.1:again"
        finally:
            server.kill()
            server.wait()
    finally:
        daemon.stop()


DUAL_STACK = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET6, kind)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(f"{peer[0]}:".encode() + c.recv(100))
        c.close()
    else:
        data, peer = s.recvfrom(100)
        s.sendto(f"{peer[0]}:".encode() + data, peer)
"""
"""A server on a dual-stack ``::`` (IPV6_V6ONLY off, as Node.js and ``python -m http.server``
listen by default), answering with the peer address it saw."""


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_dual_stack_vm_listener_is_carried_by_the_kernel(
    daemon: RunningDaemon, proto: str
) -> None:
    """A dual-stack ``::`` socket takes IPv4 too: it is reported as ``0.0.0.0`` as well, so
    the host's 127.0.0.1 mirror reaches it over IPv4 and the kernel path carries it."""
    port = free_port(proto)
    server = subprocess.Popen(
        [*vm_in(daemon), sys.executable, "-c", DUAL_STACK, proto, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        wait_for(lambda: on_kernel(daemon, "vm-to-host", proto, port), 10, "the kernel path")
        assert ask([], proto, "127.0.0.1", port, "hello") == "::ffff:127.0.0.1:hello"
        if proto == "tcp":  # (ASK's UDP client is IPv4 only) the proxy carries ::1
            assert ask([], proto, "::1", port, "six") == "::1:six"
    finally:
        server.kill()
        server.wait()
