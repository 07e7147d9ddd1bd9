"""The container engine inside the QEMU guest: dockerd started and stopped as the host asks,
and its API socket carried to the host, all over a virtio-serial port of its own.

The guest's ``run.sh`` starts this before the agent (vm/backends/qemu_engine.py); it waits
for the host on ``ENGINE_PORT_NAME`` and serves each multiplexed stream by its header:

``api``
    a connection to dockerd's API socket (the host's docker.sock relays to it);
``start {"storage_driver": ...}``
    mount the data disk, start dockerd unless it runs; answers ``running PID``, then
    ``exited HOW`` when dockerd exits (the host's supervisor keeps this stream open to
    watch it);
``stop``
    SIGTERM to dockerd (it stops its containers), SIGKILL after ``STOP_TIMEOUT``; answers
    ``stopped``.

The data root is the ext4 disk the host attached with serial ``DISK_SERIAL`` (overlay2 cannot
live on the 9p root); cgroup2 is mounted by the guest's init.

``host.docker.internal`` works as in the namespace VM (vm/engine/host_gateway.py): the guest
has no network of its own, so a dummy interface holds the gateway address (Docker Desktop's
192.168.65.254), NAT rules send containers' traffic for it to the guest's loopback where the
mirrors of host listeners answer, and the engine's DNS server (vm/engine/dns.py) answers the
name there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from proxy.counters import ForwardCounters
from proxy.tcp_relay import counted_relay, relay_until_done
from vm.backends.qemu_engine_names import DISK_SERIAL, ENGINE_PORT_NAME
from vm.engine import host_gateway
from vm.engine.dockerd_command import DEFAULT_ULIMITS, STORAGE_DRIVERS
from vm.engine.process_stop import terminate
from vm.transport.mux_link import GuestMuxLink

log = logging.getLogger("hostnet.guest_engine")

DATA_ROOT = Path("/var/lib/docker")
EXEC_ROOT = Path("/run/docker")
RUN_DIR = Path("/run/hostnet")
API_SOCKET = RUN_DIR / "docker.sock"
CONFIG_FILE = RUN_DIR / "daemon.json"
PIDFILE = Path("/run/docker.pid")
STOP_TIMEOUT = 20.0
GATEWAY = "192.168.65.254"
"""host.docker.internal inside the guest's containers (Docker Desktop's address for it)."""
GATEWAY_LINK = "hostnet0"
API_REQUEST = b"api"
START_REQUEST = b"start "
STOP_REQUEST = b"stop"


class EngineRequestError(RuntimeError):
    """The host asked for something this guest cannot do; the message says why."""


def data_disk(sys_block: Path = Path("/sys/block")) -> Path:
    """The block device the host attached for the engine's data (by its serial)."""
    for device in sorted(sys_block.iterdir()):
        with contextlib.suppress(OSError):
            if (device / "serial").read_text().strip() == DISK_SERIAL:
                return Path("/dev") / device.name
    raise EngineRequestError(
        f"no disk with serial {DISK_SERIAL} in this VM: the host did not attach the engine's "
        "data disk (is virtio_blk in the image?)"
    )


def mounted_at(point: Path, mounts: Path = Path("/proc/self/mounts")) -> bool:
    return any(line.split()[1] == str(point) for line in mounts.read_text().splitlines())


