"""The relay engine on loopback against no relay (direct) and socat, in one run.

- TCP bulk, 1 and 4 streams (iperf3): Gbit/s, and the relay's CPU.
- Connection rate: connect, 1 byte each way, close, 32 in flight: connections/s, p99 ms.
- UDP at 30,000 datagrams/s of 1,200 bytes (iperf3 -u): loss %, and the relay's CPU.

The event-loop splice was measured against blocking splices on a worker pool (one thread
per direction, commit 593913b): equal for bulk, about half the connection rate with 4x the
p99 for short connections, so the pool was dropped again.

The machine the figures come from matters: with 2 cores, the load generator, the server
and the relay share them, so a relay figure also pays for its neighbours' CPU.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from tests.bench import tools
from tests.bench.figures import figure

BULK_SECONDS = 4
CONN_SECONDS = 2.5
CONCURRENCY = 32
UDP_SECONDS = 5
UDP_RATE = 30_000
UDP_LENGTH = 1_200

Relay = Callable[[int, int], list[str]]
TCP_RELAYS: dict[str, Relay] = {
    "socat": tools.socat_tcp,
    "hostnet": tools.hostnet_forward,
}
"""Relays measured next to ``direct`` (no relay) for TCP: name -> argv(listen, target)."""


def measure_through(relay: Relay | None, target: int, measure: Callable[[int], Any]) -> Any:
    """``measure(port)`` on ``target`` directly (relay None) or through a fresh relay."""
    if relay is None:
        return measure(target)
    port = tools.free_port()
    with tools.running(relay(port, target), tcp_port=port) as process:
        return measure_with_cpu(process.pid, lambda: measure(port))


def measure_with_cpu(pid: int, measure: Callable[[], Any]) -> Any:
    """Run ``measure`` and attach the CPU share (%) the relay process tree used meanwhile."""
    cpu_before, wall_before = tools.tree_cpu_seconds(pid), time.monotonic()
    result = measure()
    cpu = tools.tree_cpu_seconds(pid) - cpu_before
    result["relay_cpu_percent"] = 100 * cpu / (time.monotonic() - wall_before)
    return result


def compare(
    name: str,
    unit: str,
    results: dict[str, dict[str, float]],
    key: str,
    pairs: list[tuple[str, str, str | None, Callable[[float], bool] | None]],
) -> list[dict[str, Any]]:
    """One figure per (variant, baseline, target text, target test on the ratio)."""
    rows = []
    for variant, baseline, target, meets in pairs:
        value, base = results[variant][key], results[baseline][key]
        ratio = value / base if base else None
        rows.append(
            figure(
                f"relay/{name}/{variant}",
                value,
                unit,
                f"relay/{name}/{baseline}",
                base,
                target=target,
                met=None if meets is None or ratio is None else meets(ratio),
            )
        )
    return rows


def tcp_bulk(iperf_port: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    runs: dict[int, dict[str, dict[str, float]]] = {1: {}, 4: {}}

    def bulk(port: int) -> dict[str, float]:
        out = {}
        for streams in runs:
            report = tools.iperf3(port, seconds=BULK_SECONDS, streams=streams)
            out[f"gbits_{streams}"] = tools.iperf3_tcp_gbits(report)
        return out

    for relay_name, relay in {"direct": None, **TCP_RELAYS}.items():
        # One relay process for both stream counts; its CPU share spans both runs.
        result = measure_through(relay, iperf_port, bulk)
        for streams in runs:
            runs[streams][relay_name] = {
                "gbits": result[f"gbits_{streams}"],
                "cpu": result.get("relay_cpu_percent", 0.0),
            }
    for streams, results in runs.items():
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
        "tcp-bulk-1+4-streams-relay-cpu",
        "% of a core",
        runs[1],
        "cpu",
        [("hostnet", "socat", None, None)],
    )
    return rows


def connection_rate(server_port: int) -> list[dict[str, Any]]:
    def rate(port: int) -> dict[str, float]:
        return tools.connection_rate(port, seconds=CONN_SECONDS, concurrency=CONCURRENCY)

    results = {
        relay_name: measure_through(relay, server_port, rate)
        for relay_name, relay in {"direct": None, **TCP_RELAYS}.items()
    }
    label = f"tcp-connect-1-byte-close-{CONCURRENCY}-concurrent"
    rows = compare(
        label,
        "conn/s",
        results,
        "per_second",
        [
            ("hostnet", "direct", ">= 0.4 x direct", lambda r: r >= 0.4),
            ("hostnet", "socat", ">= 2 x socat", lambda r: r >= 2),
        ],
    )
    rows += compare(
        f"{label}-p99",
        "ms",
        results,
        "p99_ms",
        [
            ("hostnet", "direct", None, None),
            ("hostnet", "socat", None, None),
        ],
    )
    return rows


def udp(iperf_port: int) -> list[dict[str, Any]]:
    """iperf3 -u at a fixed rate; its control connection needs a TCP relay on the same port."""
    relays: dict[str, tuple[Relay, Relay] | None] = {
        "direct": None,
        "socat": (tools.socat_tcp, tools.socat_udp),
        "hostnet": (tools.hostnet_forward, lambda a, b: tools.hostnet_forward(a, b, udp=True)),
    }

    def blast(port: int) -> dict[str, float]:
        report = tools.iperf3(
            port, seconds=UDP_SECONDS, udp_bitrate=UDP_RATE * UDP_LENGTH * 8, length=UDP_LENGTH
        )
        loss, packets = tools.iperf3_udp_loss(report)
        return {"loss": loss, "pps": packets / UDP_SECONDS}

    results: dict[str, dict[str, float]] = {}
    for relay_name, pair in relays.items():
        if pair is None:
            results[relay_name] = blast(iperf_port)
            continue
        port = tools.free_port(udp=True)
        tcp_relay, udp_relay = pair
        with (
            tools.running(tcp_relay(port, iperf_port), tcp_port=port),
            tools.running(udp_relay(port, iperf_port), udp_port=port) as process,
        ):
            results[relay_name] = measure_with_cpu(process.pid, functools.partial(blast, port))
    sent = results["direct"]["pps"]
    if sent < 0.9 * UDP_RATE:
        raise tools.BenchError(f"iperf3 sent only {sent:.0f} datagrams/s, not {UDP_RATE}")
    name = f"udp-{UDP_RATE // 1000}k-dgram-per-s-{UDP_LENGTH}-bytes"
    direct_loss = results["direct"]["loss"]
    return [
        figure(
            f"relay/{name}-loss/hostnet",
            results["hostnet"]["loss"],
            "% lost",
            f"relay/{name}-loss/direct",
            direct_loss,
            target="<= direct + 0.5 points",
            met=results["hostnet"]["loss"] <= direct_loss + 0.5,
        ),
        figure(
            f"relay/{name}-loss/hostnet",
            results["hostnet"]["loss"],
            "% lost",
            f"relay/{name}-loss/socat",
            results["socat"]["loss"],
        ),
        figure(
            f"relay/{name}-relay-cpu/hostnet",
            results["hostnet"]["relay_cpu_percent"],
            "% of a core",
            f"relay/{name}-relay-cpu/socat",
            results["socat"]["relay_cpu_percent"],
        ),
    ]


def run() -> list[dict[str, Any]]:
    iperf_port = tools.free_port(udp=True)
    server_port = tools.free_port()
    rows: list[dict[str, Any]] = []
    with tools.running(tools.iperf3_server(iperf_port), tcp_port=iperf_port):
        rows += tcp_bulk(iperf_port)
        rows += udp(iperf_port)
    with tools.running(tools.one_byte_server(server_port), tcp_port=server_port):
        rows += connection_rate(server_port)
    return rows
