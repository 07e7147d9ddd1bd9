"""Connection-rate load: connect, 1 byte each way, close; a server and a client on uvloop.

``python -m tests.bench.conn_rate serve [--host H] --port P`` answers each connection's first byte
with one byte and closes. ``python -m tests.bench.conn_rate client [--host H] --port P --seconds S
--concurrency N`` keeps N connections in flight for S seconds and prints JSON:
``{"connections", "seconds", "per_second", "p50_ms", "p99_ms", "errors",
"busy_us_per_connection"}``. Latency is from the start of connect() to the reply byte.
``busy_us_per_connection`` is the CPU time all cores spent busy during the measured seconds
(/proc/stat is the machine's, in any namespace) per connection: with the same client and
server on every route, what one route costs more than another is its forwarding, in
processes and in the kernel alike. Both sides use protocols (no per-operation futures) so
the load generator costs as little CPU as Python allows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from typing import cast

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]


class OneByteServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"y")
        self.transport.close()


class OneByteClient(asyncio.Protocol):
    def __init__(self, replied: asyncio.Future[None]) -> None:
        self.replied = replied

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(b"x")

    def data_received(self, data: bytes) -> None:
        if not self.replied.done():
            self.replied.set_result(None)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.replied.done():
            self.replied.set_exception(exc or ConnectionError("closed before the reply"))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OneByteServer, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy so far: /proc/stat's first line less idle and
    iowait."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


async def busy_between(start: float, end: float) -> float:
    """The machine's busy CPU seconds from ``start`` to ``end`` (``perf_counter`` times)."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    before = machine_busy_seconds()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    return machine_busy_seconds() - before


async def one_connection(loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
    replied: asyncio.Future[None] = loop.create_future()
    await loop.create_connection(lambda: OneByteClient(replied), host, port)
    await asyncio.wait_for(replied, 10)


async def client(
    host: str, port: int, seconds: float, concurrency: int, warmup: float
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    start = time.perf_counter() + warmup
    end = start + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while True:
            began = time.perf_counter()
            if began >= end:
                return
            try:
                await one_connection(loop, host, port)
            except (OSError, TimeoutError, ConnectionError):
                errors += 1
                await asyncio.sleep(0.01)
                continue
            if began >= start:
                latencies.append(time.perf_counter() - began)

    busy = asyncio.ensure_future(busy_between(start, end))
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    busy_seconds = await busy
    latencies.sort()
    count = len(latencies)
    if not count:
        raise SystemExit(f"no connection to {host}:{port} completed ({errors} errors)")
    return {
        "connections": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "p50_ms": latencies[count // 2] * 1e3,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1e3,
        "errors": errors,
        "busy_us_per_connection": busy_seconds / count * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.conn_rate")
    sub = parser.add_subparsers(dest="mode", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, required=True)
    client_parser = sub.add_parser("client")
    client_parser.add_argument("--host", default="127.0.0.1")
    client_parser.add_argument("--port", type=int, required=True)
    client_parser.add_argument("--seconds", type=float, default=3.0)
    client_parser.add_argument("--concurrency", type=int, default=32)
    client_parser.add_argument("--warmup", type=float, default=0.3)
    args = parser.parse_args()
    run = uvloop.run if uvloop is not None else asyncio.run
    if args.mode == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            run(serve(args.host, args.port))
        return 0
    result = run(client(args.host, args.port, args.seconds, args.concurrency, args.warmup))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    sys.exit(main())
