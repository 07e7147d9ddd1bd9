"""The engine: a container's start to its port answering on the host, p50 and p99.

Each trial starts ``docker run -d --net=host IMG nc -lk 0.0.0.0 PORT`` (through the engine's
API with the docker SDK, as the CLI does) and connects to ``127.0.0.1:PORT`` on the host
every 5 ms until one is accepted. The baseline, in the same run on the same VM: the same
netcat started as a plain process in the VM (``nsenter --net=``), timed the same way; the
difference is what the engine adds (container set-up), the rest is discovery and mirroring.

``BENCH_ENGINE_STARTS`` (default 50; 1 under ``BENCH_SMOKE=1``) sets the number of trials of
each. Needs root and Debian's docker.io, like the engine itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.bench.figures import figure
from tests.bench.smoke_mode import full_or_smoke
from tests.bench.tools import BenchError
from tests.engine.engine_fixture import EngineSession, engine_session
from tests.integration.vm_helpers import free_port

STARTS = int(os.environ.get("BENCH_ENGINE_STARTS", full_or_smoke("50", "1")))
SMOKE_MARKS = ("root",)
ANSWER_TIMEOUT = 30.0
POLL = 0.005


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def time_to_answer(start: Callable[[int], Callable[[], None]]) -> float:
    """Seconds from ``start(port)`` until the host's 127.0.0.1:PORT accepts; then stops it."""
    port = free_port("tcp")
    began = time.perf_counter()
    stop = start(port)
    try:
        while not answers(port):
            if time.perf_counter() - began > ANSWER_TIMEOUT:
                raise TimeoutError(f"port {port} did not answer within {ANSWER_TIMEOUT:.0f} s")
            time.sleep(POLL)
        return time.perf_counter() - began
    finally:
        stop()
        while answers(port):  # the mirror is gone before the next trial starts
            time.sleep(POLL)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(engine: EngineSession) -> dict[str, list[float]]:
    netns = f"/run/netns/{engine.daemon.netns['name']}"
    netcat = shutil.which("nc") or "nc"

    def container(port: int) -> Callable[[], None]:
        started = engine.client.containers.run(
            engine.image, ["nc", "-lk", "0.0.0.0", str(port)], network_mode="host", detach=True
        )
        return lambda: started.remove(force=True)

    def process(port: int) -> Callable[[], None]:
        proc = subprocess.Popen(["nsenter", f"--net={netns}", netcat, "-lk", "0.0.0.0", str(port)])

        def stop() -> None:
            proc.kill()
            proc.wait()

        return stop

    samples: dict[str, list[float]] = {"container": [], "process": []}
    for _ in range(STARTS):  # interleaved, so load on the machine hits both alike
        samples["container"].append(time_to_answer(container))
        samples["process"].append(time_to_answer(process))
    return samples


def run() -> list[dict[str, Any]]:
    missing = [tool for tool in ("dockerd", "docker", "nsenter") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        raise BenchError(f"the engine needs root and {', '.join(missing) or 'docker.io'}")
    with contextlib.contextmanager(engine_session)() as engine:
        samples = measure(engine)
    rows = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        rows.append(
            figure(
                f"engine: --net=host container start to host port answering, {label}",
                percentile(samples["container"], fraction) * 1000,
                "ms",
                f"a plain process in the VM, {label}",
                percentile(samples["process"], fraction) * 1000,
            )
        )
    mean = statistics.fmean(samples["container"]) - statistics.fmean(samples["process"])
    rows.append(
        figure(
            "engine: what the container adds, mean",
            mean * 1000,
            "ms",
            "a plain process in the VM, mean",
            statistics.fmean(samples["process"]) * 1000,
        )
    )
    return rows
