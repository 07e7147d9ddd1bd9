"""The relay engine on loopback against no relay (direct) and socat, in one run.

- TCP bulk, 1 and 4 streams (iperf3): Gbit/s, and the relay's CPU.
- Connection rate: connect, 1 byte each way, close, 32 in flight: connections/s, p99 ms.
- UDP at 30,000 datagrams/s of 1,200 bytes (iperf3 -u): loss %, and the relay's CPU.

Every relay runs for the whole measurement and the routes (direct, socat, hostnet) take
turns, round after round; a figure is the median of its rounds. Taking turns spreads the
machine's changing load over all routes alike, which matters here: with 2 cores, the load
generator, the server and the relay share them, and so does whatever else runs meanwhile.

The event-loop splice was measured against blocking splices on a worker pool (one thread
per direction, commit 593913b): equal for bulk, about half the connection rate with 4x the
p99 for short connections, so the pool was dropped again.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.bench import tools
from tests.bench.figures import figure
from tests.bench.smoke_mode import SMOKE, full_or_smoke

BULK_SECONDS = 3
BULK_ROUNDS = full_or_smoke(2, 1)
CONN_SECONDS = full_or_smoke(1.5, 0.2)
CONN_WARMUP = full_or_smoke(0.3, 0.05)
CONN_ROUNDS = full_or_smoke(3, 1)
CONCURRENCY = 32
UDP_SECONDS = 3
UDP_ROUNDS = full_or_smoke(3, 1)
UDP_RATE = 30_000
UDP_LENGTH = 1_200
UDP_SMOKE_BYTES = UDP_RATE * UDP_LENGTH // 5
"""A smoke run's datagrams: a fifth of a second at UDP_RATE."""
UDP_ENDPOINT_BUFFERS = "4M"
"""iperf3's own socket buffers (both ends), so its server drops nothing by itself and the
loss figure is the relay's: with the default 208 KiB the server lost 1-3 % direct here."""

Relay = Callable[[int, int], list[str]]
Measure = Callable[[int], dict[str, float]]
Comparison = tuple[str, str, str | None, Callable[[float], bool] | None]
"""(route, baseline route, target text, test of the ratio against the target)."""


@dataclass(frozen=True)
class Route:
    """Where the load generator connects, and the relay process to charge CPU to (if any)."""

    port: int
    relay_pid: int | None = None


def udp_hostnet(listen: int, target: int) -> list[str]:
    return tools.hostnet_forward(listen, target, udp=True)


TCP_RELAYS: dict[str, list[Relay]] = {
    "socat": [tools.socat_tcp],
    "hostnet": [tools.hostnet_forward],
}
UDP_RELAYS: dict[str, list[Relay]] = {
    # iperf3 -u keeps a TCP control connection on the same port next to its datagrams.
    "socat": [tools.socat_tcp, tools.socat_udp],
    "hostnet": [tools.hostnet_forward, udp_hostnet],
}


@contextlib.contextmanager
def routes(target: int, relays: dict[str, list[Relay]]) -> Iterator[dict[str, Route]]:
    """``direct`` to ``target`` plus a running relay per entry of ``relays``.

    An entry of two processes shares one port: the first relays TCP, the second UDP and is
    the one whose CPU is measured.
    """
    with contextlib.ExitStack() as stack:
        found = {"direct": Route(target)}
        for name, processes in relays.items():
            with_udp = len(processes) > 1
            port = tools.free_port(udp=with_udp)
            pid = None
            for index, relay in enumerate(processes):
                udp = with_udp and index > 0
                process = stack.enter_context(
                    tools.running(
                        relay(port, target),
                        tcp_port=None if udp else port,
                        udp_port=port if udp else None,
                    )
                )
                pid = process.pid
            found[name] = Route(port, pid)
        yield found


