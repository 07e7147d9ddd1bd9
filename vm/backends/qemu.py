"""The QEMU backend: a real Linux micro-VM that runs one command (the hostnet agent) at boot.

The guest's root is its own tmpfs. Only what vm/backends/qemu_shares.py lists is shared
into it by 9p, each folder at its host path: /usr, the Python and hostnet code that run the
guest command (read-only), and the folders the user shares (read-write). So the host's
python3, the repo and its venv run inside unchanged, and the rest of the host (/root, other
homes, /etc) is not there. A per-VM folder (``VM_DIR/share``) is shared read-write at its
host path too: it holds ``run.sh`` (the command), ``boot.env`` and the guest's ``etc/``.
The host reaches the guest through a virtio-serial port whose other end is a unix socket
(``serial_socket_path``), and controls QEMU through its QMP socket. The serial console goes
to ``console_log_path``.

Usage::

    vm = QemuVM(QemuConfig(vm_dir=..., command=["python3", "-m", "vm.agent"]))
    await vm.start()          # returns once the guest command runs
    ...                       # connect to vm.serial_socket_path
    exit = await vm.stop()    # ACPI power-off, then quit, then SIGKILL
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vm.backends.errors import VMError
from vm.backends.qemu_accel import AccelChoice, AccelError, accel_args, choose_accel
from vm.backends.qemu_guest_init import (
    BOOT_ENV,
    EXIT_MARKER,
    FAILED_MARKER,
    GUEST_ETC,
    READY_MARKER,
    RUN_SCRIPT,
    VM_SHARE_TAG,
)
from vm.backends.qemu_image import ImageBuildError, VMImage, ensure_image
from vm.backends.qemu_shares import (
    Share,
    ShareError,
    agent_runtime,
    guest_shares,
    root_links,
    write_guest_etc,
)
from vm.backends.qmp import QMPClient, QMPError
from vm.virtio_port import AGENT_PORT_NAME

log = logging.getLogger("hostnet.vm.qemu")

UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class QemuError(VMError):
    """The VM could not be started or controlled; the message says why and what to do."""


def default_visible_paths() -> tuple[Path, ...]:
    """Host paths the guest command needs besides /usr: hostnet's code and its Python."""
    return agent_runtime()


@dataclass
class QemuConfig:
    """What to boot and how. Only ``vm_dir`` and ``command`` are required."""

    vm_dir: Path  # console.log, qmp.sock, qemu.pid, agent.sock, share/
    command: Sequence[str]  # the guest's argv, run as root chrooted into the host's root
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    image_cache_dir: Path | None = None  # default: VM_DIR/../images
    kernel: Path | None = None  # default: Debian's kernel, fetched once
    modules_dir: Path | None = None  # lib/modules/<version> of ``kernel``
    accel: str = "auto"  # auto (probe KVM, else TCG; HOSTNET_QEMU_ACCEL applies), kvm, tcg
    memory_mib: int = 1024
    cpus: int = 2
    serial_port_name: str = AGENT_PORT_NAME
    serial_socket_path: Path | None = None  # default: VM_DIR/agent.sock
    ready_marker: str = READY_MARKER  # a console line that means "booted"
    boot_timeout: float = 90.0
    stop_grace: int = 5  # seconds the guest command gets between SIGTERM and power-off
    visible_paths: Sequence[Path] = field(default_factory=default_visible_paths)
    """Host folders shared read-only besides /usr (and ``cwd``, always shared)."""
    shared_folders: Sequence[str] = ()
    """The user's shared folders (FilesharingDirectories), shared read-write."""
    qemu_binary: str = "qemu-system-x86_64"
    kvm_probe_timeout: float = 6.0
    die_with_parent: bool = True  # SIGKILL QEMU if this process dies (no orphan VMs)
    extra_args: Sequence[str] = ()


