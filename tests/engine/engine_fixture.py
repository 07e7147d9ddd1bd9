"""A real daemon with its Docker Engine running in a real namespace VM, and the test image.

The home folder is short (under /tmp): dockerd's containerd makes sockets under the
engine's exec root, and a unix socket path holds at most 107 bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.engine.images import build_test_image
from tests.integration.daemon_fixture import RunningDaemon, start_daemon, write_settings
from tests.integration.vm_helpers import wait_for

ENGINE_START_TIMEOUT = 90
ENGINE_SETTINGS = {"HostNetworkingEnabled": True, "ContainerEngineEnabled": True}

needs_engine = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("docker") is None,
    reason="the engine needs root and Debian's docker.io (dockerd and the docker CLI)",
)


@dataclass
class EngineSession:
    daemon: RunningDaemon
    image: str
    client: docker.DockerClient

    @property
    def docker_host(self) -> str:
        return str(self.daemon.client.get("/v1/status")["engine"]["docker_host"])

    def docker(
        self, *args: str, timeout: float = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI, as a user would type it after ``eval "$(hostnet docker-env)"``."""
        env = {**self.daemon.env, "DOCKER_HOST": self.docker_host}
        return subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def docker_popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**self.daemon.env, "DOCKER_HOST": self.docker_host}
        return subprocess.Popen(
            ["docker", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def settings(self, **changes: Any) -> None:
        """Rewrite the settings file (the watcher applies it): the engine's, plus ``changes``.
        Turning host networking on from the CLI would need a sign-in."""
        write_settings(self.daemon.home, {**ENGINE_SETTINGS, **changes})

    def engine_state(self) -> str:
        return str(self.daemon.client.get("/v1/status")["engine"]["state"])


def short_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="hn-", dir="/tmp"))


def wait_engine_running(daemon: RunningDaemon, timeout: float = ENGINE_START_TIMEOUT) -> None:
    def running() -> bool:
        engine = daemon.client.get("/v1/status")["engine"]
        assert engine["state"] != "unavailable", engine["detail"]
        return bool(engine["state"] == "running")

    wait_for(running, timeout, "the engine to run")


def engine_session(settings: dict[str, Any] | None = None) -> Iterator[EngineSession]:
    home = short_home()
    daemon = start_daemon(home, settings or ENGINE_SETTINGS)
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the agent to connect",
        )
        wait_engine_running(daemon)
        host = daemon.client.get("/v1/status")["engine"]["docker_host"]
        client = docker.DockerClient(base_url=host, timeout=60)
        session = EngineSession(daemon, build_test_image(client), client)
        yield session
        # A --rm container may go between the list, its inspect and the remove.
        for container in client.containers.list(all=True, ignore_removed=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        client.close()
    finally:
        daemon.stop()
        if not os.environ.get("HOSTNET_KEEP_ENGINE_HOME"):
            shutil.rmtree(home, ignore_errors=True)


def host_text_reaches_log(logs: Callable[[], str], port: int, timeout: float = 10) -> None:
    """Type a line into ``nc localhost PORT`` on the host and wait for it in ``logs()`` (a
    container's log): the seed page's first example, seen from both ends."""
    with subprocess.Popen(
        ["nc", "-N", "localhost", str(port)], stdin=subprocess.PIPE, text=True
    ) as client:
        client.communicate("typed on the host\n", timeout=timeout)
    wait_for(
        lambda: "typed on the host" in logs(), timeout, "the host's text in the container's log"
    )
