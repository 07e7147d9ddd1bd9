"""Where the engine keeps its files: data under hostnet's state folder, the API socket in its
runtime folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.errors import HostnetError

UNIX_PATH_MAX = 107
"""sun_path holds 108 bytes with the terminating NUL."""

CONTAINERD_SOCKET_TAIL = "/containerd/containerd.sock.ttrpc"
"""The longest socket dockerd's own containerd makes under the exec root."""


class EngineLayoutError(ValueError, HostnetError):
    """A path the engine needs is too long for a unix socket."""

    def __init__(self, problem: str, fix: str) -> None:
        ValueError.__init__(self, problem)
        HostnetError.__init__(self, problem, fix)


@dataclass(frozen=True)
class EngineLayout:
    """The engine's files for one VM: ``state_dir`` (data, logs, pidfile) and ``api_socket``."""

    state_dir: Path
    api_socket: Path

    @classmethod
    def under(cls, state_dir: Path, runtime_dir: Path) -> EngineLayout:
        return cls(state_dir=state_dir / "engine", api_socket=runtime_dir / "docker.sock")

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.state_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "dockerd.log"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "daemon.json"

    @property
    def dns_pidfile(self) -> Path:
        return self.state_dir / "dns.pid"

    @property
    def dns_log(self) -> Path:
        return self.state_dir / "dns.log"

    @property
    def docker_host(self) -> str:
        """The value of DOCKER_HOST that reaches this engine."""
        return f"unix://{self.api_socket}"

    def check(self) -> None:
        """Refuse folders so deep that dockerd's own sockets could not be made there."""
        for path in (str(self.api_socket), f"{self.exec_root}{CONTAINERD_SOCKET_TAIL}"):
            if len(path.encode()) > UNIX_PATH_MAX:
                raise EngineLayoutError(
                    f"the engine's socket path {path} is longer than {UNIX_PATH_MAX} bytes",
                    "set HOSTNET_HOME to a shorter folder",
                )

    def ensure(self) -> None:
        self.check()
        for folder in (self.state_dir, self.data_root, self.exec_root, self.api_socket.parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.config_file.exists():
            # Our own (empty) daemon.json, so a host's /etc/docker/daemon.json does not apply.
            self.config_file.write_text("{}\n")