@dataclass(frozen=True)
class QemuExit:
    """How the QEMU process ended."""

    returncode: int
    requested: bool  # True when stop() asked for it
    how: str  # "powered off", "quit", "killed", "guest command exited", "crashed"
    console_tail: str
    stderr_tail: str

    def describe(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = str(-self.returncode)
            status = f"killed by signal {name}"
        else:
            status = f"exit status {self.returncode}"
        lines = [f"QEMU {self.how} ({status})"]
        if self.stderr_tail:
            lines.append("QEMU said: " + self.stderr_tail)
        if self.console_tail:
            lines.append("last console lines:\n" + self.console_tail)
        return "\n".join(lines)


def _tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode(errors="replace").replace("\r", "")
    return "\n".join(text.strip().splitlines()[-lines:])


def _kill_me_with_parent() -> None:
    """In the forked child: ask Linux to SIGKILL it when the parent dies (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class QemuVM:
    """One QEMU micro-VM: start, reach, stop, and notice when it dies."""

    def __init__(self, config: QemuConfig) -> None:
        self.config = config
        self.vm_dir = config.vm_dir.expanduser().resolve()
        self.share_dir = self.vm_dir / "share"
        self.console_log_path = self.vm_dir / "console.log"
        self.qemu_log_path = self.vm_dir / "qemu.log"
        self.qmp_socket_path = self.vm_dir / "qmp.sock"
        self.pid_file = self.vm_dir / "qemu.pid"
        self.serial_socket_path = (
            config.serial_socket_path.expanduser().resolve()
            if config.serial_socket_path
            else self.vm_dir / "agent.sock"
        )
        self.image: VMImage | None = None
        self.accel: AccelChoice | None = None
        self.boot_seconds: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[QemuExit] | None = None
        self._stop_how: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def exit(self) -> QemuExit | None:
        """How QEMU ended, once it has."""
        if self._watcher is not None and self._watcher.done() and not self._watcher.cancelled():
            return self._watcher.result()
        return None

    # ------------------------------------------------------------------ start

    def _check_config(self) -> None:
        cfg = self.config
        if not cfg.command:
            raise QemuError("no guest command given: QemuConfig.command is empty")
        for sock in (self.serial_socket_path, self.qmp_socket_path):
            if len(os.fsencode(sock)) > UNIX_PATH_MAX:
                raise QemuError(
                    f"socket path {sock} is longer than {UNIX_PATH_MAX} bytes, the limit of a "
                    "unix socket: use a shorter HOSTNET_HOME or VM folder"
                )
        for path in (self.share_dir, *(share.path for share in self.shares())):
            if any(c.isspace() for c in str(path)):
                raise QemuError(f"{path}: paths shared with the VM may not contain whitespace")
        if cfg.memory_mib < 128:
            raise QemuError(f"memory_mib={cfg.memory_mib}: the VM needs at least 128 MiB")
        if cfg.cpus < 1:
            raise QemuError(f"cpus={cfg.cpus}: the VM needs at least one CPU")

    def shares(self) -> list[Share]:
        """The host folders this guest sees (besides its per-VM folder), outermost first."""
        extra = [*self.config.visible_paths]
        if self.config.cwd and Path(self.config.cwd).resolve() != Path("/"):
            extra.append(Path(self.config.cwd))  # the command starts there: always visible
        try:
            return guest_shares(extra, self.config.shared_folders)
        except ShareError as exc:
            raise QemuError(exc.problem, exc.fix) from None

    def _write_share(self) -> None:
        cfg = self.config
        self.share_dir.mkdir(parents=True, exist_ok=True)
        write_guest_etc(self.share_dir / GUEST_ETC)
        exports = " ".join(
            f"hn{i}:{'rw' if share.writable else 'ro'}:{share.path}"
            for i, share in enumerate(self.shares())
        )
        links = " ".join(f"{name}:{target}" for name, target in root_links())
        boot_env = (
            f"HOSTNET_VM_DIR={shlex.quote(str(self.share_dir))}\n"
            f"HOSTNET_SHARES={shlex.quote(exports)}\n"
            f"HOSTNET_LINKS={shlex.quote(links)}\n"
            f"HOSTNET_STOP_GRACE={int(cfg.stop_grace)}\n"
        )
        env = {
            "PATH": GUEST_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "linux",
            "PYTHONDONTWRITEBYTECODE": "1",  # the root is read-only
            "HOSTNET_VM_DIR": str(self.share_dir),
            "HOSTNET_VIRTIO_PORT": cfg.serial_port_name,
            **cfg.env,
        }
        lines = ["#!/bin/sh", "# The guest command, written by vm/backends/qemu.py at each start."]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        if cfg.cwd:
            lines.append(f"cd {shlex.quote(cfg.cwd)} || exit 125")
        lines.append("exec " + shlex.join(cfg.command))
        (self.share_dir / BOOT_ENV).write_text(boot_env)
        (self.share_dir / RUN_SCRIPT).write_text("\n".join(lines) + "\n")

    def qemu_argv(self, image: VMImage, accel: str) -> list[str]:
        """The QEMU command line for this VM."""
        cfg = self.config
        append = "console=ttyS0 panic=-1 quiet i8042.noaux i8042.nomux i8042.nopnp"
        exports: list[str] = []
        for i, share in enumerate(self.shares()):
            readonly = "" if share.writable else ",readonly=on"
            exports += [
                "-fsdev",
                f"local,id=fs{i},path={share.path},security_model=none{readonly},multidevs=remap",
                "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag=hn{i}",
            ]  # fmt: skip
        return [
            cfg.qemu_binary,
            "-name", "hostnet-vm,process=hostnet-vm",
            "-machine", "pc",
            *accel_args(accel, cfg.cpus),
            "-smp", str(cfg.cpus),
            "-m", str(cfg.memory_mib),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-nic", "none",
            "-kernel", str(image.kernel),
            "-initrd", str(image.initramfs),
            "-append", append,
            "-chardev", f"file,id=console0,path={self.console_log_path}",
            "-serial", "chardev:console0",
            *exports,
            "-fsdev", f"local,id=fsvm,path={self.share_dir},security_model=none,multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=fsvm,mount_tag={VM_SHARE_TAG}",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=hn0,path={self.serial_socket_path},server=on,wait=off",
            "-device", f"virtserialport,bus=vser0.0,chardev=hn0,name={cfg.serial_port_name}",
            "-device", "virtio-rng-pci",
            "-qmp", f"unix:{self.qmp_socket_path},server=on,wait=off",
            "-pidfile", str(self.pid_file),
            *cfg.extra_args,
        ]  # fmt: skip

    async def start(self) -> None:
        """Build or find the image, launch QEMU, and return once the guest is ready.

        Raises QemuError (with the console's last lines) when the VM does not get there.
        """
        if self.running:
            raise QemuError("this VM is already running")
        self._check_config()
        cfg = self.config
        self.vm_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cache = (cfg.image_cache_dir or self.vm_dir.parent / "images").expanduser().resolve()
        try:
            self.image = await asyncio.to_thread(
                ensure_image, cache, kernel=cfg.kernel, modules_dir=cfg.modules_dir
            )
            self.accel = await choose_accel(
                cfg.accel, cfg.qemu_binary, self.image, cache / "accel-probe.json",
                cfg.kvm_probe_timeout,
            )  # fmt: skip
        except (ImageBuildError, AccelError) as e:
            raise QemuError(str(e)) from e
        log.info("booting the VM with %s (%s)", self.accel.accel, self.accel.reason)
        for stale in (self.serial_socket_path, self.qmp_socket_path, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self._write_share()
        self.console_log_path.write_bytes(b"")
        self._stop_how = None
        argv = self.qemu_argv(self.image, self.accel.accel)
        started = time.monotonic()
        with self.qemu_log_path.open("wb") as qemu_log:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=qemu_log,
                    stderr=qemu_log,
                    start_new_session=True,  # the daemon's Ctrl-C must not hit QEMU directly
                    preexec_fn=_kill_me_with_parent if cfg.die_with_parent else None,
                )
            except OSError as e:
                raise QemuError(
                    f"cannot run {cfg.qemu_binary}: {e.strerror}; install qemu-system-x86"
                ) from e
        self._watcher = asyncio.create_task(self._watch(self._proc))
        try:
            await self._wait_ready(started)
        except BaseException:
            await self._kill()
            raise
        self.boot_seconds = time.monotonic() - started
        log.info("VM ready in %.1fs (accel %s)", self.boot_seconds, self.accel.accel)

    async def _wait_ready(self, started: float) -> None:
        assert self._watcher is not None
        marker = self.config.ready_marker.encode()
        failed = FAILED_MARKER.encode()
        offset = 0
        seen = b""
        while True:
            with contextlib.suppress(OSError), self.console_log_path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
                offset += len(chunk)
                seen = seen[-4096:] + chunk
            if marker in seen:
                return
            if failed in seen:
                await asyncio.sleep(0.2)  # let the rest of the message reach the log
                raise QemuError("the VM's init failed:\n" + _tail(self.console_log_path))
            if self._watcher.done():
                raise QemuError(
                    "the VM stopped while booting: " + self._watcher.result().describe()
                )
            if time.monotonic() - started > self.config.boot_timeout:
                raise QemuError(
                    f"the VM was not ready after {self.config.boot_timeout:.0f}s "
                    f"(accel {self.accel.accel if self.accel else '?'}); last console lines:\n"
                    + _tail(self.console_log_path)
                )
            await asyncio.sleep(0.05)

    async def _watch(self, proc: asyncio.subprocess.Process) -> QemuExit:
        returncode = await proc.wait()
        console = _tail(self.console_log_path)
        requested = self._stop_how is not None
        if requested:
            how = self._stop_how or "stopped"
        elif EXIT_MARKER in console:
            how = "powered off: the guest command exited"
        else:
            how = "exited unexpectedly" if returncode >= 0 else "crashed"
        result = QemuExit(
            returncode=returncode,
            requested=requested,
            how=how,
            console_tail=console,
            stderr_tail=_tail(self.qemu_log_path, lines=5),
        )
        if not requested:
            log.warning("%s", result.describe())
        for path in (self.pid_file, self.qmp_socket_path, self.serial_socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return result

    # ------------------------------------------------------------------ stop

    async def wait(self) -> QemuExit:
        """Wait until QEMU exits, for whatever reason; how it ended."""
        if self._watcher is None:
            raise QemuError("this VM was never started")
        return await asyncio.shield(self._watcher)

    async def qmp(self, command: str, **arguments: object) -> object:
        """Run one QMP command on this VM's monitor."""
        client = await QMPClient.connect(self.qmp_socket_path)
        try:
            return await client.execute(command, **arguments)
        finally:
            await client.close()

    async def _exited_within(self, seconds: float) -> bool:
        assert self._watcher is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._watcher), max(seconds, 0.0))
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 15.0) -> QemuExit:
        """Power the guest off (ACPI button: its command gets SIGTERM, then poweroff).

        After ``timeout`` seconds QEMU is told to quit, and killed if it does not.
        """
        if self._watcher is None:
            raise QemuError("this VM was never started")
        if not self._watcher.done():
            self._stop_how = "powered off"
            try:
                await self.qmp("system_powerdown")
            except QMPError as e:
                log.warning("system_powerdown failed: %s", e)
            if not await self._exited_within(timeout):
                self._stop_how = "quit"
                log.warning("the VM did not power off within %.0fs: quitting QEMU", timeout)
                with contextlib.suppress(QMPError):
                    await self.qmp("quit")
                if not await self._exited_within(3.0):
                    await self._kill()
        return await self.wait()

    async def _kill(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._stop_how = "killed"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        await self._proc.wait()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._watcher)

    async def __aenter__(self) -> QemuVM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.running:
            await self.stop()
