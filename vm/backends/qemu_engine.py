"""What the QEMU backend adds so that a container engine runs inside its guest.

- A data disk: a sparse ext4 image in the VM's state folder (``mkfs.ext4`` on the host; no
  loop mount), attached as virtio-blk with serial ``DISK_SERIAL``. overlay2 cannot live on
  the guest's 9p folders.
- A virtio-serial port of its own, ``ENGINE_PORT_NAME``: the engine's requests and its API
  streams are multiplexed over it, apart from the agent's link.
- The guest's engine helper (vm/engine/guest_engine.py), started by ``run.sh`` before the
  agent; dockerd itself starts when the host's supervisor asks.

dockerd, containerd and runc come from the host's /usr, which the guest sees by 9p.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from vm.backends.errors import VMError
from vm.backends.guest_agent_launch import GuestAgentLaunch
from vm.backends.qemu_engine_names import DISK_SERIAL, ENGINE_PORT_NAME

DISK_SIZE = 64 * 1024**3
"""Bytes the data disk may grow to; the image file is sparse, so it takes what is written."""
DISK_NAME = "engine.img"
SOCKET_NAME = "engine.sock"
LOG_FOLDER = "engine"  # in the per-VM shared folder: the guest writes the logs there
HOST_PROGRAMS = ("dockerd", "containerd", "runc", "mkfs.ext4")


def engine_programs_missing() -> list[str]:
    """What the host lacks for an engine in the guest (the guest runs the host's binaries)."""
    return [program for program in HOST_PROGRAMS if shutil.which(program) is None]


def ensure_engine_disk(path: Path, size: int = DISK_SIZE) -> None:
    """Make the sparse ext4 image unless it exists; nothing half-made is left on failure."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as image:
        image.truncate(size)
    done = subprocess.run(
        ["mkfs.ext4", "-F", "-q", "-L", DISK_SERIAL, str(partial)], capture_output=True, text=True
    )
    if done.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise VMError(
            f"cannot make the engine's data disk {path}: {done.stderr.strip()}",
            "install e2fsprogs (mkfs.ext4) and check the free space of the state folder",
        )
    os.replace(partial, path)


def engine_qemu_args(disk: Path, serial_socket: Path) -> list[str]:
    """The data disk and the engine's virtio-serial port (on the agent's controller)."""
    drive_file = str(disk).replace(",", ",,")  # QEMU's option syntax doubles commas
    return [
        "-drive", f"file={drive_file},if=none,id=enginedisk,format=raw",
        "-device", f"virtio-blk-pci,drive=enginedisk,serial={DISK_SERIAL}",
        "-chardev", f"socket,id=hnengine,path={serial_socket},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=hnengine,name={ENGINE_PORT_NAME}",
    ]  # fmt: skip


def guest_engine_argv(launch: GuestAgentLaunch) -> list[str]:
    """The guest engine helper, run the way the agent is (its Python, its packages)."""
    if launch.argv[-2:] == ("-m", "vm.agent"):
        return [*launch.argv[:-1], "vm.engine.guest_engine"]
    # A frozen build runs the agent's zipapp; its packages import from it by path.
    python, zipapp = launch.argv[0], launch.argv[-1]
    return ["env", f"PYTHONPATH={zipapp}", python, "-S", "-m", "vm.engine.guest_engine"]


def guest_engine_script(launch: GuestAgentLaunch, log_folder: Path) -> str:
    """A shell line for ``run.sh``: the helper in the background, its output in the log."""
    argv = [*guest_engine_argv(launch), "--dockerd-log", str(log_folder / "dockerd.log")]
    log = shlex.quote(str(log_folder / "guest-engine.log"))
    return f"{{ {shlex.join(argv)} >>{log} 2>&1 & }}"