def take_turns(
    found: dict[str, Route], measure: Measure, rounds: int
) -> dict[str, dict[str, float]]:
    """Medians over ``rounds`` of ``measure`` on every route in turn, with the relay's CPU
    share (% of one core) as ``relay_cpu_percent``."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, route in found.items():
            if route.relay_pid is None:
                samples[name].append(measure(route.port))
                continue
            cpu_before = tools.tree_cpu_seconds(route.relay_pid)
            wall_before = time.monotonic()
            result = measure(route.port)
            cpu = tools.tree_cpu_seconds(route.relay_pid) - cpu_before
            result["relay_cpu_percent"] = 100 * cpu / (time.monotonic() - wall_before)
            samples[name].append(result)
    return {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


def compare(
    name: str,
    unit: str,
    results: dict[str, dict[str, float]],
    key: str,
    comparisons: list[Comparison],
) -> list[dict[str, Any]]:
    rows = []
    for route, baseline, target, meets in comparisons:
        value, base = results[route][key], results[baseline][key]
        ratio = value / base if base else None
        rows.append(
            figure(
                f"relay/{name}/{route}",
                value,
                unit,
                f"relay/{name}/{baseline}",
                base,
                target=target,
                met=None if meets is None or ratio is None else meets(ratio),
            )
        )
    return rows


def tcp_bulk(found: dict[str, Route]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for streams in (1, 4):

        def bulk(port: int, streams: int = streams) -> dict[str, float]:
            report = tools.iperf3(port, seconds=BULK_SECONDS, streams=streams)
            return {"gbits": tools.iperf3_tcp_gbits(report)}

        results = take_turns(found, bulk, BULK_ROUNDS)
        label = f"tcp-bulk-{streams}-stream{'s' if streams > 1 else ''}"
        rows += compare(
            label,
            "Gbit/s",
            results,
            "gbits",
            [
                ("hostnet", "direct", ">= 0.85 x direct", lambda r: r >= 0.85),
                ("hostnet", "socat", ">= 3 x socat", lambda r: r >= 3),
            ],
        )
        rows += compare(
            f"{label}-relay-cpu",
            "% of a core",
            results,
            "relay_cpu_percent",
            [("hostnet", "socat", None, None)],
        )
    return rows


def connection_rate(found: dict[str, Route]) -> list[dict[str, Any]]:
    def rate(port: int) -> dict[str, float]:
        return tools.connection_rate(
            port, seconds=CONN_SECONDS, concurrency=CONCURRENCY, warmup=CONN_WARMUP
        )

    results = take_turns(found, rate, CONN_ROUNDS)
    label = f"tcp-connect-1-byte-close-{CONCURRENCY}-concurrent"
    return [
        *compare(
            label,
            "conn/s",
            results,
            "per_second",
            [
                ("hostnet", "direct", ">= 0.4 x direct", lambda r: r >= 0.4),
                ("hostnet", "socat", ">= 2 x socat", lambda r: r >= 2),
            ],
        ),
        *compare(
            f"{label}-p99",
            "ms",
            results,
            "p99_ms",
            [("hostnet", "direct", None, None), ("hostnet", "socat", None, None)],
        ),
        *compare(
            f"{label}-relay-cpu",
            "% of a core",
            results,
            "relay_cpu_percent",
            [("hostnet", "socat", None, None)],
        ),
    ]


def udp(found: dict[str, Route]) -> list[dict[str, Any]]:
    def blast(port: int) -> dict[str, float]:
        report = tools.iperf3(
            port,
            seconds=UDP_SECONDS,
            smoke_bytes=UDP_SMOKE_BYTES,
            udp_bitrate=UDP_RATE * UDP_LENGTH * 8,
            length=UDP_LENGTH,
            window=UDP_ENDPOINT_BUFFERS,
        )
        loss, per_second = tools.iperf3_udp_loss(report)
        return {"loss": loss, "per_second": per_second}

    results = take_turns(found, blast, UDP_ROUNDS)
    sent = results["direct"]["per_second"]
    if sent < 0.9 * UDP_RATE and not SMOKE:  # a smoke run judges nothing, the load included
        raise tools.BenchError(f"iperf3 sent only {sent:.0f} datagrams/s, not {UDP_RATE}")
    label = f"udp-{UDP_RATE // 1000}k-dgram-per-s-{UDP_LENGTH}-bytes"
    direct_loss = results["direct"]["loss"]
    hostnet_loss = results["hostnet"]["loss"]
    return [
        figure(
            f"relay/{label}-loss/hostnet",
            hostnet_loss,
            "% lost",
            f"relay/{label}-loss/direct",
            direct_loss,
            target="<= direct + 0.5 points",
            met=hostnet_loss <= direct_loss + 0.5,
        ),
        *compare(f"{label}-loss", "% lost", results, "loss", [("hostnet", "socat", None, None)]),
        *compare(
            f"{label}-relay-cpu",
            "% of a core",
            results,
            "relay_cpu_percent",
            [("hostnet", "socat", None, None)],
        ),
    ]


def run() -> list[dict[str, Any]]:
    iperf_port = tools.free_port(udp=True)
    server_port = tools.free_port()
    rows: list[dict[str, Any]] = []
    with tools.running(tools.iperf3_server(iperf_port), tcp_port=iperf_port):
        with routes(iperf_port, TCP_RELAYS) as found:
            rows += tcp_bulk(found)
        with routes(iperf_port, UDP_RELAYS) as found:
            rows += udp(found)
    with (
        tools.running(tools.one_byte_server(server_port), tcp_port=server_port),
        routes(server_port, TCP_RELAYS) as found,
    ):
        rows += connection_rate(found)
    return rows
