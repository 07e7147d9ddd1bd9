"""Issue 17 on the QEMU VM under TCG: test 9 (one ``--net=host`` container reachable from the
host), and on the same VM a published port on the guest's bridge, ``host.docker.internal``
from a bridge container, and a dockerd killed in the guest shown and started again.

A real daemon boots a real QEMU guest; dockerd runs inside it on its ext4 data disk, the
host's docker.sock reaches it over the VM's engine port, and the container's listener is a
VM listener that the agent reports and the daemon mirrors on the host's localhost. Test 9
prints how long each step took (run with ``-s`` to see it).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.engine.engine_fixture import ENGINE_SETTINGS, host_text_reaches_log, short_home
from tests.engine.images import build_test_image
from tests.engine.test_engine_examples import host_web_server
from tests.integration.daemon_fixture import HOSTNET, RunningDaemon, write_settings
from tests.integration.vm_helpers import free_port, host_answer, tcp_open, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(
        shutil.which("dockerd") is None
        or shutil.which("docker") is None
        or shutil.which("mkfs.ext4") is None,
        reason="the engine in the guest needs Debian's docker.io and e2fsprogs on the host",
    ),
]

IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BOOT_TIMEOUT = 150.0  # TCG on a busy 2-core machine
ENGINE_TIMEOUT = 150.0
STOP_TIMEOUT = 60  # dockerd stops in the guest, then the VM powers off
QEMU_SETTINGS: dict[str, Any] = {
    **ENGINE_SETTINGS,
    "VmBackend": "qemu",
    "VmOptions": {
        "accel": "tcg",
        "image_cache_dir": str(IMAGE_CACHE),
        "boot_timeout": BOOT_TIMEOUT,
    },
}


def status(daemon: RunningDaemon) -> dict[str, Any]:
    try:
        return dict(daemon.client.get("/v1/status"))
    except OSError:
        return {}


def engine_running(daemon: RunningDaemon) -> bool:
    if daemon.proc.poll() is not None:
        out = (daemon.home / "daemon.out").read_text(errors="replace")[-4000:]
        raise AssertionError(f"daemon exited with {daemon.proc.returncode}: {out}")
    return bool(status(daemon).get("engine", {}).get("state") == "running")


@dataclass
class QemuEngine:
    daemon: RunningDaemon
    image: str
    timings: dict[str, float]


def docker_cli(daemon: RunningDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    host = status(daemon)["engine"]["docker_host"]
    return subprocess.run(
        ["docker", *args],
        env={**daemon.env, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_engine(daemon: RunningDaemon) -> None:
    try:
        wait_for(lambda: engine_running(daemon), ENGINE_TIMEOUT, "the engine in the guest")
    except AssertionError:
        engine = status(daemon).get("engine", {})
        logs = daemon.home / "state" / "vm" / "qemu" / "share" / "engine"
        tails = {p.name: p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log")}
        raise AssertionError(f"engine: {engine}\nguest logs: {tails}") from None


def start_qemu_engine(daemon: RunningDaemon) -> QemuEngine:
    """Boot, wait for the engine, import the test image; how long each step took."""
    started = time.monotonic()
    wait_for(
        lambda: status(daemon).get("agent", {}).get("state") == "connected",
        BOOT_TIMEOUT,
        "the QEMU VM's agent to connect",
    )
    booted = time.monotonic()
    wait_engine(daemon)
    engine_ready = time.monotonic()
    client = docker.DockerClient(base_url=status(daemon)["engine"]["docker_host"], timeout=120)
    try:
        image = build_test_image(client)
    finally:
        client.close()
    timings = {
        "boot+agent": booted - started,
        "dockerd ready": engine_ready - booted,
        "image import": time.monotonic() - engine_ready,
    }
    return QemuEngine(daemon, image, timings)


@pytest.fixture(scope="module")
def qemu_engine() -> Iterator[QemuEngine]:
    """One QEMU VM with its engine for this file's tests: a boot under TCG costs a minute."""
    home = short_home()
    write_settings(home, QEMU_SETTINGS)
    env = {**os.environ, "HOSTNET_HOME": str(home)}
    env["HOSTNET_ADMIN_SETTINGS"] = str(home / "admin-settings.json")
    with (home / "daemon.out").open("a") as output:
        proc = subprocess.Popen(
            [HOSTNET, "daemon"], env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        )
    daemon = RunningDaemon(home, proc, env)
    try:
        yield start_qemu_engine(daemon)
    finally:
        running = status(daemon).get("engine", {}).get("state") == "running"
        if proc.poll() is None and running:  # containers first: dockerd gives each 10 s
            ids = docker_cli(daemon, "ps", "-aq").stdout.split()
            if ids:
                docker_cli(daemon, "rm", "-f", *ids)
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not os.environ.get("HOSTNET_KEEP_ENGINE_HOME"):
            shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(600)  # the module's VM boots in this test's setup
