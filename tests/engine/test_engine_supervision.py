"""The engine as the daemon runs it: a crash is shown and restarted; the docker context and
``hostnet docker-env`` reach it; ``hostnet status`` shows both."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import docker

from tests.engine.engine_fixture import (
    ENGINE_SETTINGS,
    EngineSession,
    needs_engine,
    short_home,
    wait_engine_running,
)
from tests.engine.images import build_test_image
from tests.integration.daemon_fixture import start_daemon, write_settings
from tests.integration.vm_helpers import wait_for
from vm.engine.mounts import mounts_under

pytestmark = needs_engine


def test_docker_env_and_the_hostnet_context_reach_the_engine(engine: EngineSession) -> None:
    env = engine.daemon.env
    script = 'eval "$(hostnet docker-env)" && docker info --format "{{.Name}} {{.Driver}}"'
    path = f"{os.path.dirname(engine.daemon.cli('--version').args[0])}:{env['PATH']}"
    shell = subprocess.run(
        ["bash", "-c", script],
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split()[1] == engine.client.info()["Driver"]
    printed = engine.daemon.cli("docker-env").stdout
    assert f"export DOCKER_HOST=unix://{engine.daemon.home}/run/docker.sock" in printed
    assert f"export DOCKER_CONFIG={engine.daemon.home}/docker" in printed
    # The context, as `docker context use hostnet` would pick it.
    context = subprocess.run(
        ["docker", "--context", "hostnet", "version", "--format", "{{.Server.Version}}"],
        env={**env, "DOCKER_CONFIG": str(engine.daemon.home / "docker")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert context.returncode == 0, context.stderr
    assert context.stdout.strip() == engine.client.version()["Version"]
    socket_mode = (engine.daemon.home / "run" / "docker.sock").stat().st_mode & 0o777
    assert socket_mode == 0o600
    status = engine.daemon.cli("status").stdout
    assert "engine: running" in status
    assert "docker context use hostnet" in status
    assert 'eval "$(hostnet docker-env)"' in status


def test_a_crashed_engine_is_shown_and_started_again(engine: EngineSession) -> None:
    """dockerd killed: shown at once, then started again (under load the first new dockerd
    may time out waiting for its containerd; then another try follows, also shown)."""
    before = engine.daemon.client.get("/v1/status")["engine"]
    os.kill(before["pid"], signal.SIGKILL)
    seen: list[dict[str, object]] = []

    def shown() -> bool:
        current = engine.daemon.client.get("/v1/status")["engine"]
        seen.append(current)
        return int(current["restarts"]) > before["restarts"]

    wait_for(shown, 10, "the crash to show")
    assert "dockerd stopped (killed by signal 9)" in str(seen[-1]["detail"])
    wait_engine_running(engine.daemon)
    after = engine.daemon.client.get("/v1/status")["engine"]
    assert after["pid"] != before["pid"]
    assert f"restarted {after['restarts']} time(s)" in engine.daemon.cli("status").stdout
    again = engine.docker("run", "--rm", engine.image, "echo", "back")
    assert again.stdout == "back\n", again.stderr


def test_the_setting_starts_the_engine_and_a_daemon_stop_leaves_nothing_behind() -> None:
    home = short_home()
    daemon = start_daemon(home, {"HostNetworkingEnabled": True})
    try:
        assert daemon.client.get("/v1/status")["engine"]["state"] == "off"
        assert "ContainerEngineEnabled true" in daemon.cli("status").stdout
        refused = daemon.cli("docker-env")
        assert refused.returncode == 1
        assert "ContainerEngineEnabled true" in refused.stderr
        write_settings(home, ENGINE_SETTINGS)
        wait_engine_running(daemon)
        client = docker.DockerClient(base_url=f"unix://{home}/run/docker.sock", timeout=60)
        image = build_test_image(client)
        client.containers.run(image, ["sleep", "600"], detach=True, init=True)
        client.close()
        netns = Path("/run/netns", daemon.netns["name"])
    finally:
        daemon.stop()
    try:
        assert mounts_under(home) == []
        assert not netns.exists()
        assert not [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit() and str(home).encode() in _cmdline(pid)
        ]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
