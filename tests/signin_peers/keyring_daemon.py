"""A real keyring for the tests: a private D-Bus session bus and gnome-keyring-daemon, unlocked
with a known password, its files in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "hostnet-test-keyring"


@dataclass
class KeyringDaemon:
    env: dict[str, str]
    bus_pid: int
    folder: Path

    def stop(self) -> None:
        for pid in (*_pids_using(self.folder / "run" / "keyring"), self.bus_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _pids_using(control: Path) -> list[int]:
    """The keyring daemon we started: the process whose command line names our control folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"gnome-keyring-daemon")
            and (f"--control-directory={control}".encode() in cmdline)
        ):
            pids.append(int(entry.name))
    return pids


def start_keyring(folder: Path) -> KeyringDaemon:
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "run", "config"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    env = {
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_RUNTIME_DIR": str(folder / "run"),
        "XDG_CONFIG_HOME": str(folder / "config"),
    }
    bus = subprocess.run(
        ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1", "--nopidfile"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    address, pid = bus.stdout.split()[:2]
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    control = folder / "run" / "keyring"
    subprocess.run(
        [
            "gnome-keyring-daemon",
            "--unlock",
            "--components=secrets",
            "--daemonize",
            f"--control-directory={control}",
        ],
        input=PASSWORD,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        env={**os.environ, **env},
    )
    return KeyringDaemon(env=env, bus_pid=int(pid), folder=folder)