def mount_data_root() -> None:
    if mounted_at(DATA_ROOT):
        return
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    disk = data_disk()
    done = subprocess.run(
        ["mount", "-t", "ext4", str(disk), str(DATA_ROOT)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise EngineRequestError(f"cannot mount {disk} at {DATA_ROOT}: {done.stderr.strip()}")


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise EngineRequestError(f"{' '.join(command)}: {done.stderr.strip()}")


def ensure_host_gateway() -> None:
    """The gateway address on a dummy interface, and the rules that carry it to loopback."""
    if not Path("/sys/class/net", GATEWAY_LINK).exists():
        _run(["ip", "link", "add", GATEWAY_LINK, "type", "dummy"])
        _run(["ip", "address", "add", f"{GATEWAY}/32", "dev", GATEWAY_LINK])
        _run(["ip", "link", "set", GATEWAY_LINK, "up"])
    try:
        host_gateway.apply(GATEWAY)
    except (OSError, host_gateway.HostGatewayError) as exc:
        raise EngineRequestError(f"host.docker.internal: {exc}") from None


def guest_dockerd_command(storage_driver: str) -> list[str]:
    command = [
        "dockerd",
        "--config-file", str(CONFIG_FILE),
        "--data-root", str(DATA_ROOT),
        "--exec-root", str(EXEC_ROOT),
        "--pidfile", str(PIDFILE),
        "--host", f"unix://{API_SOCKET}",
        "--storage-driver", storage_driver,
        "--default-runtime", "runc",
        "--host-gateway-ip", GATEWAY,
        "--dns", GATEWAY,
    ]  # fmt: skip
    for ulimit in DEFAULT_ULIMITS:
        command += ["--default-ulimit", ulimit]
    return command


def exit_text(returncode: int) -> str:
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"


class GuestEngine:
    """Serves the host's engine requests; owns the one dockerd of this guest."""

    def __init__(self, dockerd_log: Path) -> None:
        self.dockerd_log = dockerd_log
        self.dockerd: asyncio.subprocess.Process | None = None
        self.dns: asyncio.subprocess.Process | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def on_stream(self, stream: socket.socket, header: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(stream, header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, stream: socket.socket, header: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            if header == API_REQUEST:
                await self._relay_api(stream)
            elif header.startswith(START_REQUEST):
                await self._start(stream, json.loads(header[len(START_REQUEST) :]))
            elif header == STOP_REQUEST:
                await self._stop()
                await loop.sock_sendall(stream, b"stopped\n")
            else:
                raise EngineRequestError(f"unknown engine request {header[:40]!r}")
        except (EngineRequestError, ValueError, OSError) as exc:
            log.warning("engine request %r: %s", header[:40], exc)
            with contextlib.suppress(OSError):
                await loop.sock_sendall(stream, f"error {exc}\n".encode())
        finally:
            stream.close()

    async def _relay_api(self, stream: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(upstream, str(API_SOCKET))
        except OSError as exc:
            upstream.close()
            raise EngineRequestError(f"dockerd does not answer on {API_SOCKET}: {exc}") from None
        await relay_until_done(counted_relay(stream, upstream, ForwardCounters()))

    async def _start(self, stream: socket.socket, options: dict[str, object]) -> None:
        driver = str(options.get("storage_driver", STORAGE_DRIVERS[0]))
        if driver not in STORAGE_DRIVERS:
            raise EngineRequestError(f"storage driver {driver!r} is not one of {STORAGE_DRIVERS}")
        loop = asyncio.get_running_loop()
        proc = self.dockerd
        if proc is None or proc.returncode is not None:
            await asyncio.to_thread(mount_data_root)
            await asyncio.to_thread(ensure_host_gateway)
            await self._ensure_dns()
            for folder in (RUN_DIR, EXEC_ROOT):
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not CONFIG_FILE.exists():
                CONFIG_FILE.write_text("{}\n")
            with open(self.dockerd_log, "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *guest_dockerd_command(driver),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    cwd="/",
                )
            self.dockerd = proc
            log.info("dockerd started (pid %d, %s)", proc.pid, driver)
        await loop.sock_sendall(stream, f"running {proc.pid}\n".encode())
        returncode = await proc.wait()
        await loop.sock_sendall(stream, f"exited {exit_text(returncode)}\n".encode())

    async def _ensure_dns(self) -> None:
        """The engine's DNS server on the gateway address (started again if it stopped)."""
        if self.dns is not None and self.dns.returncode is None:
            return
        dns = ["-m", "vm.engine.dns", "--listen", GATEWAY, "--gateway", GATEWAY]
        with open(self.dockerd_log.with_name("dns.log"), "ab") as out:
            self.dns = await asyncio.create_subprocess_exec(
                sys.executable, "-S", *dns, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=out, cwd="/",
            )  # fmt: skip

    async def _stop(self) -> None:
        await terminate(self.dockerd, STOP_TIMEOUT)


async def serve(port: str, dockerd_log: Path) -> None:
    engine = GuestEngine(dockerd_log)
    link = GuestMuxLink(port, engine.on_stream)
    await link.start(find_timeout=30.0)
    log.info("serving engine requests on %s", link.device)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vm.engine.guest_engine")
    parser.add_argument("--port", default=ENGINE_PORT_NAME, help="virtio-serial port name")
    parser.add_argument("--dockerd-log", type=Path, required=True, help="where dockerd logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="guest-engine: %(message)s")
    os.umask(0o022)
    asyncio.run(serve(args.port, args.dockerd_log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
