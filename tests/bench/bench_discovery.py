"""Listener discovery: dump cost, listen()/close() to event latency, idle CPU, 1,000 listeners.

Baselines, measured in the same run on the same sockets:
- dump cost: pyroute2's ``DiagSocket.get_sock_stats`` (the same four kernel dumps, decoded by
  pyroute2) and a full parse of /proc/net/{tcp,tcp6,udp,udp6};
- latency and idle CPU: a naive scanner that parses /proc/net/{tcp,tcp6,udp,udp6} at 10 Hz.

As root, everything runs in a fresh network namespace (``ip netns exec``), so other programs'
sockets and connections on this machine neither add to the 1,000 listeners nor wake the probe;
otherwise it runs in the current namespace. ``BENCH_DISCOVERY_TRIALS`` (default 200),
``BENCH_DISCOVERY_NAIVE_TRIALS`` (default 60), ``BENCH_DISCOVERY_QUIET_TRIALS`` (default 20:
listen() after the namespace was quiet long enough for the watcher to probe less often) and
``BENCH_DISCOVERY_IDLE_S`` (default 10) shorten a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.bench.figures import figure
from tests.bench.smoke_mode import full_or_smoke

REPO = Path(__file__).resolve().parents[2]
LISTENERS = 1000
TRIALS = int(os.environ.get("BENCH_DISCOVERY_TRIALS", full_or_smoke("200", "4")))
# The 10 Hz baseline needs ~0.4 s a trial: fewer trials keep the run short; its p99 is then
# close to its maximum, which for a fixed-rate poller is the interval plus one parse anyway.
NAIVE_TRIALS = int(os.environ.get("BENCH_DISCOVERY_NAIVE_TRIALS", full_or_smoke("60", "2")))
IDLE_SECONDS = float(os.environ.get("BENCH_DISCOVERY_IDLE_S", full_or_smoke("10", "0.2")))
QUIET_TRIALS = int(os.environ.get("BENCH_DISCOVERY_QUIET_TRIALS", full_or_smoke("20", "1")))
QUIET_FOR = full_or_smoke(0.8, 0.05)
"""Seconds the namespace stays quiet before each of those trials' listen(): past the
watcher's ``quiet_after`` (0.5 s), so it probes at its slower quiet rate when listen() comes."""
IDLE_SETTLE = full_or_smoke(0.5, 0.05)
"""Seconds a watcher runs before its idle CPU is counted (its first scan is not idle)."""
CALL_ROUNDS_SHARE = full_or_smoke(1.0, 0.02)
"""Share of each dump-cost measurement's rounds that run (at least one)."""

Listeners = frozenset[tuple[str, str, int, int]]
OnChange = Callable[[Listeners, Listeners], None]


