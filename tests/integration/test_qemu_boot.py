"""Boots real QEMU micro-VMs (TCG) and talks to them over virtio-serial.

The guest runs the host's own Python over the 9p root share, imports hostnet's ``vm`` package
from the repo, finds its port with vm.virtio_port.find_virtio_port, and echoes lines back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest

from vm.backends.qemu import QemuConfig, QemuError, QemuVM
from vm.backends.qemu_guest_init import EXIT_MARKER, READY_MARKER
from vm.backends.qemu_image import ensure_image

pytestmark = [pytest.mark.slow, pytest.mark.vm]

REPO = Path(__file__).resolve().parents[2]
IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BOOT_TIMEOUT = 75.0  # TCG on a busy 2-core machine; an idle one boots in ~5 s

# The guest side: find the port twice (the /dev/virtio-ports link made by init, and a node
# created with mknod in an empty folder, as on a VM without udev), then echo lines.
GUEST_ECHO = r"""
import os, sys, time
from pathlib import Path
from vm.virtio_port import find_virtio_port
linked = find_virtio_port(timeout=10)
os.makedirs("/tmp/nodev", exist_ok=True)
os.system("mount -t tmpfs nodev /tmp/nodev")  # the guest's /tmp is mounted nodev
made = find_virtio_port(dev_dir=Path("/tmp/nodev"))
print("guest echo: port", linked, made, flush=True)
fd = os.open(made, os.O_RDWR)
v = sys.version_info
os.write(fd, f"hello-from-guest {v.major}.{v.minor}.{v.micro} {linked} {made}\n".encode())
buf = b""
while True:
    data = os.read(fd, 65536)
    if not data:  # no host peer connected: reads return EOF until one is
        time.sleep(0.05)
        continue
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        reply = b"echo:" + line + b"\n"
        view = memoryview(reply)
        while view:
            view = view[os.write(fd, view):]
