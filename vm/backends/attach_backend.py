"""The ``attach`` backend: an existing VM whose agent already listens somewhere.

hostnet neither starts nor stops such a VM; it only connects to its agent. If the VM runs a
Docker Engine of its own, hostnet uses it (``vm_engine_link``): the host's docker.sock
relays to it through the agent, which hostnet neither starts nor stops either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.wire import load_secret
from vm.backends.protocol import GuestEngineLink, SharedKernelLink, VmEngineLink
from vm.transport.address import TransportAddress, parse_transport

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["transport", "secret_file"],
    "properties": {
        "transport": {
            "type": "string",
            "pattern": "^(vsock:[^:]+:[0-9]+|tcp:.+:[0-9]+|unix:/.+)$",
            "description": "where the agent listens: vsock:CID:PORT, tcp:HOST:PORT or unix:PATH",
        },
        "secret_file": {
            "type": "string",
            "pattern": "^/",
            "description": "the agent's secret file (mode 0600), an absolute path",
        },
    },
    "examples": [{"transport": "vsock:3:5123", "secret_file": "/path/to/secret"}],
}


class AttachBackend:
    name = "attach"

    def __init__(self, vm_dir: Path, options: dict[str, Any]) -> None:
        self.address = parse_transport(str(options["transport"]))
        self.secret_file = Path(str(options["secret_file"]))
        self.secret: bytes | None = None

    async def up(self) -> tuple[TransportAddress, bytes]:
        self.secret = load_secret(self.secret_file)
        return self.address, self.secret

    async def down(self) -> None:
        return None

    async def agent_alive(self) -> bool:
        return True

    async def restart_agent(self) -> None:
        return None

    def shared_kernel_link(self) -> SharedKernelLink | None:
        return None

    def guest_engine_link(self) -> GuestEngineLink | None:
        return None

    def vm_engine_link(self) -> VmEngineLink | None:
        """The VM's own engine, through its agent, once ``up`` has read the secret."""
        if self.secret is None:
            return None
        return VmEngineLink(self.address, self.secret)