class Watcher(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def open_listeners(count: int) -> list[socket.socket]:
    """``count`` idle listeners: 40% TCP IPv4, 30% TCP IPv6, 30% UDP (both families)."""
    from proxy.event_loop import raise_fd_limit

    raise_fd_limit(count * 2 + 1024)
    made: list[socket.socket] = []
    for index in range(count):
        slot = index % 10
        if slot < 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        elif slot < 7:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.bind(("::1", 0))
            sock.listen()
        else:
            family = socket.AF_INET if slot < 9 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        made.append(sock)
    return made


# --- baseline: the naive /proc/net scanner -------------------------------------------------

PROC_FILES = (("tcp", "/proc/net/tcp", "0A"), ("tcp", "/proc/net/tcp6", "0A"))
PROC_FILES += (("udp", "/proc/net/udp", "07"), ("udp", "/proc/net/udp6", "07"))


def _proc_host(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def proc_net_listeners() -> Listeners:
    """Listeners from a full text parse of /proc/net/*: the classic netstat approach."""
    found: set[tuple[str, str, int, int]] = set()
    for proto, path, listen_state in PROC_FILES:
        with open(path) as file:
            next(file)
            for line in file:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state != listen_state or remote.rsplit(":", 1)[1] != "0000":
                    continue
                host, port = local.rsplit(":", 1)
                found.add((proto, _proc_host(host), int(port, 16), int(inode)))
    return frozenset(found)


class NaiveWatcher:
    """Parses /proc/net at a fixed rate and reports diffs: the baseline for the watcher."""

    def __init__(self, on_change: OnChange, interval: float = 0.1) -> None:
        self._on_change = on_change
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._current: Listeners = frozenset()

    async def start(self) -> None:
        self._current = proc_net_listeners()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            new = proc_net_listeners()
            added, removed = new - self._current, self._current - new
            self._current = new
            if added or removed:
                self._on_change(added, removed)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def hostnet_watcher(on_change: OnChange) -> Watcher:
    from proxy.listener_watcher import ListenerWatcher
    from proxy.listeners import Listener

    def adapt(added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        def plain(items: frozenset[Listener]) -> Listeners:
            return frozenset((i.proto, i.host, i.port, i.inode) for i in items)

        on_change(plain(added), plain(removed))

    return ListenerWatcher(adapt)


# --- measurements (run inside the worker) --------------------------------------------------


def cpu_per_call(call: Callable[[], object], rounds: int) -> float:
    """Mean CPU seconds (user + system, this thread) of one call, over ``rounds`` calls
    (fewer in smoke mode)."""
    rounds = max(1, round(rounds * CALL_ROUNDS_SHARE))
    call()
    started = time.thread_time()
    for _ in range(rounds):
        call()
    return (time.thread_time() - started) / rounds


def dump_costs() -> dict[str, float]:
    from pyroute2.netlink.diag import DiagSocket

    from proxy.discovery import KINDS, ListenerScanner
    from proxy.sock_diag import SockDiag, parse_dump
    from proxy.socket_counts import SocketCounts

    with ListenerScanner() as scanner, SockDiag() as diag, DiagSocket() as reference:
        reference.bind()
        listed = len(scanner.scan())

        def full_decode() -> None:
            for family, protocol, states, _ in KINDS:
                parse_dump(diag.dump_raw(family, protocol, states))

        def pyroute2_dump() -> None:
            for family, protocol, states, _ in KINDS:
                reference.get_sock_stats(family=family, protocol=protocol, states=states)

        counts = SocketCounts()
        try:
            probe = cpu_per_call(counts.read, 5000)
        finally:
            counts.close()
        return {
            "listed": listed,
            "scan_unchanged": cpu_per_call(scanner.scan, 500),
            "scan_decode": cpu_per_call(full_decode, 100),
            "pyroute2": cpu_per_call(pyroute2_dump, 5),
            "proc_net": cpu_per_call(proc_net_listeners, 20),
            "probe": probe,
        }


async def latencies(
    make: Callable[[OnChange], Watcher], trials: int, quiet_for: float = 0.0
) -> dict[str, list[float]]:
    """listen() -> added and close() -> removed, in seconds, over ``trials`` TCP listeners,
    each listen() after ``quiet_for`` seconds in which no socket was made or closed."""
    events: dict[tuple[str, int], float] = {}
    changed = asyncio.Event()

    def on_change(added: Listeners, removed: Listeners) -> None:
        now = time.perf_counter()
        for item in added:
            events.setdefault(("add", item[3]), now)
        for item in removed:
            events.setdefault(("remove", item[3]), now)
        changed.set()

    async def wait(key: tuple[str, int]) -> float:
        async with asyncio.timeout(5):
            while key not in events:
                changed.clear()
                await changed.wait()
        return events[key]

    watcher = make(on_change)
    await watcher.start()
    detect: list[float] = []
    release: list[float] = []
    try:
        for trial in range(trials):
            host, family = ("127.0.0.1", socket.AF_INET) if trial % 2 else ("::1", socket.AF_INET6)
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            inode = os.fstat(sock.fileno()).st_ino
            # A random phase against the poller.
            await asyncio.sleep(quiet_for + random.uniform(0, 0.05))
            started = time.perf_counter()
            sock.listen()
            detect.append(await wait(("add", inode)) - started)
            await asyncio.sleep(random.uniform(0, 0.05))
            started = time.perf_counter()
            sock.close()
            release.append(await wait(("remove", inode)) - started)
    finally:
        await watcher.stop()
    return {"detect": detect, "release": release}


async def idle_cpu(make: Callable[[OnChange], Watcher], seconds: float) -> float:
    """Share of one core the watcher's process uses while nothing changes."""
    watcher = make(lambda added, removed: None)
    await watcher.start()
    try:
        await asyncio.sleep(IDLE_SETTLE)
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter()
        await asyncio.sleep(seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - wall
    finally:
        await watcher.stop()
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / wall


async def watcher_figures() -> dict[str, Any]:
    result: dict[str, Any] = {}
    result["ours"] = await latencies(hostnet_watcher, TRIALS)
    result["naive"] = await latencies(NaiveWatcher, NAIVE_TRIALS)
    result["ours_quiet"] = await latencies(hostnet_watcher, QUIET_TRIALS, QUIET_FOR)
    result["ours_idle"] = await idle_cpu(hostnet_watcher, IDLE_SECONDS)
    result["naive_idle"] = await idle_cpu(NaiveWatcher, IDLE_SECONDS)
    return result


def worker() -> None:
    from proxy.event_loop import run as run_loop

    sockets = open_listeners(LISTENERS)
    try:
        # pyroute2's synchronous API runs its own event loop: measure it outside ours.
        costs = dump_costs()
        result = run_loop(watcher_figures())
    finally:
        for sock in sockets:
            sock.close()
    print(json.dumps({"costs": costs, **result}), flush=True)


# --- orchestration -------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def in_fresh_namespace() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def measure() -> tuple[dict[str, Any], str]:
    command = [sys.executable, "-m", "tests.bench.bench_discovery", "--worker"]
    if not in_fresh_namespace():
        return _run_worker(command), "current namespace"
    name = f"hostnet-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        try:
            return _run_worker(["ip", "netns", "exec", name, *command]), "fresh namespace"
        except RuntimeError as exc:
            if not Path("/run/netns", name).exists():
                raise RuntimeError(f"{exc} (namespace {name} was deleted under it)") from exc
            raise
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _run_worker(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(
            f"discovery bench worker exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run() -> list[dict[str, Any]]:
    result, where = measure()
    costs = result["costs"]
    n = f"{LISTENERS} listeners, {where}"
    us = 1e6
    ms = 1e3
    rows = [
        figure(
            f"discovery: 4 sock_diag dumps, unchanged ({n})",
            costs["scan_unchanged"] * us,
            "us CPU",
            "pyroute2 DiagSocket, same 4 dumps",
            costs["pyroute2"] * us,
        ),
        figure(
            f"discovery: 4 sock_diag dumps, all decoded ({n})",
            costs["scan_decode"] * us,
            "us CPU",
            "full parse of /proc/net/{tcp,udp}{,6}",
            costs["proc_net"] * us,
        ),
        figure(
            "discovery: sockstat probe",
            costs["probe"] * us,
            "us CPU",
            "4 sock_diag dumps, unchanged",
            costs["scan_unchanged"] * us,
        ),
    ]
    for kind, label, target, bound in (
        ("detect", "listen() -> added", "< 100 ms", 0.1),
        ("release", "close() -> removed", "<= 250 ms", 0.25),
    ):
        for share, tag in ((0.5, "p50"), (0.99, "p99")):
            value = percentile(result["ours"][kind], share)
            rows.append(
                figure(
                    f"discovery: {label} {tag} ({TRIALS} trials, {n})",
                    value * ms,
                    "ms",
                    f"/proc/net parse at 10 Hz ({NAIVE_TRIALS} trials)",
                    percentile(result["naive"][kind], share) * ms,
                    target=target if tag == "p99" else None,
                    met=value < bound if tag == "p99" else None,
                )
            )
    for share, tag in ((0.5, "p50"), (0.99, "p99")):
        value = percentile(result["ours_quiet"]["detect"], share)
        rows.append(
            figure(
                f"discovery: listen() -> added after {QUIET_FOR:g} s quiet {tag}"
                f" ({QUIET_TRIALS} trials, {n})",
                value * ms,
                "ms",
                f"/proc/net parse at 10 Hz ({NAIVE_TRIALS} trials)",
                percentile(result["naive"]["detect"], share) * ms,
                target="< 100 ms" if tag == "p99" else None,
                met=value < 0.1 if tag == "p99" else None,
            )
        )
    rows.append(
        figure(
            f"discovery: idle CPU ({n}, {IDLE_SECONDS:g} s)",
            result["ours_idle"] * 100,
            "% of a core",
            "/proc/net parse at 10 Hz",
            result["naive_idle"] * 100,
            target="<= 1%",
            met=result["ours_idle"] <= 0.01,
        )
    )
    rows.append(
        figure(
            f"discovery: listeners found ({n})",
            float(costs["listed"]),
            "listeners",
            "listeners opened",
            float(LISTENERS),
        )
    )
    return rows


def _main() -> None:
    if "--worker" in sys.argv:
        worker()
        return
    for row in run():
        print(row)


if __name__ == "__main__":
    _main()
