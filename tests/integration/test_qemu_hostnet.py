"""Host networking through a real QEMU VM (TCG) and the virtio-serial multiplexer.

One ``hostnet daemon`` with ``VmBackend: qemu`` boots the VM for the whole module; the agent
inside reaches the daemon over the virtio-serial port. Servers in the VM are started with
``hostnet vm exec --detach`` (through the agent), clients in the VM with ``hostnet vm exec``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import HOSTNET, RunningDaemon, write_settings
from tests.integration.qemu_race import (
    GUEST,
    GuestPeer,
    coordinator,
    fresh_ports,
    guest_connects,
    host_connects,
)
from tests.integration.vm_helpers import (
    CLIENT,
    SERVER,
    free_port,
    host_answer,
    start_server,
    wait_for,
)
from vm.backends.qmp import QMPClient
from vm.transport.mux_liveness import LIVENESS_TIMEOUT, PING_INTERVAL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="the test daemon runs as root"),
]

IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BOOT = 150.0  # TCG on a busy 2-core machine: boot plus the agent's Python start
PY = [sys.executable, "-S"]  # the host's Python, seen by the VM over 9p; -S starts it fast


def _status(daemon: RunningDaemon) -> dict[str, object]:
    return dict(daemon.client.get("/v1/status"))


def _agent_connected(daemon: RunningDaemon) -> bool:
    if daemon.proc.poll() is not None:
        log = (daemon.home / "daemon.out").read_text()
        raise AssertionError(f"the daemon exited with {daemon.proc.returncode}:\n{log}")
    try:
        status = daemon.client.get("/v1/status")
    except OSError:
        return False
    return bool(status["agent"]["state"] == "connected")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    home = tmp_path_factory.mktemp("home")
    write_settings(
        home,
        {
            "HostNetworkingEnabled": True,
            "VmBackend": "qemu",
            "VmOptions": {"image_cache_dir": str(IMAGE_CACHE), "accel": "tcg", "memory_mib": 768},
        },
    )
    env = dict(os.environ)
    env["HOSTNET_HOME"] = str(home)
    env["HOSTNET_ADMIN_SETTINGS"] = str(home / "admin-settings.json")
    with (home / "daemon.out").open("w") as out:
        proc = subprocess.Popen([HOSTNET, "daemon"], env=env, stdout=out, stderr=out, text=True)
    running = RunningDaemon(home, proc, env)
    try:
        wait_for(lambda: _agent_connected(running), BOOT, "the agent in the QEMU VM to connect")
        yield running
    except BaseException:
        print((home / "daemon.out").read_text())
        console = home / "state" / "vm" / "qemu" / "console.log"
        if console.exists():
            print(console.read_text()[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(40)


def vm_exec(daemon: RunningDaemon, *argv: str, detach: bool = False) -> str:
    args = [HOSTNET, "vm", "exec", *(["--detach"] if detach else []), "--", *argv]
    done = subprocess.run(args, env=daemon.env, capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, f"vm exec {argv}: {done.returncode} {done.stdout} {done.stderr}"
    return done.stdout


def vm_server(daemon: RunningDaemon, proto: str, bind: str, port: int) -> int:
    out = vm_exec(daemon, *PY, "-c", SERVER, proto, bind, str(port), detach=True)
    return int(out.split("pid ")[1].split(",")[0])


def vm_client(daemon: RunningDaemon, proto: str, host: str, port: int, payload: str) -> str:
    return vm_exec(daemon, *PY, "-c", CLIENT, proto, host, str(port), payload).strip()


def kill_in_vm(daemon: RunningDaemon, pid: int) -> None:
    daemon.client.call("POST", "/v1/vm/kill", {"pid": pid, "signal": "KILL"})


def test_exec_runs_in_the_vm_through_the_agent(daemon: RunningDaemon) -> None:
    """`vm exec` runs in the VM (its own kernel and hostname), with output and exit status."""
    assert vm_exec(daemon, "hostname").strip() == "hostnet-vm"
    assert vm_exec(daemon, "cat", "/proc/sys/kernel/osrelease").strip() != os.uname().release
    done = subprocess.run(
        [HOSTNET, "vm", "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    status = _status(daemon)
    assert status["vm"] == {"backend": "qemu", "state": "up", "detail": ""}
    console = daemon.home / "state" / "vm" / "qemu" / "console.log"
    assert "agent listening on virtio:org.hostnet.agent.0" in console.read_text()


@pytest.mark.parametrize(("proto", "vm_bind"), [("tcp", "0.0.0.0"), ("udp", "::")])
def test_vm_server_reachable_on_host(daemon: RunningDaemon, proto: str, vm_bind: str) -> None:
    port = free_port(proto)
    pid = vm_server(daemon, proto, vm_bind, port)
    try:
        for host in ("127.0.0.1", "::1"):

            def mirrored(h: str = host) -> bool:
                return daemon.port_state("vm-to-host", proto, port, h) == "active"

            wait_for(
                mirrored,
                30,
                f"the host mirror of VM {proto} {port} on {host}",
            )
            assert host_answer(proto, host, port, b"hello", timeout=10) == b"echo:hello"
    finally:
        kill_in_vm(daemon, pid)
    wait_for(
        lambda: daemon.port_state("vm-to-host", proto, port, "127.0.0.1") is None,
        20,
        "the mirror to go once the VM server exited",
    )


@pytest.mark.parametrize(("proto", "host_bind"), [("tcp", "127.0.0.1"), ("udp", "::1")])
def test_host_server_reachable_from_vm(daemon: RunningDaemon, proto: str, host_bind: str) -> None:
    port = free_port(proto)
    server = start_server([], proto, host_bind, port)
    try:
        for target in ("127.0.0.1", "::1"):

            def mirrored(t: str = target) -> bool:
                return daemon.port_state("host-to-vm", proto, port, t) == "active"

            wait_for(
                mirrored,
                30,
                f"the VM mirror of host {proto} {port} on {target}",
            )
            assert vm_client(daemon, proto, target, port, "from-vm") == "echo:from-vm"
    finally:
        server.kill()
        server.wait()


RACE_TRIALS = 50


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_connect_at_once_after_listen_both_ways(daemon: RunningDaemon, proto: str) -> None:
    """Issue 16 on the QEMU VM: a client that connects the moment a server on the other side
    has listened gets through, every time, host to VM and VM to host (IPv4 loopback). Each
    side's hold table must be on for it (the guest's kernel loads nf_tables, nft_socket,
    nft_queue and nfnetlink_queue from the image)."""

    def hold() -> dict[str, dict[str, object]]:
        found = _status(daemon)["hold"]
        assert isinstance(found, dict)
        return found

    wait_for(lambda: "state" in hold()["vm"], 30, "the agent's hold status (polled)")
    assert hold()["vm"]["state"] == "on", hold()["vm"]
    assert hold()["host"]["state"] == "on", hold()["host"]
    with coordinator() as (server, port):
        wait_for(
            lambda: daemon.port_state("host-to-vm", "tcp", port, "127.0.0.1") == "active",
            30,
            "the coordinator's mirror in the VM",
        )
        vm_exec(daemon, *PY, "-c", GUEST, str(port), detach=True)
        conn, _ = server.accept()
        # The listener stays open: its mirror carries the coordinator's connection.
        with conn, conn.makefile("rwb", buffering=0) as stream:
            peer = GuestPeer(stream)
            failed = []
            ports = fresh_ports(proto)
            for trial in range(RACE_TRIALS):
                for name, run in (("vm client", guest_connects), ("host client", host_connects)):
                    result = run(peer, proto, next(ports))
                    if result != "ok":
                        failed.append(f"{name} #{trial}: {result}")
    assert not failed, f"{len(failed)} of {2 * RACE_TRIALS} trials failed: {failed[:5]}"
    # Both sides held first packets: the trials did not merely outrun discovery's lag.
    wait_for(lambda: int(str(hold()["vm"]["held"])) > 0, 10, "the VM side's held count")
    assert int(str(hold()["host"]["held"])) > 0, hold()["host"]


@pytest.mark.reliability
def test_crash_is_reported_and_the_restarted_vm_brings_mirrors_back(
    daemon: RunningDaemon,
) -> None:
    """QEMU killed from outside: status says so with the console's tail, the daemon boots
    the VM again, the agent reconnects and a host listener is mirrored in the VM again."""
    port = free_port("tcp")
    server = start_server([], "tcp", "127.0.0.1", port)
    try:
        wait_for(
            lambda: daemon.port_state("host-to-vm", "tcp", port, "127.0.0.1") == "active",
            30,
            "the VM mirror before the crash",
        )
        pid_file = daemon.home / "state" / "vm" / "qemu" / "qemu.pid"
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        seen: dict[str, object] = {}

        def reported() -> bool:
            vm = _status(daemon)["vm"]
            assert isinstance(vm, dict)
            if vm["state"] == "error":
                seen.update(vm)
                return True
            return False

        wait_for(reported, 10, "the crash to show in the status")
        detail = str(seen["detail"])
        assert "crashed" in detail and "SIGKILL" in detail
        assert "hostnet-init: command started" in detail  # the console's last lines
        wait_for(lambda: _agent_connected(daemon), BOOT, "the restarted VM's agent")
        assert _status(daemon)["vm"] == {"backend": "qemu", "state": "up", "detail": ""}
        wait_for(
            lambda: daemon.port_state("host-to-vm", "tcp", port, "127.0.0.1") == "active",
            30,
            "the VM mirror after the restart",
        )
        assert vm_client(daemon, "tcp", "127.0.0.1", port, "again") == "echo:again"
    finally:
        server.kill()
        server.wait()


async def _qmp(path: Path, command: str) -> None:
    client = await QMPClient.connect(path)
    try:
        await client.execute(command)
    finally:
        await client.close()


@pytest.mark.reliability
def test_a_hung_guest_is_reported_and_restarted(daemon: RunningDaemon) -> None:
    """The guest frozen for real (QMP ``stop`` pauses its vCPUs; QEMU itself lives on): the
    host's pings go unanswered, the status says so within the stated timeout, and the VM is
    booted again like a crashed one."""
    wait_for(lambda: _agent_connected(daemon), BOOT, "the agent before the hang")
    vm_dir = daemon.home / "state" / "vm" / "qemu"
    frozen_pid = int((vm_dir / "qemu.pid").read_text())
    asyncio.run(_qmp(vm_dir / "qmp.sock", "stop"))
    frozen_at = time.monotonic()
    seen: list[tuple[float, str]] = []

    def reported() -> bool:
        vm = _status(daemon)["vm"]
        assert isinstance(vm, dict)
        if vm["state"] == "error":
            seen.append((time.monotonic() - frozen_at, str(vm["detail"])))
        return bool(seen)

    wait_for(reported, LIVENESS_TIMEOUT + 20, "the hang to show in the status")
    took, detail = seen[0]
    assert "did not answer the host's pings" in detail and "booting it again" in detail
    assert took >= LIVENESS_TIMEOUT - PING_INTERVAL, took  # not before the stated timeout
    assert Path(f"/proc/{frozen_pid}").exists()  # QEMU lived on: only the pings told
    wait_for(lambda: _agent_connected(daemon), BOOT + 30, "the restarted VM's agent")
    assert int((vm_dir / "qemu.pid").read_text()) != frozen_pid
    assert not Path(f"/proc/{frozen_pid}").exists()
    assert vm_exec(daemon, "hostname").strip() == "hostnet-vm"


def test_vm_down_powers_the_vm_off(daemon: RunningDaemon) -> None:
    """Runs last: `vm down` stops the daemon, which powers the VM off through ACPI."""
    qemu_pid = int((daemon.home / "state" / "vm" / "qemu" / "qemu.pid").read_text())
    started = time.monotonic()
    done = subprocess.run(
        [HOSTNET, "vm", "down"], env=daemon.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "killed QEMU" not in done.stderr
    daemon.proc.wait(10)
    assert time.monotonic() - started < 40
    assert not Path(f"/proc/{qemu_pid}").exists()
    console = (daemon.home / "state" / "vm" / "qemu" / "console.log").read_text()
    assert "power button pressed" in console
    assert "command exited with status 0" in console
