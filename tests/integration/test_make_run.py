"""``make run``, the README's first command: it installs what running needs (the default VM's
packages, plus QEMU's only when VmBackend is qemu and the Docker Engine's only when
ContainerEngineEnabled is on), never the test tools, and then opens the
desktop app when there is a display or runs the daemon in the foreground when there is none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.control_client import ControlClient
from tests.integration.vm_helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "installer" / "setup-dev.sh"
# What only the tests and benchmarks drive: `make run` must not install any of it.
TEST_TOOLS = {"xvfb", "docker-registry", "openssh-server", "socat", "iperf3", "gnome-keyring"}
QEMU = {"qemu-system-x86", "busybox-static"}
ENGINE = {"docker.io"}  # nftables is a run-time package: the kernel path writes its rules with it


def listed(home: Path, mode: str) -> set[str]:
    env = {**os.environ, "HOSTNET_HOME": str(home)}
    env["HOSTNET_ADMIN_SETTINGS"] = str(home / "admin-settings.json")
    result = subprocess.run(
        [str(SETUP), mode, "--list-packages"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def choose(home: Path, **settings: object) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings-store.json").write_text(json.dumps(settings))


def test_run_installs_the_default_vm_and_no_test_tools(tmp_path: Path) -> None:
    packages = listed(tmp_path, "run")
    assert {"iproute2", "python3-venv", "libxcb-cursor0"} <= packages
    assert not packages & TEST_TOOLS, packages & TEST_TOOLS
    assert not packages & QEMU, "QEMU is for the qemu backend only"
    assert not packages & ENGINE, "the Docker Engine is off by default"


def test_run_adds_qemu_when_the_backend_is_qemu(tmp_path: Path) -> None:
    choose(tmp_path, VmBackend="qemu")
    packages = listed(tmp_path, "run")
    assert packages >= QEMU
    assert not packages & (TEST_TOOLS | ENGINE)


def test_run_adds_the_engine_when_it_is_on(tmp_path: Path) -> None:
    choose(tmp_path, ContainerEngineEnabled=True)
    packages = listed(tmp_path, "run")
    assert packages >= ENGINE
    assert not packages & (TEST_TOOLS | QEMU)


def test_dev_installs_everything_the_tests_drive(tmp_path: Path) -> None:
    packages = listed(tmp_path, "dev")
    assert packages >= TEST_TOOLS | QEMU | ENGINE | listed(tmp_path, "run")


def test_unknown_mode_is_refused_with_the_usage() -> None:
    result = subprocess.run([str(SETUP), "test"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "use: installer/setup-dev.sh [run|dev]" in result.stderr


class MakeRun:
    """``make run`` in its own process group, with HOSTNET_HOME at ``home``."""

    def __init__(self, home: Path, display: dict[str, str]) -> None:
        self.home = home
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DISPLAY", "WAYLAND_DISPLAY")
        }
        self.env.update(
            HOSTNET_HOME=str(home),
            HOSTNET_ADMIN_SETTINGS=str(home / "admin-settings.json"),
            **display,
        )
        self.output = home.parent / "make-run.out"
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(
                ["make", "--no-print-directory", "run"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def daemon_up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"make run ended with {self.proc.returncode}: {self.text()}")
        try:
            status = ControlClient(self.home / "run" / "control.sock").get("/v1/status")
        except OSError:
            return False
        return bool(status["vm"]["state"] == "up")

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def child_argv(self) -> list[str]:
        """The command make runs (the recipe's shell execs it)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        (child,) = children.split()
        return Path(f"/proc/{child}/cmdline").read_text().rstrip("\0").split("\0")

    def stop(self) -> None:
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "hostnet"), "daemon", "--stop"],
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[list[MakeRun]]:
    started: list[MakeRun] = []
    yield started
    for run in started:
        run.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the namespace VM needs root")
def test_without_a_display_make_run_is_the_daemon_in_the_foreground(
    tmp_path: Path, make_run: list[MakeRun]
) -> None:
    run = MakeRun(tmp_path / "home", {})
    make_run.append(run)
    wait_for(run.daemon_up, 180, "make run's daemon")
    assert "no display" in run.text()
    assert run.child_argv()[-2:] == [str(REPO / ".venv" / "bin" / "hostnet"), "daemon"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the namespace VM needs root")
def test_with_a_display_make_run_opens_the_desktop_app(
    tmp_path: Path, make_run: list[MakeRun]
) -> None:
    # Qt draws offscreen: what is checked is that make run chose the app, which starts the daemon.
    run = MakeRun(tmp_path / "home", {"DISPLAY": ":99", "QT_QPA_PLATFORM": "offscreen"})
    make_run.append(run)
    wait_for(run.daemon_up, 180, "the daemon the desktop app starts")
    assert "opening the desktop app" in run.text()
    assert run.child_argv()[-1] == str(REPO / ".venv" / "bin" / "hostnet")  # no command: the app
