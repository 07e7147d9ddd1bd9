"""The virtio-serial multiplexer against the raw virtio-serial stream, in one VM, one run.

One QEMU micro-VM is booted (accel auto: KVM where it works, TCG otherwise) with the agent on
its port ``org.hostnet.agent.0`` (streams through the multiplexer, relayed by the agent to a
TCP server in the VM) and a second port ``org.hostnet.bench.0`` that a plain guest program
reads and writes directly (the raw baseline). Both guest programs are the same Python code
behind a different byte stream, started through the agent (``exec`` detached).

- throughput host -> VM and VM -> host: one stream through the mux vs the raw port, MB/s;
- connections/s through the mux (open a stream to the VM server, 1 byte each way, close),
  against round trips/s on the raw port (1 byte each way): the cost of a stream's set-up
  (wire hello, challenge-response, Open, a TCP connect in the VM) over one bare round trip.

``BENCH_MUX_MIB`` (default 32; 0.25 in smoke mode) sets the bulk size, ``BENCH_MUX_SECONDS``
(default 3; 0.2 in smoke mode) the length of the rate runs, ``BENCH_MUX_ACCEL`` the
accelerator, ``HOSTNET_TEST_VM_CACHE`` the image cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.figures import figure
from tests.bench.smoke_mode import full_or_smoke

BULK_BYTES = int(float(os.environ.get("BENCH_MUX_MIB", full_or_smoke("32", "0.25"))) * (1 << 20))
RATE_SECONDS = float(os.environ.get("BENCH_MUX_SECONDS", full_or_smoke("3", "0.2")))
ROUNDS = full_or_smoke(2, 1)
SMOKE_MARKS = ("slow", "vm")
ACCEL = os.environ.get("BENCH_MUX_ACCEL", "auto")
IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BENCH_PORT_NAME = "org.hostnet.bench.0"
VM_TCP_PORT = 47311

# One command byte, then: T<u64 n> the guest reads n bytes and answers b"K";
# S<u64 n> the guest writes n bytes; P<u64 n> n one-byte ping-pongs; E one ping-pong, then
# the TCP connection ends. The raw program serves the port; the server serves TCP.
GUEST_COMMON = r"""
import os, socket, struct, sys, threading, time
def serve(read, write):
    while True:
        cmd = read(1)
        if not cmd:
            return
        if cmd == b"E":
            write(read(1))
            return
        head = b""
        while len(head) < 8:
            more = read(8 - len(head))
            if not more:
                return
            head += more
        n = struct.unpack(">Q", head)[0]
        if cmd == b"T":
            while n:
                got = read(min(n, 1 << 20))
                if not got:
                    return
                n -= len(got)
            write(b"K")
        elif cmd == b"S":
            block = b"s" * (1 << 16)
            while n:
                write(block[: min(n, len(block))])
                n -= min(n, len(block))
        elif cmd == b"P":
            for _ in range(n):
                write(read(1))
"""
GUEST_RAW = (
    GUEST_COMMON
    + r"""
from vm.virtio_port import find_virtio_port
fd = os.open(find_virtio_port(sys.argv[1], timeout=10), os.O_RDWR)
def read(n):
    while True:
        data = os.read(fd, n)
        if data:
            return data
        time.sleep(0.01)  # EOF: no host connected yet
def write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
while True:
    serve(read, write)
"""
)
GUEST_TCP = (
    GUEST_COMMON
    + r"""
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(256)
def one(c):
    with c:
        serve(c.recv, c.sendall)
while True:
    c, _ = s.accept()
    threading.Thread(target=one, args=(c,), daemon=True).start()
"""
)


class RawPort:
    """The host end of the bench port: QEMU's chardev socket, bytes as they are."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    async def read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = await self.loop.sock_recv(self.sock, n - len(data))
            if not more:
                raise ConnectionError("the bench port closed")
            data += more
        return data


async def throughput_in(sock: socket.socket, size: int) -> float:
    """Host -> VM: MB/s for ``size`` bytes, until the guest confirmed it read them all."""
    loop = asyncio.get_running_loop()
    block = b"t" * (1 << 20)
    started = time.perf_counter()
    await loop.sock_sendall(sock, b"T" + struct.pack(">Q", size))
    left = size
    while left:
        await loop.sock_sendall(sock, block[: min(left, len(block))])
        left -= min(left, len(block))
    assert await RawPort(sock).read_exact(1) == b"K"
    return size / (time.perf_counter() - started) / 1e6


