"""Choosing QEMU's accelerator: KVM when it really works here, TCG otherwise.

/dev/kvm existing is not enough: on some hosts (nested virtualisation, odd CPU models) QEMU
with KVM aborts on an MSR or the guest barely moves. So KVM is probed for real: the image
boots with ``hostnet.probe`` on its command line, its /init prints PROBE_MARKER and powers off;
KVM is used only when that marker shows within a few seconds. The verdict is cached per
(QEMU binary, host kernel, guest kernel). ``HOSTNET_QEMU_ACCEL=kvm|tcg`` skips the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vm.backends.errors import VMError
from vm.backends.qemu_guest_init import PROBE_MARKER
from vm.backends.qemu_image import VMImage

ACCEL_ENV = "HOSTNET_QEMU_ACCEL"
ACCELS = ("kvm", "tcg")
KVM_DEVICE = Path("/dev/kvm")
log = logging.getLogger("hostnet.vm.qemu")


class AccelError(VMError):
    """The requested accelerator is unknown or cannot work here; says which and why."""


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str


def accel_args(accel: str, cpus: int) -> list[str]:
    """QEMU arguments for the accelerator and a matching CPU model."""
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        thread = "multi" if cpus > 1 else "single"
        # "max" gives the guest every feature TCG emulates, so host binaries built for a
        # newer x86-64 level still run inside.
        return ["-accel", f"tcg,thread={thread}", "-cpu", "max"]
    raise AccelError(f"unknown accelerator {accel!r}: use kvm or tcg")


def requested_accel(configured: str) -> str:
    """``auto``, ``kvm`` or ``tcg``: the configured value, or HOSTNET_QEMU_ACCEL for auto."""
    value = configured.strip().lower() or "auto"
    if value == "auto":
        value = os.environ.get(ACCEL_ENV, "auto").strip().lower() or "auto"
        source = f"{ACCEL_ENV}={value}"
    else:
        source = f"accel={configured!r}"
    if value not in ("auto", *ACCELS):
        raise AccelError(f"{source} is not an accelerator: use auto, kvm or tcg")
    return value


def kvm_device_problem() -> str | None:
    """Why /dev/kvm cannot be used by this process, or None when it can be opened."""
    if not KVM_DEVICE.exists():
        return "/dev/kvm does not exist (no KVM on this host)"
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user (add the user to group kvm)"
    return None


async def probe_accel(
    accel: str, qemu_binary: str, image: VMImage, timeout: float = 4.0
) -> tuple[bool, str]:
    """Boot the image's probe mode under ``accel``; (works, why) after at most ``timeout``."""
    argv = [
        qemu_binary,
        *accel_args(accel, 1),
        "-machine", "pc",
        "-m", "256",
        "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initramfs),
        "-append", "console=ttyS0 panic=-1 quiet hostnet.probe",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        return False, f"cannot run {qemu_binary}: {e.strerror}"
    assert proc.stdout is not None and proc.stderr is not None
    seen = b""
    try:
        async with asyncio.timeout(timeout):
            while PROBE_MARKER.encode() not in seen:
                chunk = await proc.stdout.read(4096)
                if not chunk:
                    break
                seen += chunk
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        stderr = (await proc.stderr.read()).decode(errors="replace").strip()
        await proc.wait()
    elapsed = time.monotonic() - started
    if PROBE_MARKER.encode() in seen:
        return True, f"{accel} booted the probe in {elapsed:.1f}s"
    last = stderr.splitlines()[-1] if stderr else ""
    if proc.returncode not in (None, 0, -signal.SIGKILL) or last:
        return False, f"{accel}: QEMU failed ({last or f'exit status {proc.returncode}'})"
    return False, f"{accel}: the guest did not reach userspace within {timeout:.0f}s"


def _probe_key(qemu_binary: str, image: VMImage) -> str:
    path = shutil.which(qemu_binary) or qemu_binary
    try:
        st = os.stat(path)
        binary = f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        binary = path
    return f"{binary}|host={os.uname().release}|guest={image.kernel_version}"


async def choose_accel(
    configured: str,
    qemu_binary: str,
    image: VMImage,
    cache_file: Path | None,
    probe_timeout: float = 4.0,
) -> AccelChoice:
    """The accelerator to boot with: forced, or KVM if its probe passes, else TCG."""
    wanted = requested_accel(configured)
    if wanted == "tcg":
        return AccelChoice("tcg", "TCG requested")
    problem = kvm_device_problem()
    if wanted == "kvm":
        if problem:
            raise AccelError(f"KVM requested but {problem}; set {ACCEL_ENV}=tcg to emulate")
        return AccelChoice("kvm", "KVM requested")
    if problem:
        return AccelChoice("tcg", problem)
    key = _probe_key(qemu_binary, image)
    cache: dict[str, dict[str, object]] = {}
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError):
            cache = json.loads(cache_file.read_text())
    verdict = cache.get(key)
    if verdict is None:
        works, why = await probe_accel("kvm", qemu_binary, image, probe_timeout)
        verdict = {"kvm": works, "reason": why}
        log.info("KVM probe: %s", why)
        if cache_file is not None:
            cache[key] = verdict
            with contextlib.suppress(OSError):
                tmp = cache_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(cache, indent=2))
                tmp.replace(cache_file)
    reason = str(verdict.get("reason", ""))
    if verdict.get("kvm"):
        return AccelChoice("kvm", reason)
    return AccelChoice("tcg", f"KVM probe failed: {reason}")