"""


@pytest.fixture(scope="session")
def vm_image_cache() -> Path:
    """The kernel and initramfs, built once for the whole run (and kept between runs)."""
    ensure_image(IMAGE_CACHE)
    return IMAGE_CACHE


def make_vm(home: Path, cache: Path, command: list[str], **kw: object) -> QemuVM:
    config = QemuConfig(
        vm_dir=home / "state" / "vm" / "qemu",
        command=command,
        env={"PYTHONPATH": str(REPO)},
        cwd=str(REPO),
        image_cache_dir=cache,
        accel="tcg",
        boot_timeout=BOOT_TIMEOUT,
        **kw,  # type: ignore[arg-type]
    )
    return QemuVM(config)


async def read_line(reader: asyncio.StreamReader, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\n"), timeout)


@pytest.mark.timeout(150)
async def test_boot_echo_and_stop(hostnet_home: Path, vm_image_cache: Path) -> None:
    """Python runs inside over 9p, bytes go both ways on virtio-serial, stop powers off."""
    vm = make_vm(hostnet_home, vm_image_cache, [sys.executable, "-c", GUEST_ECHO])
    await vm.start()
    try:
        assert vm.accel is not None and vm.accel.accel == "tcg"
        assert vm.console_log_path == hostnet_home / "state" / "vm" / "qemu" / "console.log"
        assert READY_MARKER in vm.console_log_path.read_text()
        assert vm.pid is not None and int(vm.pid_file.read_text()) == vm.pid

        reader, writer = await asyncio.open_unix_connection(
            str(vm.serial_socket_path), limit=1 << 20
        )
        hello = (await read_line(reader, 60)).decode().split()
        host_version = "{}.{}.{}".format(*sys.version_info[:3])
        assert hello[:2] == ["hello-from-guest", host_version]
        assert hello[2] == "/dev/virtio-ports/org.hostnet.agent.0"
        assert hello[3].startswith("/tmp/nodev/vport")

        lines = [b"ping-1", b"x" * 3, secrets.token_hex(48 * 1024).encode()]  # last: 96 KiB
        for line in lines:
            writer.write(line + b"\n")
        await writer.drain()
        for line in lines:
            assert await read_line(reader, 30) == b"echo:" + line + b"\n"
        writer.close()
    except BaseException:
        print(vm.console_log_path.read_text())
        raise
    finally:
        started = time.monotonic()
        ended = await vm.stop(timeout=30)
        took = time.monotonic() - started
    assert ended.requested and ended.how == "powered off", ended.describe()
    assert ended.returncode == 0
    assert took < 30
    assert "power button pressed" in vm.console_log_path.read_text()
    assert not vm.running
    assert not vm.serial_socket_path.exists() and not vm.pid_file.exists()


@pytest.mark.timeout(150)
async def test_killed_qemu_is_reported(hostnet_home: Path, vm_image_cache: Path) -> None:
    """QEMU dying under the VM (SIGKILL from outside) is noticed and told with the console."""
    vm = make_vm(hostnet_home, vm_image_cache, ["sleep", "1000"])
    await vm.start()
    try:
        pid = int(vm.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        ended = await asyncio.wait_for(vm.wait(), 10)
    finally:
        if vm.running:
            await vm.stop(timeout=5)
    assert not ended.requested
    assert ended.how == "crashed"
    assert ended.returncode == -signal.SIGKILL
    report = ended.describe()
    assert "SIGKILL" in report and READY_MARKER in report
    assert vm.exit is ended


@pytest.mark.timeout(150)
async def test_guest_command_exit_powers_off(
    hostnet_home: Path, vm_image_cache: Path, tmp_path: Path
) -> None:
    """When the guest command ends by itself, the VM powers off and says with what status.

    The command reads a file from a host folder under /tmp, which the guest's own tmpfs /tmp
    would hide unless it is kept visible (as a repo cloned under /tmp must be).
    """
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "note.txt").write_text("kept-visible\n")
    vm = make_vm(
        hostnet_home,
        vm_image_cache,
        ["sh", "-c", f"cat {kept}/note.txt; echo bye from $HOSTNET_VM_DIR; exit 3"],
        visible_paths=[kept],
    )
    await vm.start()
    try:
        ended = await asyncio.wait_for(vm.wait(), 60)
    finally:
        if vm.running:
            await vm.stop(timeout=5)
    assert not ended.requested
    assert ended.returncode == 0
    assert ended.how == "powered off: the guest command exited"
    assert f"{EXIT_MARKER} 3" in ended.console_tail
    assert f"bye from {vm.share_dir}" in ended.console_tail
    assert "kept-visible" in ended.console_tail


async def test_bad_kernel_is_a_clear_error(hostnet_home: Path, tmp_path: Path) -> None:
    """A kernel path that is not a kernel fails start() with a message naming it."""
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"not a kernel" * 100)
    vm = make_vm(hostnet_home, tmp_path / "cache", ["true"], kernel=bogus)
    with pytest.raises(QemuError, match="not an x86 bzImage"):
        await vm.start()
    assert not vm.running


OWNER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from vm.backends.qemu import QemuConfig, QemuVM

async def main():
    vm = QemuVM(QemuConfig(vm_dir=Path(sys.argv[1]), command=["sleep", "1000"],
                           image_cache_dir=Path(sys.argv[2]), accel="tcg", boot_timeout=75))
    await vm.start()
    print(vm.pid, flush=True)
    await asyncio.sleep(1000)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(150)
async def test_qemu_dies_with_its_owner(tmp_path: Path, vm_image_cache: Path) -> None:
    """A daemon that dies (SIGKILL, no cleanup) takes its VM with it: no orphan QEMU."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OWNER_SCRIPT,
        str(tmp_path / "qemu"),
        str(vm_image_cache),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    assert owner.stdout is not None
    try:
        qemu_pid = int(await asyncio.wait_for(owner.stdout.readline(), 100))
        assert _alive(qemu_pid)
    finally:
        owner.kill()
        await owner.wait()
    deadline = time.monotonic() + 10
    while _alive(qemu_pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not _alive(qemu_pid)
