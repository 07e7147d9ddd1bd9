"""Faults a developer's machine really has, each recovered from within 2 s with nothing leaked.

Every test here measures its recovery time and records it for ``make reliability``'s table
(tests/reliability/figures.py). The faults are real: SIGKILL, a deleted namespace, a port
held by another process, a damaged settings file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session, start_daemon
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.reliability.figures import RECOVERY_LIMIT, record, time_until
from tests.reliability.leaks import (
    Holdings,
    assert_nothing_leaked,
    processes_mentioning,
    settled_holdings,
)
from vm.backends.netns import pid_alive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    yield from daemon_session(tmp_path / "home", {"HostNetworkingEnabled": True})


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """A new connection through the mirror on ``host:port`` gets the VM server's echo."""
    try:
        return host_answer("tcp", host, port, b"ping", timeout=0.5) == b"echo:ping"
    except OSError:
        return False


def mirrored_server(daemon: RunningDaemon) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    wait_for(lambda: answers(port) and answers(port, "::1"), 5, f"the mirror of port {port}")
    return port, server


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


def test_agent_killed_with_sigkill(daemon: RunningDaemon) -> None:
    port, server = mirrored_server(daemon)
    try:
        before = settled_holdings(daemon)
        old_agent = daemon.netns["agent_pid"]
        start = time.monotonic()
        os.kill(old_agent, signal.SIGKILL)
        wait_for(lambda: not answers(port), 2, "the mirror to go with the agent")

        # The kernel path can carry the port while no agent runs: recovery is a new agent,
        # its report, and the mirrors (which reserve the port and carry ::1) active again.
        def recovered() -> bool:
            return (
                daemon.netns["agent_pid"] != old_agent
                and all(
                    daemon.port_state("vm-to-host", "tcp", port, bind) == "active"
                    for bind in ("127.0.0.1", "::1")
                )
                and answers(port)
                and answers(port, "::1")
            )

        took = time_until(recovered, start, RECOVERY_LIMIT, "a new agent and the mirrors back")
        assert not pid_alive(old_agent)
        assert_nothing_leaked(daemon, before)
    finally:
        stop(server)
    record("fault", "agent killed (SIGKILL)", took, "s", "until a new connection works")


def test_vm_destroyed_and_recreated(daemon: RunningDaemon) -> None:
    """The namespace and everything in it go away under the daemon (as a VM would when
    destroyed); the daemon makes a new one and forwards again."""
    port, server = mirrored_server(daemon)
    before = settled_holdings(daemon)
    name = daemon.netns["name"]
    old_agent = daemon.netns["agent_pid"]
    start = time.monotonic()
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    for pid in pids.split():
        os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", name], check=True)
    server.wait()

    def vm_back() -> bool:
        state = daemon.client.get("/v1/status")
        return bool(
            Path("/run/netns", name).exists()
            and state["vm"]["state"] == "up"
            and state["agent"]["state"] == "connected"
            and daemon.netns["agent_pid"] != old_agent
        )

    took = time_until(vm_back, start, RECOVERY_LIMIT, "a new VM with its agent connected")
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: answers(port), RECOVERY_LIMIT, "a mirror of the new VM's listener")
        assert_nothing_leaked(daemon, before)
    finally:
        stop(server)
    record("fault", "VM destroyed and recreated", took, "s", "until the new VM's agent is linked")


def test_daemon_killed_and_restarted(tmp_path: Path) -> None:
    """A daemon killed with SIGKILL leaves its control socket and the namespace; a new one
    starts over them and serves the VM's listeners again."""
    home = tmp_path / "home"
    first = start_daemon(home, {"HostNetworkingEnabled": True})
    port = free_port()
    server = start_server(first.vm_prefix, "tcp", "0.0.0.0", port)
    second: RunningDaemon | None = None
    try:
        wait_for(lambda: answers(port), 5, "the first daemon's mirror")
        name = first.netns["name"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        assert (home / "run" / "control.sock").exists(), "a stale control socket"
        assert Path("/run/netns", name).exists(), "a stale namespace"
        # No assertion that the port is dead now: on the kernel path the NAT rules outlive
        # the daemon (open connections survive it), until the next daemon replaces them.
        start = time.monotonic()
        second = start_daemon(home, None)
        took = time_until(lambda: answers(port), start, RECOVERY_LIMIT, "the mirror back")
        before = Holdings.of(second)
        assert before.agents == 1 and before.namespaces == 1 and before.host_links == 1
    finally:
        stop(server)
        if second is not None:
            second.stop()
        else:
            first.stop()
    assert not Path("/run/netns", name).exists()
    assert not processes_mentioning(str(home / "state" / "vm" / "secret"))
    record("fault", "daemon killed (SIGKILL), restarted", took, "s", "from the restart command")


def test_host_port_taken_by_another_program(daemon: RunningDaemon) -> None:
    """Another program holds 127.0.0.1:P when the VM starts listening on P: the mirror is
    a visible conflict, ::1 still works, and it turns active once the program lets go."""
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))  # bound, not listening: not mirrored into the VM
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "conflict",
            5,
            "the conflict state",
        )
        assert answers(port, "::1")
        before = settled_holdings(daemon)
        start = time.monotonic()
        squatter.close()
        took = time_until(lambda: answers(port), start, RECOVERY_LIMIT, "the mirror on 127.0.0.1")
        assert daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active"
        # exactly the new listener, once short-lived netlink checks (the hold's) are closed
        wait_for(
            lambda: Holdings.of(daemon).daemon_sockets == before.daemon_sockets + 1,
            2,
            "the daemon to hold exactly one more socket, the new listener",
        )
    finally:
        squatter.close()
        stop(server)
    record("fault", "host port taken by another program", took, "s", "from the port's release")


def test_settings_file_corrupted_while_running(daemon: RunningDaemon) -> None:
    """A damaged settings file is a visible problem; forwarding keeps going meanwhile, and
    a repaired file clears the problem."""
    port, server = mirrored_server(daemon)
    settings_file = daemon.home / "config" / "settings-store.json"
    good = settings_file.read_text()
    try:
        before = settled_holdings(daemon)
        settings_file.write_text('{"HostNetworkingEnabled": tru')  # cut off mid-write
        wait_for(
            lambda: bool(daemon.client.get("/v1/status")["problems"]), 5, "the problem reported"
        )
        status = daemon.client.get("/v1/status")
        assert "settings-store.json" in json.dumps(status["problems"])
        assert answers(port), "forwarding stops because the settings file is damaged"
        assert status["state"] == "on"
        start = time.monotonic()
        settings_file.write_text(good)
        took = time_until(
            lambda: not daemon.client.get("/v1/status")["problems"] and answers(port),
            start,
            RECOVERY_LIMIT,
            "the problem to clear",
        )
        assert_nothing_leaked(daemon, before)
    finally:
        stop(server)
    record("fault", "settings file corrupted while running", took, "s", "problem shown, cleared")
