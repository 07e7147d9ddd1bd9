"""The QEMU guest engine's pieces without booting a VM: the data disk (a real mkfs.ext4), the
QEMU arguments, how the guest helper is launched, and the daemon's supervisor talking to a
real guest helper over a real multiplexer session (the chardev socket QEMU would serve is a
unix socket of the test's; the helper runs on this host, where no engine disk exists)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from vm.backends.errors import VMError
from vm.backends.guest_agent_launch import GuestAgentLaunch
from vm.backends.protocol import GuestEngineLink
from vm.backends.qemu_engine import (
    engine_qemu_args,
    ensure_engine_disk,
    guest_engine_argv,
    guest_engine_script,
)
from vm.backends.qemu_engine_names import DISK_SERIAL, ENGINE_PORT_NAME
from vm.engine.guest_engine import (
    EngineRequestError,
    GuestEngine,
    data_disk,
    guest_dockerd_command,
)
from vm.engine.guest_supervisor import GuestEngineSupervisor, GuestEngineTarget
from vm.engine.layout import EngineLayout
from vm.engine.state import EngineState, EngineStatus
from vm.transport.mux_session import MuxSession

EXT4_MAGIC_OFFSET = 1024 + 0x38  # the superblock starts at 1024; s_magic is at 0x38 in it


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")
def test_the_data_disk_is_a_sparse_ext4_image_made_once(tmp_path: Path) -> None:
    disk = tmp_path / "vm" / "engine.img"
    ensure_engine_disk(disk, 1024**3)
    with open(disk, "rb") as image:
        image.seek(EXT4_MAGIC_OFFSET)
        assert struct.unpack("<H", image.read(2))[0] == 0xEF53
    stat = disk.stat()
    assert stat.st_size == 1024**3
    assert stat.st_blocks * 512 < 64 * 1024**2  # sparse: the metadata only
    ensure_engine_disk(disk, 1024**3)
    assert disk.stat().st_ino == stat.st_ino  # kept, with the containers' data in it


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")
def test_a_disk_that_cannot_be_made_is_named_and_nothing_half_made_stays(tmp_path: Path) -> None:
    disk = tmp_path / "engine.img"
    with pytest.raises(VMError) as caught:
        ensure_engine_disk(disk, 4096)  # far too small for ext4
    assert str(disk) in caught.value.problem and "mkfs.ext4" in caught.value.fix
    assert list(tmp_path.iterdir()) == []


def test_qemu_gets_the_disk_by_serial_and_the_engine_port(tmp_path: Path) -> None:
    args = engine_qemu_args(tmp_path / "a,b" / "engine.img", tmp_path / "engine.sock")
    assert f"file={tmp_path}/a,,b/engine.img,if=none,id=enginedisk,format=raw" in args
    assert f"virtio-blk-pci,drive=enginedisk,serial={DISK_SERIAL}" in args
    assert f"virtserialport,bus=vser0.0,chardev=hnengine,name={ENGINE_PORT_NAME}" in args


def test_the_guest_helper_runs_as_the_agent_does(tmp_path: Path) -> None:
    source = GuestAgentLaunch(("/py", "-S", "-m", "vm.agent"), {}, ())
    assert guest_engine_argv(source) == ["/py", "-S", "-m", "vm.engine.guest_engine"]
    frozen = GuestAgentLaunch(("/usr/bin/python3", "-S", "/b/agent/hostnet-agent.pyz"), {}, ())
    assert guest_engine_argv(frozen) == [
        "env", "PYTHONPATH=/b/agent/hostnet-agent.pyz", "/usr/bin/python3", "-S", "-m",
        "vm.engine.guest_engine",
    ]  # fmt: skip
    line = guest_engine_script(source, tmp_path / "logs")
    assert line.startswith("{ /py -S -m vm.engine.guest_engine --dockerd-log ")
    assert line.endswith(f">>{tmp_path}/logs/guest-engine.log 2>&1 & }}")


def test_the_guest_finds_its_data_disk_by_serial(tmp_path: Path) -> None:
    for name, serial in (("vda", "other"), ("vdb", DISK_SERIAL)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "serial").write_text(serial + "\n")
    (tmp_path / "loop0").mkdir()  # no serial file at all
    assert data_disk(tmp_path) == Path("/dev/vdb")
    (tmp_path / "vdb" / "serial").write_text("nope\n")
    with pytest.raises(EngineRequestError, match="did not attach the engine's data disk"):
        data_disk(tmp_path)


def test_dockerd_in_the_guest_keeps_its_data_on_the_disk() -> None:
    command = guest_dockerd_command("overlay2")
    assert command[command.index("--data-root") + 1] == "/var/lib/docker"
    assert command[command.index("--storage-driver") + 1] == "overlay2"
    assert command[command.index("--host") + 1] == "unix:///run/hostnet/docker.sock"
    assert "nofile=1024:1024" in command
    gateway = command[command.index("--host-gateway-ip") + 1]
    assert gateway == command[command.index("--dns") + 1] == "192.168.65.254"


async def serve_as_qemu(path: Path, engine: GuestEngine) -> None:
    """QEMU's chardev server: one client at a time, the guest's helper behind it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            session = MuxSession(conn.fileno(), "agent", engine.on_stream)
            session.start()
            await session.finished.wait()
            conn.close()
    finally:
        listener.close()


