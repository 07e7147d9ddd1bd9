"""What the daemon asks of a VM backend, and the optional capabilities a backend declares.

A backend brings a VM up and says where its agent listens (a transport address and the
secret both sides check). Capabilities that only some backends have are declared as
methods every backend implements, answering None where the backend lacks them, so callers
never probe with ``getattr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vm.transport.address import TransportAddress


@dataclass(frozen=True)
class SharedKernelLink:
    """A VM that is a network namespace of this very kernel, reachable over a veth pair.

    ``netns_path`` is the namespace a root daemon may enter (setns) to make sockets or
    rules inside the VM; the addresses are the two ends of the link.
    """

    netns_path: str
    host_if: str
    vm_if: str
    host_ip: str
    vm_ip: str
    host_ip6: str
    vm_ip6: str


@dataclass(frozen=True)
class GuestEngineLink:
    """A VM whose container engine runs inside the guest (vm/engine/guest_engine.py),
    reached over a virtio-serial port of its own.

    ``serial_socket`` is QEMU's host end of that port; the guest writes dockerd's log to
    ``log_file`` (a host path in the VM's state folder)."""

    serial_socket: str
    log_file: Path


@dataclass(frozen=True)
class VmEngineLink:
    """A VM that runs a container engine of its own, which hostnet neither starts nor stops
    (the attach backend): its agent, at ``address`` with ``secret``, connects an OpenEngine
    stream to that engine's API socket (vm/agent/engine_socket.py)."""

    address: TransportAddress
    secret: bytes = field(repr=False)


class Backend(Protocol):
    """One VM, as the daemon drives it."""

    name: str

    async def up(self) -> tuple[TransportAddress, bytes]:
        """Start the VM unless it runs; the agent's address and the shared secret."""
        ...

    async def down(self) -> None: ...

    async def agent_alive(self) -> bool: ...

    async def restart_agent(self) -> None:
        """Bring the agent back after it died (raises VMError while that cannot be done)."""
        ...

    def shared_kernel_link(self) -> SharedKernelLink | None:
        """The namespace and veth pair where the VM shares this kernel and we may enter it
        (root); None for other VMs and for rootless namespaces."""
        ...

    def guest_engine_link(self) -> GuestEngineLink | None:
        """Where the engine inside the guest is reached, for VMs that run one there; None
        for VMs that share this kernel (the daemon runs their engine) or run none."""
        ...

    def vm_engine_link(self) -> VmEngineLink | None:
        """Where the VM's own engine is reached, for VMs hostnet attached to (their engine
        is theirs); None for VMs whose engine hostnet runs."""
        ...
