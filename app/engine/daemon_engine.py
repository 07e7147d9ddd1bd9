"""The daemon's part of the engine: start it when the setting and the VM allow, stop it
otherwise, keep the docker context current, and say what it is doing. On the attach
backend the engine is the VM's own (vm/engine/vm_own_engine.py): the daemon relays the
host's docker.sock to it, and neither starts nor stops it.

Forwarding and the engine are independent: turning host networking off stops forwarding
only, and the containers keep running.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any

from app.engine.docker_config import DockerConfig, DockerConfigError
from app.engine.registry_names import cli_name
from app.paths import Paths
from app.signin.state import stored_session
from vm.backends.netns_backend import NetnsBackend
from vm.backends.protocol import Backend
from vm.backends.qemu_backend import QemuBackend
from vm.engine.guest_supervisor import GuestEngineTarget
from vm.engine.layout import EngineLayout, EngineLayoutError
from vm.engine.state import EngineState, EngineStatus
from vm.engine.supervisor import EngineSupervisor, EngineTarget
from vm.engine.vm_own_engine import VmOwnEngine, VmOwnEngineTarget

log = logging.getLogger(__name__)

REQUIRED_PROGRAMS = ("dockerd", "containerd", "runc", "nsenter", "nft")


Target = EngineTarget | GuestEngineTarget | VmOwnEngineTarget


def engine_target(backend: Backend | None) -> Target | str:
    """Where the engine of ``backend``'s VM runs, or why it cannot (with the fix)."""
    if backend is None:
        return "the VM is not up"
    link = backend.shared_kernel_link()
    if link is not None:
        return EngineTarget(netns_path=link.netns_path, gateway=link.vm_ip)
    guest = backend.guest_engine_link()
    if guest is not None:
        return GuestEngineTarget(guest)
    own = backend.vm_engine_link()
    if own is not None:
        return VmOwnEngineTarget(own)
    if isinstance(backend, NetnsBackend):
        if backend.vm.read_state() is None:
            return "the VM is not up"
        return (
            "the engine needs the daemon to run as root on the netns backend "
            "(a rootless namespace cannot run dockerd): start the daemon as root"
        )
    if backend.name == "attach":
        return "the attached VM is not up"
    if isinstance(backend, QemuBackend) and not backend.engine_wanted:
        return (
            "the qemu VM was booted with the engine off: restart it to give it the engine's "
            "disk (the app's Apply & restart, or restart the daemon)"
        )
    return (
        f"the {backend.name} VM runs no engine: it needs the VM up and dockerd, containerd, "
        "runc and mkfs.ext4 on this host (Debian's docker.io and e2fsprogs)"
    )


def missing_programs() -> list[str]:
    return [program for program in REQUIRED_PROGRAMS if shutil.which(program) is None]


class DaemonEngine:
    def __init__(self, paths: Paths, on_change: Callable[[EngineStatus], None]) -> None:
        self.layout = EngineLayout.under(paths.state_dir, paths.runtime_dir)
        self.docker_config = DockerConfig.for_user(paths)
        self.on_change = on_change
        self.status = EngineStatus(EngineState.OFF, docker_host=self.layout.docker_host)
        self._supervisor: EngineSupervisor | VmOwnEngine | None = None
        self._lock = asyncio.Lock()

    async def apply(self, enabled: bool, backend: Backend | None) -> None:
        """Run the engine when ``enabled`` and ``backend``'s VM can host it; stop it otherwise."""
        async with self._lock:
            target = engine_target(backend) if enabled else None
            if self._supervisor is not None and self._supervisor.target == target:
                return
            await self._stop()
            if not enabled:
                return self._set(EngineStatus(EngineState.OFF, docker_host=self.layout.docker_host))
            # The VM's own engine needs nothing on this host: hostnet only relays to it.
            missing = [] if isinstance(target, VmOwnEngineTarget) else missing_programs()
            if missing:
                target = (
                    f"{', '.join(missing)} not found: install Debian's docker.io, "
                    "util-linux and nftables (`make run` installs them while "
                    "ContainerEngineEnabled is on: stop hostnet and run it again)"
                )
            if isinstance(target, str):
                return self._unavailable(target)
            try:
                self.layout.check()
            except EngineLayoutError as exc:
                return self._unavailable(str(exc))
            assert target is not None
            self._supervisor = target.supervisor(self.layout, self._on_supervisor)
            self._supervisor.start()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()
            self._set(EngineStatus(EngineState.OFF, docker_host=self.layout.docker_host))

    async def _stop(self) -> None:
        if self._supervisor is not None:
            supervisor, self._supervisor = self._supervisor, None
            await supervisor.stop()

    def _unavailable(self, reason: str) -> None:
        self._set(EngineStatus(EngineState.UNAVAILABLE, reason, self.layout.docker_host))

    def _on_supervisor(self, status: EngineStatus) -> None:
        if status.state is EngineState.RUNNING and self.status.state is not EngineState.RUNNING:
            try:
                self.docker_config.write_context(self.layout.docker_host)
            except OSError as exc:
                log.warning("cannot write the docker context: %s", exc)
        if self._supervisor is not None or status.state is EngineState.OFF:
            self._set(status)

    def _set(self, status: EngineStatus) -> None:
        self.status = status
        self.on_change(status)

    def use_sign_in(self, paths: Paths) -> None:
        """Name docker-credential-hostnet for the registry hostnet is signed in to, so the
        docker CLI pulls from it with no second login (blocking: run it off the loop)."""
        session = stored_session(paths)
        if self.status.state is EngineState.OFF or session is None or session.provider != "docker":
            return
        if shutil.which("docker-credential-hostnet") is None:
            log.warning("docker-credential-hostnet is not on PATH; docker cannot use the sign-in")
        try:
            self.docker_config.use_credential_helper(cli_name(session.server))
        except (OSError, DockerConfigError) as exc:
            log.warning("cannot name the credential helper in the docker config: %s", exc)

    def docker_host(self) -> str | None:
        """The engine's DOCKER_HOST while it runs, else None."""
        return self.layout.docker_host if self.status.state is EngineState.RUNNING else None

    def to_json(self) -> dict[str, Any]:
        data = self.status.to_json()
        data["context"] = self.docker_config.context_name
        data["docker_config"] = str(self.docker_config.folder)
        return data
