"""A real ``hostnet daemon`` process on a real namespace VM, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.control_client import ControlClient
from tests.integration.vm_helpers import free_port, host_answer, start_server, tcp_open, wait_for

HOSTNET = str(Path(sys.executable).with_name("hostnet"))


@dataclass
class RunningDaemon:
    home: Path
    proc: subprocess.Popen[str]
    env: dict[str, str]

    @property
    def client(self) -> ControlClient:
        return ControlClient(self.home / "run" / "control.sock")

    @property
    def netns(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "state" / "vm" / "netns.json").read_text()))

    @property
    def vm_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns["name"]]

    def ports(self) -> list[dict[str, Any]]:
        return list(self.client.get("/v1/ports"))

    def port_state(self, direction: str, proto: str, port: int, bind: str) -> str | None:
        for entry in self.ports():
            if (entry["direction"], entry["proto"], entry["port"]) == (direction, proto, port):
                address = (
                    entry["host_address"] if direction == "vm-to-host" else entry["vm_address"]
                )
                if address == bind:
                    return str(entry["state"])
        return None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HOSTNET, *args], env=self.env, capture_output=True, text=True, timeout=30
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def write_settings(home: Path, settings: dict[str, Any]) -> None:
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings-store.json").write_text(json.dumps(settings))


def start_daemon(
    home: Path,
    settings: dict[str, Any] | None = None,
    admin: dict[str, Any] | None = None,
    prefix: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> RunningDaemon:
    """A daemon run with ``prefix`` (e.g. ``nsenter --net=PATH`` for a host namespace of
    the test's own) and ``extra_env`` added to the environment."""
    env = dict(os.environ)
    env["HOSTNET_HOME"] = str(home)
    env["HOSTNET_ADMIN_SETTINGS"] = str(home / "admin-settings.json")
    env.update(extra_env or {})
    if settings is not None:
        write_settings(home, settings)
    if admin is not None:
        (home / "admin-settings.json").write_text(json.dumps(admin))
    home.mkdir(parents=True, exist_ok=True)
    output = (home / "daemon.out").open("a")
    proc = subprocess.Popen(
        [*prefix, HOSTNET, "daemon"], env=env, stdout=output, stderr=subprocess.STDOUT, text=True
    )
    output.close()  # the daemon has its own copy; a file never fills up and blocks it
    daemon = RunningDaemon(home, proc, env)
    socket_path = home / "run" / "control.sock"

    def ready() -> bool:
        if proc.poll() is not None:
            out = (home / "daemon.out").read_text(errors="replace")[-4000:]
            raise AssertionError(f"daemon exited with {proc.returncode}: {out}")
        if not socket_path.exists():
            return False
        try:
            status = daemon.client.get("/v1/status")
        except OSError:
            return False
        return bool(status["vm"]["state"] == "up")

    try:
        wait_for(ready, 20, "the daemon to start")
    except BaseException:
        # A daemon too slow to start (a loaded machine) must not outlive the failed test.
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return daemon


def daemon_session(home: Path, settings: dict[str, Any]) -> Iterator[RunningDaemon]:
    daemon = start_daemon(home, settings)
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the agent to connect",
        )
        yield daemon
    finally:
        daemon.stop()
        time.sleep(0)


def assert_vm_port_mirrored(daemon: RunningDaemon, vm_prefix: list[str], payload: bytes) -> None:
    """Once the daemon reaches its agent, a TCP server started with ``vm_prefix`` answers
    ``payload`` on the host's 127.0.0.1 through a mirror."""
    wait_for(
        lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
        10,
        "the daemon to reach the agent",
    )
    port = free_port("tcp")
    assert not tcp_open("127.0.0.1", port)
    server = start_server(vm_prefix, "tcp", "127.0.0.1", port)
    try:
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active",
            10,
            f"the host mirror of VM port {port}",
        )
        assert host_answer("tcp", "127.0.0.1", port, payload) == b"echo:" + payload
    finally:
        server.kill()
        server.wait()
