"""The docker CLI's configuration folder: hostnet's context and its credential helper.

A docker context is a ``meta.json`` under ``contexts/meta/<sha256 of its name>/``; writing it
is what ``docker context create`` does, with no docker CLI needed. The folder is
``$DOCKER_CONFIG``, else ``$HOSTNET_HOME/docker`` when that is set (every file hostnet writes
lives there), else ``~/.docker``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.paths import Paths
from app.settings.atomic import write_atomically
from proxy.errors import HostnetError

CONTEXT_NAME = "hostnet"
HELPER_NAME = "hostnet"
"""The suffix of ``docker-credential-hostnet``, as config.json names helpers."""


DEFAULT_DOCKER_CONFIG = Path.home() / ".docker"


class DockerConfigError(ValueError, HostnetError):
    """config.json cannot be read as the docker CLI's configuration."""

    def __init__(self, problem: str, fix: str) -> None:
        ValueError.__init__(self, problem)
        HostnetError.__init__(self, problem, fix)


@dataclass(frozen=True)
class DockerConfig:
    folder: Path
    context_name: str = CONTEXT_NAME

    @classmethod
    def for_user(cls, paths: Paths) -> DockerConfig:
        explicit = os.environ.get("DOCKER_CONFIG")
        if explicit:
            return cls(Path(explicit).expanduser())
        if os.environ.get("HOSTNET_HOME"):
            return cls(paths.config_dir.parent / "docker")
        return cls(DEFAULT_DOCKER_CONFIG)

    @property
    def config_file(self) -> Path:
        return self.folder / "config.json"

    def context_file(self) -> Path:
        digest = hashlib.sha256(self.context_name.encode()).hexdigest()
        return self.folder / "contexts" / "meta" / digest / "meta.json"

    def write_context(self, docker_host: str) -> None:
        """Create the context, or point it at ``docker_host`` if it points elsewhere."""
        meta = {
            "Name": self.context_name,
            "Metadata": {"Description": "hostnet: the Docker Engine in hostnet's VM"},
            "Endpoints": {"docker": {"Host": docker_host, "SkipTLSVerify": False}},
        }
        path = self.context_file()
        try:
            if json.loads(path.read_text()) == meta:
                return
        except (OSError, ValueError):
            pass
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, json.dumps(meta).encode(), default_mode=0o644)

    def context_host(self) -> str | None:
        try:
            meta = json.loads(self.context_file().read_text())
            host = meta["Endpoints"]["docker"]["Host"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return host if isinstance(host, str) else None

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise DockerConfigError(
                f"{self.config_file} is not valid JSON ({exc})", "repair or remove it"
            ) from None
        if not isinstance(data, dict):
            raise DockerConfigError(
                f"{self.config_file} is not a JSON object", "repair or remove it"
            )
        return data

    def use_credential_helper(self, registry: str) -> None:
        """Name docker-credential-hostnet for ``registry`` in config.json, keeping the rest."""
        data = self.read()
        helpers = data.get("credHelpers")
        if not isinstance(helpers, dict):
            helpers = {}
        if helpers.get(registry) == HELPER_NAME:
            return
        helpers[registry] = HELPER_NAME
        data["credHelpers"] = helpers
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.config_file, (json.dumps(data, indent=2) + "\n").encode())
