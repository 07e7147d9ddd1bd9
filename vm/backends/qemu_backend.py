"""The daemon's QEMU backend (``VmBackend: "qemu"``): boot the micro-VM with the agent in it.

The agent starts at boot as the VM's one command and serves the daemon over the
virtio-serial multiplexer (``virtio:`` transport; the host end is QEMU's chardev socket). On
a host with ``/dev/vhost-vsock`` it listens on AF_VSOCK instead, one connection per stream
(``transport: "auto"`` picks it; this path is not exercised on hosts without vhost-vsock).

``VmOptions`` read here (all optional)::

    memory_mib       guest memory, MiB (default 1024)
    cpus             virtual CPUs (default 2)
    accel            "auto" (probe KVM, fall back to TCG), "kvm" or "tcg"
    kernel           a bzImage to boot instead of Debian's kernel
    modules_dir      its lib/modules/<version> folder
    image_cache_dir  where kernels and initramfs images are kept (default STATE/vm/images)
    boot_timeout     seconds to wait for the guest to start the agent (default 90)
    stop_timeout     seconds ``down`` waits for a power-off before killing QEMU (default 15)
    transport        "auto", "virtio" (serial multiplexer) or "vsock"
    shared_folders   host folders the guest sees read-write at the same path; the daemon
                     fills it from the FilesharingDirectories setting
    engine           give the guest the container engine (true/false); the daemon fills it
                     from the ContainerEngineEnabled setting

The guest sees nothing else of the host but /usr and what runs the agent, read-only
(vm/backends/qemu_shares.py).

With ``engine`` on, where the host has Docker's binaries and mkfs.ext4, the guest also runs
the container engine (vm/backends/qemu_engine.py): an ext4 data disk ``STATE/vm/qemu/engine.img``, a
virtio-serial port of its own, and a helper that starts dockerd when the daemon's engine
supervisor asks (``guest_engine_link``; logs under ``STATE/vm/qemu/share/engine/``).

The serial console goes to ``STATE/vm/qemu/console.log``. A VM that dies on its own is
reported by ``restart_agent`` as an error carrying QEMU's account and the console's last
lines for ``RESTART_HOLD`` seconds, then booted again (the daemon's link then reconnects
and the mirrors come back). So is a guest that hangs while QEMU lives: over virtio-serial
the host pings it, and one that leaves ``LIVENESS_TIMEOUT`` (15 s) of pings unanswered
counts as dead (vm/transport/mux_liveness.py), is powered off or killed, and booted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import time
from pathlib import Path
from typing import Any

from proxy.wire import load_or_create_secret
from vm.backends.errors import VMError
from vm.backends.guest_agent_launch import guest_agent_launch
from vm.backends.protocol import GuestEngineLink, SharedKernelLink, VmEngineLink
from vm.backends.qemu import QemuConfig, QemuError, QemuExit, QemuVM
from vm.backends.qemu_engine import (
    DISK_NAME,
    LOG_FOLDER,
    SOCKET_NAME,
    engine_programs_missing,
    engine_qemu_args,
    ensure_engine_disk,
    guest_engine_script,
)
from vm.transport.address import TransportAddress
from vm.transport.mux_link import close_host_link, guest_silence
from vm.virtio_port import AGENT_PORT_NAME

VSOCK_PORT = 5123
VSOCK_CID_ANY = 0xFFFFFFFF
VHOST_VSOCK = Path("/dev/vhost-vsock")
RESTART_HOLD = 5.0  # seconds a crash stays visible as an error before the VM boots again
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "memory_mib": {"type": "integer", "minimum": 128, "maximum": 1048576,
                       "description": "guest memory, MiB (default 1024)"},
        "cpus": {"type": "integer", "minimum": 1, "maximum": 256,
                 "description": "virtual CPUs (default 2)"},
        "accel": {"type": "string", "enum": ["auto", "kvm", "tcg"],
                  "description": "accelerator: auto probes KVM and falls back to TCG"},
        "kernel": {"type": "string", "description": "a bzImage to boot instead of Debian's kernel"},
        "modules_dir": {"type": "string", "description": "the kernel's lib/modules/<version>"},
        "image_cache_dir": {"type": "string", "description": "where images are kept"},
        "boot_timeout": {"type": "number", "minimum": 1, "maximum": 3600,
                         "description": "seconds to wait for the guest's agent (default 90)"},
        "stop_timeout": {"type": "number", "minimum": 0, "maximum": 3600,
                         "description": "seconds to wait for a power-off (default 15)"},
        "transport": {"type": "string", "enum": ["auto", "virtio", "vsock"],
                      "description": "virtio-serial mux or vsock; auto picks vsock if usable"},
        "shared_folders": {"type": "array", "items": {"type": "string"},
                           "description": "folders shared read-write (FilesharingDirectories)"},
        "engine": {"type": "boolean",
                   "description": "give the guest the container engine's disk and port "
                                  "(ContainerEngineEnabled; default false)"},
    },
    "examples": [{"memory_mib": 1024, "cpus": 2, "accel": "auto"}],
}  # fmt: skip


def vsock_usable() -> bool:
    """The host can give the guest a vsock device (vhost-vsock loaded and ours to open)."""
    return VHOST_VSOCK.exists() and os.access(VHOST_VSOCK, os.R_OK | os.W_OK)


class QemuBackend:
    """The Backend protocol (vm/backends/protocol.py) for a QEMU micro-VM."""

    name = "qemu"

    def __init__(self, vm_dir: Path, options: dict[str, Any]) -> None:
        self.options = dict(options)
        self.vm_dir = vm_dir / "qemu"
        self.share_dir = self.vm_dir / "share"
        self.secret_file = self.share_dir / "secret"
        transport = self.options.get("transport", "auto")
        self.use_vsock = transport == "vsock" or (transport == "auto" and vsock_usable())
        self.cid = random.randint(3, 0x7FFFFFFF) if self.use_vsock else 0
        # The container engine runs in the guest when its setting is on (the daemon passes
        # ContainerEngineEnabled as ``engine``) and the host has its binaries (the guest runs
        # the host's /usr): a data disk and a port of its own (qemu_engine.py).
        self.engine_wanted = bool(self.options.get("engine", False))
        self.engine_missing = engine_programs_missing()
        self.with_engine = self.engine_wanted and not self.engine_missing
        self.engine_disk = self.vm_dir / DISK_NAME
        self.engine_socket = self.vm_dir / SOCKET_NAME
        self.engine_logs = self.share_dir / LOG_FOLDER
        self.vm = QemuVM(self._config())
        self.crashed: QemuExit | str | None = None
        """The crash (or hang) being reported before the VM boots again."""
        self._crashed_at = 0.0
        self._hold = RESTART_HOLD

    def _config(self) -> QemuConfig:
        opts = self.options
        cache = opts.get("image_cache_dir")
        listen = (
            f"vsock:{VSOCK_CID_ANY}:{VSOCK_PORT}" if self.use_vsock else f"virtio:{AGENT_PORT_NAME}"
        )
        launch = guest_agent_launch()
        agent = [*launch.argv, "--listen", listen, "--secret-file", "/run/hostnet/secret"]
        # The secret is copied to the guest's own tmpfs: there it belongs to the guest's root,
        # whatever host user owns the shared folder.
        engine = ""
        extra: list[str] = []
        if self.with_engine:
            engine = guest_engine_script(launch, self.engine_logs) + "; "
            extra += engine_qemu_args(self.engine_disk, self.engine_socket)
        script = (
            f"{engine}umask 077 && mkdir -p /run/hostnet && "
            f"cat {shlex.quote(str(self.secret_file))} > /run/hostnet/secret && "
            f"exec {shlex.join(agent)}"
        )
        if self.use_vsock:
            extra += ["-device", f"vhost-vsock-pci,guest-cid={self.cid}"]
        return QemuConfig(
            vm_dir=self.vm_dir,
            command=["/bin/sh", "-c", script],
            env=launch.env,
            image_cache_dir=Path(cache) if cache else None,
            kernel=Path(opts["kernel"]) if "kernel" in opts else None,
            modules_dir=Path(opts["modules_dir"]) if "modules_dir" in opts else None,
            accel=opts.get("accel", "auto"),
            memory_mib=opts.get("memory_mib", 1024),
            cpus=opts.get("cpus", 2),
            boot_timeout=float(opts.get("boot_timeout", 90.0)),
            visible_paths=launch.visible_paths,
            shared_folders=opts.get("shared_folders", []),
            extra_args=extra,
        )

    @property
    def address(self) -> TransportAddress:
        if self.use_vsock:
            return TransportAddress("vsock", cid=self.cid, port=VSOCK_PORT)
        return TransportAddress("virtio", path=str(self.vm.serial_socket_path))

    # -- Backend ---------------------------------------------------------------------------

    async def up(self) -> tuple[TransportAddress, bytes]:
        """Boot the VM unless it runs; where the agent is and the secret it checks."""
        self.share_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = load_or_create_secret(self.secret_file)
        if not self.vm.running:
            try:
                if self.with_engine:
                    self.engine_logs.mkdir(parents=True, exist_ok=True, mode=0o700)
                    await asyncio.to_thread(ensure_engine_disk, self.engine_disk)
                await self.vm.start()
            except QemuError as exc:
                raise VMError(f"{exc}\n(console log: {self.vm.console_log_path})") from None
            self.crashed = None
        return self.address, secret

    async def down(self) -> None:
        """Power off (ACPI: the agent gets SIGTERM), then quit and kill after the timeout."""
        if not self.use_vsock:
            await close_host_link(str(self.vm.serial_socket_path))
        if self.vm.running:
            await self.vm.stop(timeout=float(self.options.get("stop_timeout", 15.0)))

    def _silence(self) -> str | None:
        """Why the guest counts as hung, when its link says so (virtio-serial only)."""
        return None if self.use_vsock else guest_silence(str(self.vm.serial_socket_path))

    async def agent_alive(self) -> bool:
        """The agent is the VM's one command: the VM runs exactly as long as it does, and
        answers the link's pings unless it hangs."""
        return self.vm.running and self._silence() is None

    async def restart_agent(self) -> None:
        """After a crash or a hang: report it (VMError) for a while, then boot the VM again."""
        ended = self.vm.exit
        problem: QemuExit | str | None = None
        if ended is not None and not ended.requested:
            problem, what = ended, f"stopped: {ended.describe()}"
        elif ended is None and (hung := self._silence()) is not None:
            problem, what = hung, f"stopped answering: {hung}"
        if problem is not None:
            if self.crashed is not problem:
                self.crashed, self._crashed_at = problem, time.monotonic()
            if time.monotonic() - self._crashed_at < self._hold:
                raise VMError(
                    f"the VM {what}\n(console log: "
                    f"{self.vm.console_log_path}; booting it again in {self._hold:.0f}s)"
                )
            self._hold = min(self._hold * 2, 120.0)  # a VM that keeps crashing: back off
        if not self.use_vsock:
            await close_host_link(str(self.vm.serial_socket_path))  # a new link, not silent
        with contextlib.suppress(Exception):
            if self.vm.running:
                await self.vm.stop(timeout=5)  # a hung guest ignores the power button
        await self.up()

    def shared_kernel_link(self) -> SharedKernelLink | None:
        return None

    def guest_engine_link(self) -> GuestEngineLink | None:
        """The engine's port while the VM runs, if it was booted with one."""
        if not self.with_engine or not self.vm.running:
            return None
        return GuestEngineLink(str(self.engine_socket), self.engine_logs / "dockerd.log")

    def vm_engine_link(self) -> VmEngineLink | None:
        return None
