"""The engine as the daemon runs it: a crash is shown and restarted; the docker context and
``hostnet docker-env`` reach it; ``hostnet status`` shows both."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.engine.engine_fixture import EngineSession, needs_engine, wait_engine_running
from tests.integration.vm_helpers import wait_for

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
