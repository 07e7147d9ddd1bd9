"""Running hostnet as another user (``nobody``) from a test, wherever the clone lives.

A clone may sit under a folder other users cannot pass (a home folder, a 0700 work
folder), and so may the venv's interpreter. The other user therefore runs the system's
Python on a view of the clone: a bind mount of the repository at a path everyone can pass,
made in a private mount namespace that lives exactly as long as the command. Nothing on
the machine changes, and the view goes away with the command, even if the test is killed.
The files in the clone must still be readable by others (a clone made with umask 077 is
not); ``why_unusable`` says so, and the tests skip with that reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

# Run as root inside the new mount namespace: show REPO at VIEW, then become the command.
_BIND_THEN_EXEC = (
    "import os, subprocess, sys\n"
    "subprocess.run(['mount', '--bind', sys.argv[1], sys.argv[2]], check=True)\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


@dataclass(frozen=True)
class OtherUser:
    """Runs commands as ``uid`` with the clone visible at ``view``."""

    view: Path
    uid: int = NOBODY

    @property
    def pythonpath(self) -> str:
        site = next((REPO / ".venv" / "lib").glob("python3.*/site-packages"))
        return f"{self.view}:{self.view / site.relative_to(REPO)}"

    def argv(self, *command: str, env: dict[str, str] | None = None) -> list[str]:
        """COMMAND as the user, with the view in place and ENV (plus PYTHONPATH) set."""
        settings = {"PYTHONPATH": self.pythonpath, **(env or {})}
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-c",
            _BIND_THEN_EXEC,
            str(REPO),
            str(self.view),
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "env",
            *(f"{key}={value}" for key, value in settings.items()),
            *command,
        ]

    def hostnet(self, env: dict[str, str] | None = None) -> list[str]:
        """The ``hostnet`` command as the user: the system's Python on the view."""
        return self.argv(SYSTEM_PYTHON, "-m", "app.cli", env=env)


@contextmanager
def other_user(uid: int = NOBODY) -> Iterator[OtherUser]:
    """An OtherUser with an empty, passable folder to mount the view on."""
    top = Path(tempfile.mkdtemp(prefix="hostnet-view-"))
    try:
        top.chmod(0o755)
        (top / "repo").mkdir(mode=0o755)
        yield OtherUser(top / "repo", uid)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@functools.cache
def why_unusable() -> str | None:
    """Why tests cannot run hostnet as another user here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to drop to another user"
    for tool in ("setpriv", "unshare", "mount"):
        if not shutil.which(tool):
            return f"needs {tool} (util-linux)"
    if not Path(SYSTEM_PYTHON).exists():
        return f"needs {SYSTEM_PYTHON}"
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is {version}, the venv's packages are for {sys.version_info[:2]}"
    with other_user() as user:
        probe = subprocess.run(
            user.argv(SYSTEM_PYTHON, "-c", "import app.cli, aiohttp, pyroute2"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"user {NOBODY} cannot read this clone's files ({last}); "
            "clone it with a umask that lets others read (022)"
        )
    return None