def host_has_an_engine_disk() -> bool:
    try:
        data_disk()
    except EngineRequestError:
        return False
    return True


@pytest.mark.skipif(host_has_an_engine_disk(), reason="this machine has the engine's disk")
async def test_a_guest_that_cannot_start_dockerd_shows_why_and_is_retried(tmp_path: Path) -> None:
    serial_socket = tmp_path / "engine.sock"
    guest = asyncio.create_task(serve_as_qemu(serial_socket, GuestEngine(tmp_path / "d.log")))
    layout = EngineLayout.under(tmp_path / "state", tmp_path / "run")
    seen: list[EngineStatus] = []
    target = GuestEngineTarget(GuestEngineLink(str(serial_socket), tmp_path / "d.log"))
    supervisor = target.supervisor(layout, seen.append)
    assert isinstance(supervisor, GuestEngineSupervisor)
    supervisor.start()
    try:
        async with asyncio.timeout(10):
            while not any(s.state is EngineState.RESTARTING for s in seen):
                await asyncio.sleep(0.05)
        restarting = next(s for s in seen if s.state is EngineState.RESTARTING)
        assert "did not attach the engine's data disk" in restarting.detail
        assert str(tmp_path / "d.log") in restarting.detail
        socket_mode = os.stat(layout.api_socket).st_mode & 0o777
        assert socket_mode == 0o600
        # The host's docker.sock answers nothing while dockerd is down: the relay hangs up.
        reader, writer = await asyncio.open_unix_connection(str(layout.api_socket))
        writer.write(b"GET /_ping HTTP/1.0\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await supervisor.stop()
        guest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await guest
    assert seen[-1].state is EngineState.OFF
    assert not layout.api_socket.exists()


def test_a_frozen_builds_guest_runs_the_helper_from_the_agents_zipapp(tmp_path: Path) -> None:
    from installer.agent_zipapp import build_agent_zipapp

    zipapp = build_agent_zipapp(tmp_path)
    python = shutil.which("python3") or sys.executable
    argv = guest_engine_argv(GuestAgentLaunch((python, "-S", str(zipapp)), {}, ()))
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--dockerd-log" in done.stdout


def test_the_engine_disk_and_port_are_given_to_the_guest_only_with_the_engine_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ContainerEngineEnabled off: no data disk is made or attached, no engine port, no guest
    helper, even on a host with dockerd and mkfs.ext4; on: all three (no boot needed)."""
    from app.engine.daemon_engine import engine_target
    from vm.backends import qemu_backend
    from vm.backends.qemu import QemuVM
    from vm.backends.registry import make_backend

    monkeypatch.setattr(qemu_backend, "engine_programs_missing", list)  # a host that has them
    made: list[Path] = []
    monkeypatch.setattr(qemu_backend, "ensure_engine_disk", made.append)

    started: set[int] = set()  # QemuVMs "booted" here: their start is a stand-in

    async def start(vm: QemuVM) -> None:
        started.add(id(vm))

    monkeypatch.setattr(QemuVM, "start", start)
    monkeypatch.setattr(QemuVM, "running", property(lambda vm: id(vm) in started))

    def booted(options: dict[str, object]) -> qemu_backend.QemuBackend:
        backend = make_backend("qemu", options, tmp_path / "vm")
        assert isinstance(backend, qemu_backend.QemuBackend)
        asyncio.run(backend.up())
        assert backend.vm.running
        return backend

    off = booted({"transport": "virtio"})
    args = " ".join(off.vm.config.extra_args) + " ".join(off.vm.config.command)
    assert "enginedisk" not in args and ENGINE_PORT_NAME not in args
    assert "vm.engine.guest_engine" not in args
    assert made == [] and off.guest_engine_link() is None
    reason = engine_target(off)
    assert isinstance(reason, str) and "booted with the engine off" in reason

    on = booted({"transport": "virtio", "engine": True})
    args = " ".join(on.vm.config.extra_args) + " ".join(on.vm.config.command)
    assert "enginedisk" in args and ENGINE_PORT_NAME in args
    assert "vm.engine.guest_engine" in args
    assert made == [on.engine_disk] and on.guest_engine_link() is not None
