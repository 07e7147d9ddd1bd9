"""The ``netns`` backend as the daemon drives it: a network namespace VM (vm/backends/netns.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from vm.backends.netns import NetnsVM
from vm.backends.protocol import GuestEngineLink, SharedKernelLink, VmEngineLink
from vm.transport.address import TransportAddress, parse_transport


class NetnsBackend:
    name = "netns"

    def __init__(self, vm_dir: Path, options: dict[str, Any]) -> None:
        self.vm = NetnsVM(vm_dir)

    async def up(self) -> tuple[TransportAddress, bytes]:
        await asyncio.get_running_loop().run_in_executor(None, self.vm.up)
        return parse_transport(self.vm.transport), self.vm.secret()

    async def down(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.vm.down)

    async def agent_alive(self) -> bool:
        return self.vm.is_up()

    async def restart_agent(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.vm.restart_agent)

    def shared_kernel_link(self) -> SharedKernelLink | None:
        state = self.vm.read_state()
        if state is None or state.rootless:
            return None
        return SharedKernelLink(
            netns_path=f"/run/netns/{state.name}",
            host_if=state.host_if,
            vm_if=self.vm.vm_if,
            host_ip=state.host_ip,
            vm_ip=state.vm_ip,
            host_ip6=state.host_ip6,
            vm_ip6=state.vm_ip6,
        )

    def guest_engine_link(self) -> GuestEngineLink | None:
        return None

    def vm_engine_link(self) -> VmEngineLink | None:
        return None
