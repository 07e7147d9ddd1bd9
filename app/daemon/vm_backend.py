"""Choosing and running the VM backend the settings name, from the daemon."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from proxy.wire import load_secret
from vm.backends.netns import NetnsVM, VMError
from vm.transport.address import TransportAddress, parse_transport


class Backend(Protocol):
    name: str

    async def up(self) -> tuple[TransportAddress, bytes]: ...

    async def down(self) -> None: ...

    async def agent_alive(self) -> bool: ...

    async def restart_agent(self) -> None: ...


@dataclass
class NetnsBackend:
    vm: NetnsVM
    name: str = "netns"

    async def up(self) -> tuple[TransportAddress, bytes]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.vm.up)
        return parse_transport(self.vm.transport), self.vm.secret()

    async def down(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.vm.down)

    async def agent_alive(self) -> bool:
        return self.vm.is_up()

    async def restart_agent(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.vm.restart_agent)

    def netns_path(self) -> str | None:
        """The VM's named namespace, which a root daemon can enter; None when rootless."""
        state = self.vm.read_state()
        if state is None or state.rootless:
            return None
        return f"/run/netns/{state.name}"


@dataclass
class AttachBackend:
    """An existing VM whose agent already listens somewhere; hostnet neither starts nor stops it."""

    address: TransportAddress
    secret_file: Path
    name: str = "attach"

    async def up(self) -> tuple[TransportAddress, bytes]:
        return self.address, load_secret(self.secret_file)

    async def down(self) -> None:
        return None

    async def agent_alive(self) -> bool:
        return True

    async def restart_agent(self) -> None:
        return None


def make_backend(name: str, options: dict[str, Any], vm_dir: Path) -> Backend:
    if name == "netns":
        return NetnsBackend(NetnsVM(vm_dir))
    if name == "attach":
        transport = options.get("transport")
        secret = options.get("secret_file")
        if not isinstance(transport, str) or not isinstance(secret, str):
            raise VMError(
                'the attach backend needs VmOptions {"transport": "vsock:CID:PORT", '
                '"secret_file": "/path/to/secret"}: set them with `hostnet settings set VmOptions`'
            )
        return AttachBackend(parse_transport(transport), Path(secret))
    if name == "qemu":
        from vm.backends.qemu_daemon import QemuBackend

        backend: Backend = QemuBackend(vm_dir, options)
        return backend
    raise VMError(f"unknown VM backend {name!r}: use netns, qemu or attach")