async def throughput_out(sock: socket.socket, size: int) -> float:
    """VM -> host: MB/s for ``size`` bytes the guest writes."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    await loop.sock_sendall(sock, b"S" + struct.pack(">Q", size))
    left = size
    while left:
        got = await loop.sock_recv(sock, min(left, 1 << 20))
        if not got:
            raise ConnectionError("the stream ended early")
        left -= len(got)
    return size / (time.perf_counter() - started) / 1e6


async def round_trips(sock: socket.socket, seconds: float) -> float:
    """One-byte round trips per second on an open byte stream."""
    loop = asyncio.get_running_loop()
    port = RawPort(sock)
    batch = 50
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await loop.sock_sendall(sock, b"P" + struct.pack(">Q", batch))
        for _ in range(batch):
            await loop.sock_sendall(sock, b"p")
            await port.read_exact(1)
        done += batch
    return done / (time.perf_counter() - started)


async def _boot(workdir: Path) -> tuple[Any, Any, Any]:
    from app.daemon.agent_link import AgentLink
    from vm.backends.qemu import QemuVM
    from vm.backends.qemu_backend import QemuBackend

    backend = QemuBackend(
        workdir / "vm",
        {"image_cache_dir": str(IMAGE_CACHE), "accel": ACCEL, "transport": "virtio"},
    )
    raw_path = backend.vm.vm_dir / "bench.sock"
    extra = [
        "-chardev", f"socket,id=bench0,path={raw_path},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=bench0,name={BENCH_PORT_NAME}",
    ]  # fmt: skip
    backend.vm = QemuVM(dataclasses.replace(backend.vm.config, extra_args=extra))
    address, secret = await backend.up()

    class Ignore:
        """A control handler that ignores what the agent sends: only requests are used."""

        async def on_listeners(self, change: object) -> None:
            return None

        def on_request(self, wire: object, request: object) -> None:
            return None

        def on_stream_request(self, request: object) -> None:
            return None

        def on_stream_failed(self, failure: object) -> None:
            return None

    async def nothing() -> None:
        return None

    link = AgentLink(address, secret, Ignore(), on_connected=nothing, on_lost=nothing)
    link.start()
    async with asyncio.timeout(180):
        while not link.connected:
            await asyncio.sleep(0.1)
    return backend, link, raw_path


async def _exec(link: Any, argv: list[str]) -> None:
    response = await link.request("exec", {"argv": argv, "detach": True})
    if not response.ok:
        raise RuntimeError(f"exec in the VM failed: {response.result}")


async def _open_mux(address: Any, secret: bytes) -> socket.socket:
    from vm.transport.streams import open_stream

    return await open_stream(address, secret, "daemon", "tcp", "127.0.0.1", VM_TCP_PORT)


async def _measure() -> list[dict[str, Any]]:
    from vm.transport.streams import StreamRefused

    size = BULK_BYTES
    with tempfile.TemporaryDirectory(prefix="hn-bench-mux-") as tmp:
        backend, link, raw_path = await _boot(Path(tmp))
        try:
            address, secret = await backend.up()
            python = [sys.executable, "-S"]
            await _exec(link, [*python, "-c", GUEST_RAW, BENCH_PORT_NAME])
            await _exec(link, [*python, "-c", GUEST_TCP, str(VM_TCP_PORT)])
            loop = asyncio.get_running_loop()
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.setblocking(False)
            await loop.sock_connect(raw, str(raw_path))
            async with asyncio.timeout(60):  # the agent sees the VM server listen
                while True:
                    try:
                        mux = await _open_mux(address, secret)
                        break
                    except StreamRefused:
                        await asyncio.sleep(0.2)
            figures: dict[str, float] = {}
            # Alternate the routes, best of two rounds each, one in smoke mode (the VM's CPU
            # is the bottleneck and the host's other load comes and goes).
            for _round in range(ROUNDS):
                for route, sock in (("raw", raw), ("mux", mux)):
                    for name, func in (("in", throughput_in), ("out", throughput_out)):
                        value = await func(sock, size)
                        key = f"{route}-{name}"
                        figures[key] = max(figures.get(key, 0.0), value)
            figures["raw-rtt"] = await round_trips(raw, RATE_SECONDS)
            figures["mux-rtt"] = await round_trips(mux, RATE_SECONDS)
            mux.close()
            raw.close()
            opened = 0
            started = time.perf_counter()
            while time.perf_counter() - started < RATE_SECONDS:
                sock = await _open_mux(address, secret)
                await loop.sock_sendall(sock, b"Ex")
                assert await RawPort(sock).read_exact(1) == b"x"
                sock.close()
                opened += 1
            figures["mux-conn"] = opened / (time.perf_counter() - started)
            accel = backend.vm.accel.accel if backend.vm.accel else "?"
        finally:
            await link.stop()
            await backend.down()
    tag = f"(virtio-serial, {accel})"
    port_route = "raw virtio-serial port"
    rows = [
        ("mux throughput host->VM", "mux-in", "MB/s", port_route, "raw-in"),
        ("mux throughput VM->host", "mux-out", "MB/s", port_route, "raw-out"),
        ("mux 1-byte round trips on one stream", "mux-rtt", "round trips/s", port_route, "raw-rtt"),
        (
            "mux new streams (open, 1 byte each way, close)",
            "mux-conn",
            "connections/s",
            "raw port 1-byte round trips/s",
            "raw-rtt",
        ),
    ]
    return [
        figure(f"{name} {tag}", figures[key], unit, base, figures[base_key])
        for name, key, unit, base, base_key in rows
    ]


def run() -> list[dict[str, Any]]:
    from proxy.event_loop import run as run_loop

    return run_loop(_measure())


if __name__ == "__main__":
    from tests.bench.runner import format_table

    print(format_table(run()))
