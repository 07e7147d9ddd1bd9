"""Ports without a race (issue 16): hold, then decide, against discovery alone.

Both runs use a daemon whose host is a network namespace of its own, on a namespace VM
(root only); "before" is the same daemon with the hold turned off (``HOSTNET_HOLD=off``),
so new ports wait for discovery. Figures, each beside its baseline from the same run:

- listen() in the VM returning -> the host's first successful connect (TCP, IPv4), p50 and
  p99 over ``BENCH_RACE_TRIALS`` (default 1,000) trials; the client retries a refusal at once;
- the same, host server and VM client;
- bind() of a UDP server returning -> the first datagram answered, both ways, p50 and p99 over
  ``UDP_TRIALS``; the client sends again every 5 ms. Held, such a port goes on the kernel
  path's rules before its first datagram is let go (each trial adds a port to them);
- how long a connection to a port closed on both sides takes to be refused, held (the probe
  of the other side) beside direct (no hold), p50;
- connections per second through an existing mirror (median of three runs), with the hold
  table in place beside without it (every SYN then passes the table's socket lookup).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.figures import figure
from tests.bench.smoke_mode import full_or_smoke
from tests.bench.tools import REPO, BenchError
from tests.integration.race_world import (
    RaceWorld,
    first_answer_udp,
    first_connect,
    race_world,
    refusal,
)
from tests.integration.vm_helpers import wait_for

TRIALS = full_or_smoke(int(os.environ.get("BENCH_RACE_TRIALS", "1000")), 5)
REFUSALS = full_or_smoke(300, 5)
UDP_TRIALS = full_or_smoke(int(os.environ.get("BENCH_RACE_UDP_TRIALS", "200")), 5)
CONN_SECONDS = full_or_smoke(float(os.environ.get("BENCH_RACE_CONN_S", "4")), 0.5)
CONN_RUNS = full_or_smoke(3, 1)
SMOKE_MARKS = ("root", "slow")  # two daemons on namespace VMs: seconds even when quiet


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _times(measure: Callable[[], float | None], count: int) -> list[float]:
    found = [measure() for _ in range(count)]
    kept = [value for value in found if value is not None]
    if len(kept) < count:
        raise BenchError(f"{count - len(kept)} of {count} measurements failed")
    return kept


def _conn_rate(world: RaceWorld, port: int) -> float:
    """Connections/s of tests.bench.conn_rate from the host namespace to a VM server, mirrored."""
    vm_netns = f"/run/netns/{world.daemon.netns['name']}"
    python = sys.executable
    server = subprocess.Popen(
        ["nsenter", f"--net={vm_netns}", python, "-m", "tests.bench.conn_rate", "serve",
         "--port", str(port)], cwd=REPO,
    )  # fmt: skip
    try:

        def mirrored() -> bool:
            if server.poll() is not None:
                raise BenchError(f"the conn_rate server exited with {server.returncode}")
            return world.daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "active"

        wait_for(mirrored, 60, f"the mirror of VM port {port}")
        done = subprocess.run(
            ["nsenter", f"--net={world.host_netns}", python, "-m", "tests.bench.conn_rate",
             "client", "--port", str(port), "--seconds", str(CONN_SECONDS), "--concurrency",
             "32", "--warmup", str(full_or_smoke(0.3, 0.1))],
            capture_output=True, text=True, timeout=CONN_SECONDS + 60, cwd=REPO, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"connection-rate client failed: {done.stderr.strip()[-800:]}")
        return float(json.loads(done.stdout)["per_second"])
    finally:
        server.terminate()
        server.wait(10)


def _measure(hold: bool, first_port: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-race-") as home,
        race_world(Path(home), hold=hold, first_port=first_port) as world,
    ):
        family = socket.AF_INET
        vm_first = _times(lambda: first_connect(world, "vm", family), TRIALS)
        host_first = _times(lambda: first_connect(world, "host", family), TRIALS)
        vm_udp = _times(lambda: first_answer_udp(world, "vm", family), UDP_TRIALS)
        host_udp = _times(lambda: first_answer_udp(world, "host", family), UDP_TRIALS)
        refused = _times(lambda: refusal(world, "host", "tcp", family), REFUSALS)
        rate = statistics.median(
            _conn_rate(world, first_port + 9000 + run) for run in range(CONN_RUNS)
        )
        return {
            "vm": vm_first,
            "host": host_first,
            "vm-udp": vm_udp,
            "host-udp": host_udp,
            "refused": refused,
            "rate": rate,
        }


def run() -> list[dict[str, Any]]:
    if os.geteuid() != 0:
        raise BenchError("bench_race needs root (network namespaces, nf_tables)")
    before = _measure(hold=False, first_port=21000)
    after = _measure(hold=True, first_port=24000)
    rows: list[dict[str, Any]] = []
    for side, what in (
        ("vm", "VM listen -> host connect"),
        ("host", "host listen -> VM connect"),
        ("vm-udp", "VM UDP bind -> host answered"),
        ("host-udp", "host UDP bind -> VM answered"),
    ):
        for label, share in (("p50", 0.5), ("p99", 0.99)):
            rows.append(
                figure(
                    f"race: {what} {label} (held)",
                    _percentile(after[side], share) * 1e3,
                    "ms",
                    "discovery only",
                    _percentile(before[side], share) * 1e3,
                )
            )
    rows.append(
        figure(
            "race: closed port refused p50 (held)",
            statistics.median(after["refused"]) * 1e6,
            "us",
            "direct (no hold)",
            statistics.median(before["refused"]) * 1e6,
            target="<= direct + 3 ms",
            met=statistics.median(after["refused"]) - statistics.median(before["refused"]) < 0.003,
        )
    )
    rows.append(
        figure(
            "race: conn/s through a mirror (hold table on)",
            after["rate"],
            "conn/s",
            "hold off",
            before["rate"],
        )
    )
    return rows
