"""``attach`` uses the engine the attached VM runs itself, through its agent.

The VM is a network namespace the test makes, with a real agent listening on TCP in it
(the attach backend's transport, as for a VM across a network) and, for most tests, a real
dockerd the test starts there as the VM's owner would: hostnet neither starts nor stops it.
The host's docker.sock, the docker context and ``hostnet ports`` reach it through the agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from proxy.wire.secret import load_or_create_secret
from tests.engine.engine_fixture import host_text_reaches_log, needs_engine, short_home
from tests.engine.images import build_test_image
from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.integration.vm_helpers import bare_namespace, free_port, tcp_open, wait_for
from vm.engine.dockerd_command import DockerdOptions, dockerd_command
from vm.engine.layout import EngineLayout
from vm.engine.mounts import release_mounts
from vm.engine.ping import engine_answers_sync

pytestmark = needs_engine

AGENT_PORT = 5123


@dataclass
class AttachedVM:
    home: Path
    transport: str
    secret_file: Path
    engine: EngineLayout
    """The VM's own engine's files; its socket is the one the agent was told of."""
    dockerd: subprocess.Popen[bytes] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "HostNetworkingEnabled": True,
            "ContainerEngineEnabled": True,
            "VmBackend": "attach",
            "VmOptions": {"transport": self.transport, "secret_file": str(self.secret_file)},
        }


@contextlib.contextmanager
def attached_vm(with_engine: bool) -> Iterator[AttachedVM]:
    home = short_home()
    try:
        with bare_namespace(home / "vm") as vm:
            addrs = vm.addresses()
            secret_file = home / "secret"
            load_or_create_secret(secret_file)
            layout = EngineLayout.under(home / "vmstate", home / "vmrun")
            dockerd = None
            if with_engine:
                layout.ensure()
                options = DockerdOptions("overlay2", addrs["vm_ip"], addrs["vm_ip"])
                command = dockerd_command(layout, f"/run/netns/{vm.name}", options)
                dockerd = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=layout.log_file.open("ab"),
                    start_new_session=True,
                )
            transport = f"tcp:{addrs['vm_ip']}:{AGENT_PORT}"
            ready = home / "agent.ready"
            agent = subprocess.Popen(
                [
                    *["ip", "netns", "exec", vm.name, sys.executable, "-m", "vm.agent"],
                    *["--listen", transport, "--secret-file", str(secret_file)],
                    *["--ready-file", str(ready), "--engine-socket", str(layout.api_socket)],
                ],
                stdout=subprocess.DEVNULL,
                stderr=(home / "agent.log").open("wb"),
            )
            try:
                wait_for(ready.exists, 10, "the agent to listen")
                if dockerd is not None:
                    wait_for(lambda: engine_answers_sync(layout.api_socket), 60, "the VM's dockerd")
                yield AttachedVM(home, transport, secret_file, layout, dockerd)
            finally:
                agent.kill()
                agent.wait()
                if dockerd is not None:
                    dockerd.terminate()
                    try:
                        dockerd.wait(20)
                    except subprocess.TimeoutExpired:
                        dockerd.kill()
                        dockerd.wait()
                    release_mounts(layout.state_dir)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def daemon_for(vm: AttachedVM, home: str = "hn") -> Iterator[RunningDaemon]:
    daemon = start_daemon(vm.home / home, vm.settings())
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the daemon to reach the agent",
        )
        yield daemon
    finally:
        daemon.stop()


def engine_of(daemon: RunningDaemon) -> dict[str, Any]:
    return dict(daemon.client.get("/v1/status")["engine"])


def wait_engine(daemon: RunningDaemon, state: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        seen.append(engine_of(daemon))
        return bool(seen[-1]["state"] == state)

    try:
        wait_for(reached, 15, f"the engine to be {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the engine: {seen[-1]}") from None
    return seen[-1]


def docker_cli(
    daemon: RunningDaemon, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    engine = engine_of(daemon)
    env = {**daemon.env, "DOCKER_HOST": engine["docker_host"], **(env or {})}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def vm() -> Iterator[AttachedVM]:
    with attached_vm(with_engine=True) as made:
        yield made


@pytest.fixture(scope="module")
def daemon(vm: AttachedVM) -> Iterator[RunningDaemon]:
    with daemon_for(vm) as running:
        yield running


@pytest.fixture(scope="module")
def image(vm: AttachedVM) -> str:
    client = docker.DockerClient(base_url=vm.engine.docker_host, timeout=60)
    try:
        return build_test_image(client)
    finally:
        client.close()


def test_the_host_socket_reaches_the_vms_own_engine(vm: AttachedVM, daemon: RunningDaemon) -> None:
    engine = wait_engine(daemon, "running")
    assert engine["owner"] == "vm" and "neither starts nor stops" in engine["detail"]
    assert engine["storage_driver"] == "overlay2"
    host_socket = Path(engine["docker_host"].removeprefix("unix://"))
    assert host_socket == daemon.home / "run" / "docker.sock"
    assert stat.S_IMODE(host_socket.stat().st_mode) == 0o600
    assert host_socket.stat().st_uid == os.getuid()
    version = docker_cli(daemon, "version", "--format", "{{.Server.Version}}")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    # The same engine as the VM's own socket: a container made there shows here.
    direct = docker.DockerClient(base_url=vm.engine.docker_host, timeout=30)
    try:
        assert (
            docker_cli(daemon, "info", "--format", "{{.ID}}").stdout.strip() == direct.info()["ID"]
        )
    finally:
        direct.close()
    status = daemon.cli("status").stdout
    assert "engine: running (the VM's own, overlay2)" in status
    # The docker context, as for the other backends.
    context = docker_cli(
        daemon,
        "--context",
        engine["context"],
        "ps",
        env={"DOCKER_HOST": "", "DOCKER_CONFIG": engine["docker_config"]},
    )
    assert context.returncode == 0, context.stderr
    assert daemon.cli("docker-env").stdout.startswith(f"export DOCKER_HOST={engine['docker_host']}")


def test_a_net_host_container_in_the_vm_answers_on_the_host_and_names_its_owner(
    vm: AttachedVM, daemon: RunningDaemon, image: str
) -> None:
    wait_engine(daemon, "running")
    port = free_port("tcp")
    name = f"attached-{port}"
    started = docker_cli(
        daemon, "run", "-d", "--name", name, "--net=host", image, "nc", "-lk", "0.0.0.0", str(port)
    )
    assert started.returncode == 0, started.stderr
    try:
        assert name in docker_cli(daemon, "ps", "--format", "{{.Names}}").stdout
        wait_for(lambda: tcp_open("127.0.0.1", port), 15, "the container's port on the host")
        host_text_reaches_log(lambda: docker_cli(daemon, "logs", name).stdout, port, 10)

        def owner() -> dict[str, Any] | None:
            ports = json.loads(daemon.cli("ports", "--json").stdout)
            for entry in ports:
                if (entry["direction"], entry["port"]) == ("vm-to-host", port) and entry["owner"]:
                    return dict(entry["owner"])
            return None

        wait_for(lambda: (owner() or {}).get("container") is not None, 15, "the port's owner")
        found = owner()
        assert found is not None
        assert (found["container"], found["image"], found["process"]) == (name, image, "nc")
    finally:
        docker_cli(daemon, "rm", "-f", name)


def test_stopping_hostnet_leaves_the_vms_engine_and_containers_running(
    vm: AttachedVM, image: str
) -> None:
    """A daemon of its own, started and stopped here: the VM's engine outlives it."""
    direct = docker.DockerClient(base_url=vm.engine.docker_host, timeout=30)
    container = direct.containers.run(image, ["sleep", "300"], detach=True)
    try:
        with daemon_for(vm, "hn2") as daemon:  # a second user's hostnet, say
            wait_engine(daemon, "running")
            host_socket = Path(engine_of(daemon)["docker_host"].removeprefix("unix://"))
        assert not host_socket.exists()  # hostnet's relay is gone ...
        assert vm.dockerd is not None and vm.dockerd.poll() is None  # ... the VM's engine is not
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
        direct.close()


def test_with_no_engine_in_the_vm_the_status_says_none_and_docker_gets_the_reason() -> None:
    with attached_vm(with_engine=False) as vm, daemon_for(vm) as daemon:
        engine = wait_engine(daemon, "none")
        assert engine["owner"] == "vm"
        assert "no Docker Engine in this VM" in engine["detail"]
        assert str(vm.engine.api_socket) in engine["detail"]
        assert "engine: none in the VM no Docker Engine in this VM" in daemon.cli("status").stdout
        result = docker_cli(daemon, "ps")
        assert result.returncode != 0
        assert "hostnet: no Docker Engine in this VM" in result.stderr, result.stderr
        env = daemon.cli("docker-env")
        assert env.returncode == 1 and "runs no Docker Engine" in env.stderr
