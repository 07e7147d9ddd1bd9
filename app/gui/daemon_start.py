"""Start the daemon when none runs: ``hostnet daemon`` detached in its own session, its
output appended to the daemon log, so it outlives the GUI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.control_client import ControlClient, ControlError, DaemonUnavailable
from app.paths import Paths


def daemon_answers(paths: Paths, timeout: float = 2.0) -> bool:
    try:
        ControlClient(paths.control_socket, timeout=timeout).get("/v1/status")
    except (DaemonUnavailable, ControlError, OSError):
        return False
    return True


def daemon_command() -> list[str]:
    script = Path(sys.executable).with_name("hostnet")
    if script.exists():
        return [str(script), "daemon"]
    return [sys.executable, "-m", "app.cli", "daemon"]


def spawn_daemon(paths: Paths) -> subprocess.Popen[bytes]:
    """``hostnet daemon`` in a new session; stdout and stderr go to the daemon log."""
    paths.ensure()
    fd = os.open(paths.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            daemon_command(),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)


def ensure_daemon(paths: Paths) -> subprocess.Popen[bytes] | None:
    """The spawned daemon, or None when one already answers."""
    if daemon_answers(paths):
        return None
    return spawn_daemon(paths)


def read_log_tail(path: Path, size: int = 16384) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - size, 0))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