def test_net_host_container_in_the_qemu_guest_is_reachable_from_the_host(
    qemu_engine: QemuEngine,
) -> None:
    daemon = qemu_engine.daemon
    engine = status(daemon)["engine"]
    socket_path = Path(engine["docker_host"].removeprefix("unix://"))
    assert socket_path.parent == daemon.home / "run"
    mode = socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert engine["storage_driver"] == "overlay2"

    started = time.monotonic()
    port = free_port("tcp")
    run = docker_cli(
        daemon, "run", "-d", "--net=host", qemu_engine.image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    wait_for(lambda: tcp_open("127.0.0.1", port), 60, "the container's port on the host")
    reachable = time.monotonic() - started

    host_text_reaches_log(lambda: docker_cli(daemon, "logs", container).stdout, port, 30)
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in qemu_engine.timings.items())
    total = sum(qemu_engine.timings.values()) + reachable
    print(
        f"\nqemu engine timings (TCG): {steps}, container run to port on host {reachable:.1f}s, "
        f"total {total:.1f}s",
        file=sys.stderr,
    )


def test_a_published_port_of_a_bridge_container_in_the_guest_answers_on_the_host(
    qemu_engine: QemuEngine,
) -> None:
    """The guest's dockerd has its default bridge and iptables rules: ``-p`` works there too."""
    port = free_port("tcp")
    args = ("-f", "-p", "80", "-h", "/www")
    run = docker_cli(
        qemu_engine.daemon, "run", "-d", "-p", f"{port}:80", qemu_engine.image, "httpd", *args
    )
    assert run.returncode == 0, run.stderr
    wait_for(lambda: tcp_open("127.0.0.1", port), 60, "the published port on the host")
    answer = host_answer("tcp", "127.0.0.1", port, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"hello from the container\n")


def test_a_bridge_container_reaches_the_hosts_loopback_as_host_docker_internal(
    qemu_engine: QemuEngine,
) -> None:
    daemon = qemu_engine.daemon
    port = free_port("tcp")
    with host_web_server(port, b"served on the host's 127.0.0.1\n"):
        wait_for(
            lambda: daemon.port_state("host-to-vm", "tcp", port, "127.0.0.1") == "active",
            15,
            f"the VM mirror of host port {port}",
        )
        url = f"http://host.docker.internal:{port}/"
        result = docker_cli(daemon, "run", "--rm", qemu_engine.image, "wget", "-qO-", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "served on the host's 127.0.0.1\n"


@pytest.mark.reliability
@pytest.mark.timeout(300)
def test_dockerd_killed_in_the_guest_is_shown_and_started_again(qemu_engine: QemuEngine) -> None:
    daemon = qemu_engine.daemon
    for container in docker_cli(daemon, "ps", "-aq").stdout.split():
        docker_cli(daemon, "rm", "-f", container)  # a new dockerd cleans up after each one
    before = status(daemon)["engine"]
    killed = daemon.cli("vm", "exec", "--", "kill", "-9", str(before["pid"]))
    assert killed.returncode == 0, killed.stderr
    seen: list[dict[str, Any]] = []

    def shown() -> bool:
        seen.append(status(daemon)["engine"])
        return bool(int(seen[-1]["restarts"]) > before["restarts"])

    wait_for(shown, 15, "the crash to show")
    assert "dockerd stopped (killed by signal 9)" in seen[-1]["detail"]
    wait_engine(daemon)
    after = status(daemon)["engine"]
    assert after["pid"] != before["pid"]
    again = docker_cli(daemon, "run", "--rm", "--net=host", qemu_engine.image, "echo", "back")
    assert again.stdout == "back\n", again.stderr
