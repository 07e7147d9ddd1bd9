"""Where hostnet keeps the user's files.

With ``HOSTNET_HOME`` set, everything lives under it (tests set it to a temporary folder);
otherwise the platform's user directories, from platformdirs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "hostnet"
DEFAULT_ADMIN_SETTINGS = Path("/etc/hostnet/admin-settings.json")


@dataclass(frozen=True)
class Paths:
    """The folders and files of one user's hostnet."""

    config_dir: Path
    state_dir: Path
    runtime_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings-store.json"

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def daemon_pid_file(self) -> Path:
        return self.runtime_dir / "daemon.pid"

    @property
    def vm_dir(self) -> Path:
        return self.state_dir / "vm"

    @property
    def daemon_log(self) -> Path:
        return self.log_dir / "daemon.log"

    def ensure(self) -> None:
        """Create every folder, private to the user (0700)."""
        for folder in (
            self.config_dir,
            self.state_dir,
            self.runtime_dir,
            self.log_dir,
            self.vm_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def user_paths() -> Paths:
    home = os.environ.get("HOSTNET_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(
            config_dir=root / "config",
            state_dir=root / "state",
            runtime_dir=root / "run",
            log_dir=root / "log",
        )
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (a root shell, a container) platformdirs warns and falls
        # back to /tmp/runtime-$UID, which is what we want anyway.
        warnings.simplefilter("ignore")
        runtime = Path(dirs.user_runtime_dir)
    return Paths(
        config_dir=Path(dirs.user_config_dir),
        state_dir=Path(dirs.user_state_dir),
        runtime_dir=runtime,
        log_dir=Path(dirs.user_log_dir),
    )


def admin_settings_path() -> Path:
    override = os.environ.get("HOSTNET_ADMIN_SETTINGS")
    if override:
        return Path(override)
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / "admin-settings.json"
