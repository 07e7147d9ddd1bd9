"""Host networking both ways through a real daemon and a real namespace VM."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session, start_daemon
from tests.integration.vm_helpers import (
    free_port,
    host_answer,
    run_client,
    start_server,
    tcp_open,
    wait_for,
)
from vm.backends.netns import pid_alive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    home = tmp_path_factory.mktemp("hostnet-home")
    yield from daemon_session(home, {"HostNetworkingEnabled": True})


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("vm_bind", ["0.0.0.0", "::", "127.0.0.1", "::1"])
def test_vm_listener_reachable_on_host_both_families(
    daemon: RunningDaemon, proto: str, vm_bind: str
) -> None:
    port = free_port(proto)
    server = start_server(daemon.vm_prefix, proto, vm_bind, port)
    try:
        for host in ("127.0.0.1", "::1"):
            wait_for(
                lambda h=host: daemon.port_state("vm-to-host", proto, port, h) == "active",
                5,
                f"{proto} mirror on {host}:{port}",
            )
            assert host_answer(proto, host, port, b"hello") == b"echo:hello"
    finally:
        server.kill()
        server.wait()
    wait_for(
        lambda: daemon.port_state("vm-to-host", proto, port, "127.0.0.1") is None,
        5,
        "the mirror to go once the VM server exited",
    )
    if proto == "tcp":
        assert not tcp_open("127.0.0.1", port)
        assert not tcp_open("::1", port)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("host_bind", ["127.0.0.1", "::1", "0.0.0.0"])
def test_host_listener_reachable_from_vm(daemon: RunningDaemon, proto: str, host_bind: str) -> None:
    port = free_port(proto)
    server = start_server([], proto, host_bind, port)
    try:
        targets = ["127.0.0.1", "::1"]
        for target in targets:
            wait_for(
                lambda t=target: daemon.port_state("host-to-vm", proto, port, t) == "active",
                5,
                f"the VM mirror of host {proto} {port} on {target}",
            )
            assert run_client(daemon.vm_prefix, proto, target, port, "from-vm") == "echo:from-vm"
    finally:
        server.kill()
        server.wait()
    wait_for(
        lambda: daemon.port_state("host-to-vm", proto, port, "127.0.0.1") is None,
        5,
        "the VM mirror to go once the host server exited",
    )
    if proto == "tcp":
        assert run_client(daemon.vm_prefix, "tcp", "127.0.0.1", port, "x").startswith("error:")


def test_busy_host_port_is_a_conflict_until_freed(daemon: RunningDaemon) -> None:
    """A host socket bound to the port (not listening, so not mirrored into the VM)
    blocks the mirror on 127.0.0.1 until it closes."""
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "conflict",
            5,
            "the conflict state",
        )
        entry = next(
            e
            for e in daemon.ports()
            if e["port"] == port
            and e["host_address"] == "127.0.0.1"
            and e["direction"] == "vm-to-host"
        )
        assert "already in use" in entry["reason"]
        assert daemon.port_state("vm-to-host", "tcp", port, "::1") == "active"
        squatter.close()
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active",
            5,
            "the mirror to turn active once the port is free",
        )
        assert host_answer("tcp", "127.0.0.1", port, b"free") == b"echo:free"
    finally:
        squatter.close()
        server.kill()
        server.wait()


def test_no_mirror_is_mirrored_back(daemon: RunningDaemon) -> None:
    vm_port, host_port = free_port(), free_port()
    vm_server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", vm_port)
    host_server = start_server([], "tcp", "127.0.0.1", host_port)
    try:
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", vm_port, "127.0.0.1") == "active",
            5,
            "the VM port mirrored",
        )
        wait_for(
            lambda: daemon.port_state("host-to-vm", "tcp", host_port, "127.0.0.1") == "active",
            5,
            "the host port mirrored",
        )
        time.sleep(0.5)  # discovery on both sides runs many more rounds meanwhile
        ports = daemon.ports()
        assert not [e for e in ports if e["direction"] == "host-to-vm" and e["port"] == vm_port]
        assert not [e for e in ports if e["direction"] == "vm-to-host" and e["port"] == host_port]
        keys = [
            (e["direction"], e["proto"], e["port"], e["host_address"], e["vm_address"])
            for e in ports
        ]
        assert len(keys) == len(set(keys))
    finally:
        vm_server.kill()
        host_server.kill()
        vm_server.wait()
        host_server.wait()


def test_killed_agent_is_restarted_and_mirrors_come_back(daemon: RunningDaemon) -> None:
    port = free_port()
    first_pid = daemon.netns["agent_pid"]
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror")
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: daemon.netns["agent_pid"] != first_pid, 5, "a new agent")
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            5,
            "the daemon to reconnect",
        )
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active",
            5,
            "the mirror to come back",
        )
        assert host_answer("tcp", "127.0.0.1", port, b"again") == b"echo:again"
    finally:
        server.kill()
        server.wait()


def test_daemon_killed_leaves_nothing_the_next_start_cannot_clean(tmp_path: Path) -> None:
    first = start_daemon(tmp_path, {"HostNetworkingEnabled": True})
    name, agent_pid = first.netns["name"], first.netns["agent_pid"]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    assert Path("/run/netns", name).exists()  # what a crash leaves behind
    second = start_daemon(tmp_path, None)
    try:
        port = free_port()
        wait_for(
            lambda: second.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the agent",
        )
        server = start_server(second.vm_prefix, "tcp", "127.0.0.1", port)
        try:
            wait_for(lambda: tcp_open("127.0.0.1", port), 5, "a mirror after the restart")
        finally:
            server.kill()
            server.wait()
    finally:
        second.stop()
    assert not Path("/run/netns", name).exists(), "the namespace is removed when the daemon exits"
    assert not pid_alive(agent_pid), "the agent is gone (at most a zombie waiting for init)"
