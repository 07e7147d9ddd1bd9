"""Every VM backend hostnet has, in one place: the settings schema's enum for ``VmBackend``,
the CLI's choices, the app's list and the daemon's factory all read ``BACKENDS``.

Adding a backend is one new adapter file (the Backend protocol in vm/backends/protocol.py)
and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vm.backends import attach_backend, netns_backend, qemu_backend
from vm.backends.errors import VMError
from vm.backends.options import check_options
from vm.backends.protocol import Backend


@dataclass(frozen=True)
class BackendSpec:
    """A backend as users and the daemon meet it."""

    name: str  # the VmBackend value
    title: str  # what the app shows
    summary: str  # one sentence: what the VM is
    options_schema: dict[str, Any]  # JSON Schema of VmOptions for this backend
    make: Callable[[Path, dict[str, Any]], Backend]  # (vm_dir, options) -> the backend
    starts_vm: bool = True  # False: hostnet attaches to a VM someone else runs


NO_OPTIONS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {},
    "examples": [{}],
}

BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "netns",
            "Network namespace",
            "A Linux network namespace on this machine, joined by a veth pair (the default).",
            NO_OPTIONS,
            netns_backend.NetnsBackend,
        ),
        BackendSpec(
            "qemu",
            "QEMU micro-VM",
            "A Debian kernel under QEMU (KVM where usable, TCG otherwise), reached over "
            "virtio-serial.",
            qemu_backend.OPTIONS_SCHEMA,
            qemu_backend.QemuBackend,
        ),
        BackendSpec(
            "attach",
            "Existing VM",
            "A VM someone else runs (Lima, libvirt, a cloud VM) whose hostnet agent listens "
            "on vsock, TCP or a unix socket.",
            attach_backend.OPTIONS_SCHEMA,
            attach_backend.AttachBackend,
            starts_vm=False,
        ),
    )
}

DEFAULT_BACKEND = "netns"


def backend_names() -> list[str]:
    return list(BACKENDS)


def backend_spec(name: str) -> BackendSpec:
    spec = BACKENDS.get(name)
    if spec is None:
        raise VMError(
            f"unknown VM backend {name!r}",
            f"use one of {', '.join(BACKENDS)}: `hostnet settings set VmBackend {DEFAULT_BACKEND}`",
        )
    return spec


def make_backend(name: str, options: object, vm_dir: Path) -> Backend:
    """The backend ``name`` for the VM kept in ``vm_dir``, its options checked first."""
    spec = backend_spec(name)
    return spec.make(vm_dir, check_options(name, spec.options_schema, options))
