"""The full path: a real ``hostnet daemon`` and its agent in a real namespace VM, both ways.

Needs root (a named network namespace with a veth pair); otherwise it raises and the table
shows why.

- VM -> host: a server in the VM (on 0.0.0.0) reached on the host at 127.0.0.1:P through the
  daemon's mirror. Per connection the daemon opens a unix stream to the agent, the agent
  connects the target and hands the socket back (SCM_RIGHTS), and the daemon splices.
  Baselines: direct, the host client to VM_IP:P over the veth; socat on the host forwarding
  127.0.0.1:Q to VM_IP:P.
- host -> VM: a server on the host (on 0.0.0.0) reached inside the VM at 127.0.0.1:P through
  the agent's mirror. Per connection the agent asks the daemon over the control channel, the
  daemon connects the target and hands it over a new unix stream, and the agent splices.
  Baselines: direct, the VM client to HOST_IP:P over the veth; socat in the VM forwarding
  127.0.0.1:Q to HOST_IP:P.

Figures, per direction: TCP bulk (iperf3, 1 stream), connection rate (connect, 1 byte each
way, close, 32 in flight) with its p99 and the CPU per connection of daemon and agent against
socat's; discovery (listen() in one side to the first connect that succeeds on the other
side's mirror) and release (close() to the first connect refused there), p50 and p99, against
the same prober aimed straight over the veth (the measurement's own floor).

The routes take turns, round after round, and a figure is the median of its rounds, as in
:mod:`tests.bench.bench_relay`. ``BENCH_FULL_PATH_TRIALS`` (default 200) sets the discovery
and release trials per direction; the direct floor gets a quarter of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import tools
from tests.bench.figures import figure
from tests.bench.smoke_mode import full_or_smoke

BULK_SECONDS = 3
BULK_ROUNDS = full_or_smoke(2, 1)
CONN_SECONDS = full_or_smoke(1.5, 0.2)
CONN_WARMUP = full_or_smoke(0.3, 0.05)
CONN_ROUNDS = full_or_smoke(3, 1)
CONCURRENCY = 32
TRIALS = int(os.environ.get("BENCH_FULL_PATH_TRIALS", full_or_smoke("200", "3")))
DIRECT_TRIALS = max(full_or_smoke(10, 2), TRIALS // 4)
TRIAL_GAP = 0.05
"""Each step waits a random 0..50 ms first: a random phase against the 20 ms listener probe."""
START_TIMEOUT = 30.0
"""Seconds to wait for a server, a relay or the agent to come up: a start is no figure, and
on a loaded 2-core machine a Python program takes seconds to start."""
MIRROR_TIMEOUT = 10.0
PROBE_TIMEOUT = 5.0
"""The prober's own limit (tests.bench.vm_port_toggle --timeout); a trial past it counts as it."""
SMOKE_MARKS = ("root",)


@dataclass(frozen=True)
class Side:
    """Where a program runs: the host (no prefix) or the VM (``ip netns exec NS``)."""

    name: str
    prefix: tuple[str, ...]

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix, *argv]


@dataclass
class Vm:
    """The running daemon and what the benchmark needs to know of its namespace VM."""

    daemon: Any  # tests.integration.daemon_fixture.RunningDaemon
    host: Side
    vm: Side
    host_ip: str
    vm_ip: str
    daemon_pid: int
    agent_pid: int


@dataclass(frozen=True)
class Direction:
    """``server`` side listens on 0.0.0.0; ``client`` side connects to the mirror or around."""

    name: str  # as the control API spells it: "vm-to-host" or "host-to-vm"
    server: Side
    client: Side
    direct_ip: str  # the server side's veth address, as the client side reaches it


@dataclass(frozen=True)
class Route:
    """Where the load generator connects, and the processes to charge CPU to."""

    host: str
    port: int
    cpu_pids: dict[str, int] = field(default_factory=dict)
    tree: bool = False  # count the pid's children (socat forks one per connection)


# --- processes -----------------------------------------------------------------------------


def listening_in(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in ``pid``'s network namespace."""
    wanted = f":{port:04X} "
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A" and (fields[1] + " ").endswith(wanted):
                    return True
    return False


@contextlib.contextmanager
def serving(argv: list[str], port: int) -> Iterator[tools.Running]:
    """``argv`` running until the block ends, listening on ``port`` in its own namespace."""
    with tools.running(argv) as proc:
        what = f"{' '.join(argv)} to listen"
        wait(lambda: listening_in(proc.pid, port), START_TIMEOUT, what, proc)
        yield proc


def wait(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    proc: tools.Running | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.process.poll() is not None:
            raise tools.BenchError(f"{what}: it exited: {proc.output().strip()}")
        if time.monotonic() > deadline:
            raise tools.BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def namespace_vm(data_path: str = "proxy") -> Iterator[Vm]:
    """A daemon with host networking on, its namespace VM up and its agent connected; by
    default on the user-space relay this module measures (the kernel path's module asks for
    ``auto``)."""
    if os.geteuid() != 0:
        raise tools.BenchError("the full-path benchmark needs root (a named network namespace)")
    from tests.integration.daemon_fixture import start_daemon

    home = Path(tempfile.mkdtemp(prefix="hostnet-bench-full-path-"))
    daemon = None
    try:
        settings = {"HostNetworkingEnabled": True, "HostNetworkingDataPath": data_path}
        daemon = start_daemon(home, settings)
        wait(lambda: agent_connected(daemon), START_TIMEOUT, "the agent to connect")
        netns = daemon.netns
        state = json.loads((home / "state" / "vm" / "netns.json").read_text())
        yield Vm(
            daemon=daemon,
            host=Side("host", ()),
            vm=Side("vm", tuple(daemon.vm_prefix)),
            host_ip=netns["host_ip"],
            vm_ip=netns["vm_ip"],
            daemon_pid=daemon.proc.pid,
            agent_pid=int(state["agent_pid"]),
        )
    except tools.BenchError as exc:
        # start_daemon quotes the log itself when the daemon exits while starting.
        raise tools.BenchError(f"{exc}\nthe daemon's log ends:\n{log_tail(home)}") from exc
    finally:
        if daemon is not None:
            stop_daemon(daemon, home)
        shutil.rmtree(home, ignore_errors=True)


def stop_daemon(daemon: Any, home: Path) -> None:
    """SIGTERM, as a user's stop; a daemon that does not stop is killed, and said."""
    try:
        daemon.stop()
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        daemon.proc.wait()
        raise tools.BenchError(
            f"the daemon did not stop within 15 s of SIGTERM; its log ends:\n{log_tail(home)}"
        ) from None


def agent_connected(daemon: Any) -> bool:
    if daemon.proc.poll() is not None:
        raise tools.BenchError(f"the daemon exited with {daemon.proc.returncode}")
    return bool(daemon.client.get("/v1/status")["agent"]["state"] == "connected")


def log_tail(home: Path) -> str:
    """The end of the test daemon's output, which it writes to a file in its home."""
    try:
        return (home / "daemon.out").read_text(errors="replace")[-3000:]
    except OSError as exc:
        return f"(no log: {exc})"


def directions(vm: Vm) -> list[Direction]:
    return [
        Direction("vm-to-host", server=vm.vm, client=vm.host, direct_ip=vm.vm_ip),
        Direction("host-to-vm", server=vm.host, client=vm.vm, direct_ip=vm.host_ip),
    ]


def wait_mirror(vm: Vm, direction: Direction, port: int) -> None:
    wait(
        lambda: vm.daemon.port_state(direction.name, "tcp", port, "127.0.0.1") == "active",
        MIRROR_TIMEOUT,
        f"the {direction.name} mirror of TCP port {port}",
    )


@contextlib.contextmanager
def routes(vm: Vm, direction: Direction, port: int) -> Iterator[dict[str, Route]]:
    """direct, socat and hostnet routes to the server on ``port`` of the server side."""
    wait_mirror(vm, direction, port)
    socat_port = tools.free_port()
    socat = [
        "socat",
        f"TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
        f"TCP:{direction.direct_ip}:{port}",
    ]
    with serving(direction.client.argv(socat), socat_port) as relay:
        yield {
            "direct": Route(direction.direct_ip, port),
            "socat": Route("127.0.0.1", socat_port, {"socat": relay.pid}, tree=True),
            "hostnet": Route("127.0.0.1", port, {"daemon": vm.daemon_pid, "agent": vm.agent_pid}),
        }


def take_turns(
    found: dict[str, Route], measure: Callable[[Route], dict[str, float]], rounds: int
) -> dict[str, dict[str, float]]:
    """Medians over ``rounds`` of ``measure`` on every route in turn, with each charged
    process's CPU seconds per wall second as ``cpu_<name>``."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, route in found.items():
            cpu = tools.tree_cpu_seconds if route.tree else tools.cpu_seconds
            before = {key: cpu(pid) for key, pid in route.cpu_pids.items()}
            wall = time.monotonic()
            result = measure(route)
            wall = time.monotonic() - wall
            for key, pid in route.cpu_pids.items():
                result[f"cpu_{key}"] = (cpu(pid) - before[key]) / wall
            samples[name].append(result)
    return {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


def ratio_row(
    name: str,
    unit: str,
    value: float,
    baseline: str,
    baseline_value: float,
    target: str | None = None,
    meets: Callable[[float], bool] | None = None,
) -> dict[str, Any]:
    met = None
    if meets is not None and baseline_value:
        met = meets(value / baseline_value)
    return figure(name, value, unit, baseline, baseline_value, target=target, met=met)


# --- TCP bulk and connection rate ------------------------------------------------------------


def tcp_bulk(vm: Vm, direction: Direction) -> list[dict[str, Any]]:
    port = tools.free_port()
    server = ["iperf3", "--server", "--bind", "0.0.0.0", "--port", str(port)]

    def bulk(route: Route) -> dict[str, float]:
        report = tools.iperf3(
            route.port,
            host=route.host,
            prefix=direction.client.prefix,
            seconds=BULK_SECONDS,
        )
        return {"gbits": tools.iperf3_tcp_gbits(report)}

    with serving(direction.server.argv(server), port), routes(vm, direction, port) as found:
        results = take_turns(found, bulk, BULK_ROUNDS)
    label = f"full-path/{direction.name}/tcp-bulk-1-stream"
    hostnet = results["hostnet"]
    relay_cpu = 100 * (hostnet["cpu_daemon"] + hostnet["cpu_agent"])
    return [
        ratio_row(
            f"{label}/hostnet",
            "Gbit/s",
            hostnet["gbits"],
            f"{label}/direct",
            results["direct"]["gbits"],
            ">= 0.85 x direct",
            lambda r: r >= 0.85,
        ),
        ratio_row(
            f"{label}/hostnet",
            "Gbit/s",
            hostnet["gbits"],
            f"{label}/socat",
            results["socat"]["gbits"],
            ">= 3 x socat",
            lambda r: r >= 3,
        ),
        ratio_row(
            f"{label}-cpu/hostnet-daemon+agent",
            "% of a core",
            relay_cpu,
            f"{label}-cpu/socat",
            100 * results["socat"]["cpu_socat"],
        ),
    ]


def connection_rate(vm: Vm, direction: Direction) -> list[dict[str, Any]]:
    port = tools.free_port()
    server = [tools.PYTHON, "-m", "tests.bench.conn_rate", "serve", "--host", "0.0.0.0"]
    server += ["--port", str(port)]

    def rate(route: Route) -> dict[str, float]:
        return tools.connection_rate(
            route.port,
            host=route.host,
            prefix=direction.client.prefix,
            seconds=CONN_SECONDS,
            concurrency=CONCURRENCY,
            warmup=CONN_WARMUP,
        )

    with serving(direction.server.argv(server), port), routes(vm, direction, port) as found:
        results = take_turns(found, rate, CONN_ROUNDS)
    label = f"full-path/{direction.name}/tcp-connect-1-byte-close-{CONCURRENCY}-concurrent"
    hostnet, direct, socat = results["hostnet"], results["direct"], results["socat"]
    rows = [
        ratio_row(
            f"{label}/hostnet",
            "conn/s",
            hostnet["per_second"],
            f"{label}/direct",
            direct["per_second"],
            ">= 0.4 x direct",
            lambda r: r >= 0.4,
        ),
        ratio_row(
            f"{label}/hostnet",
            "conn/s",
            hostnet["per_second"],
            f"{label}/socat",
            socat["per_second"],
        ),
        ratio_row(
            f"{label}-p99/hostnet", "ms", hostnet["p99_ms"], f"{label}-p99/direct", direct["p99_ms"]
        ),
    ]
    # CPU per connection: CPU seconds per wall second over connections per second.
    socat_us = 1e6 * socat["cpu_socat"] / socat["per_second"]
    for process in ("daemon", "agent"):
        rows.append(
            ratio_row(
                f"{label}-cpu-per-conn/{process}",
                "us",
                1e6 * hostnet[f"cpu_{process}"] / hostnet["per_second"],
                f"{label}-cpu-per-conn/socat",
                socat_us,
            )
        )
    return rows


# --- discovery and release -------------------------------------------------------------------


class Helper:
    """A :mod:`tests.bench.vm_port_toggle` process driven line by line over its pipes."""

    def __init__(self, side: Side, role: str, host: str, port: int) -> None:
        argv = [tools.PYTHON, "-m", "tests.bench.vm_port_toggle", role, "--host", host]
        argv += ["--port", str(port)]
        if role == "probe":
            argv += ["--timeout", str(PROBE_TIMEOUT)]
        self.what = f"the {role} helper on the {side.name}"
        self.proc = subprocess.Popen(
            side.argv(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=tools.REPO,
        )
        self.expect("ready")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            raise tools.BenchError(f"{self.what} exited with {self.proc.wait(5)}")
        return line

    def expect(self, wanted: str) -> None:
        line = self.read()
        if line != wanted:
            raise tools.BenchError(f"{self.what} said {line!r}, not {wanted!r}")

    def ask(self, command: str) -> str:
        self.send(command)
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Trials:
    """Seconds per trial from listen() to the prober's first connect (discovery) and from
    close() to its first refusal (release); a trial the prober gave up on counts as its
    timeout (PROBE_TIMEOUT). ``collisions``: opens whose bind first failed with EADDRINUSE."""

    discovery: list[float] = field(default_factory=list)
    release: list[float] = field(default_factory=list)
    collisions: int = 0

    @property
    def timeouts(self) -> int:
        return sum(value >= PROBE_TIMEOUT for value in self.discovery + self.release)


def toggle_trials(listener: Helper, prober: Helper, trials: int) -> Trials:
    found = Trials()
    for _ in range(trials):
        for step, command, wanted in (("discovery", "open", "up"), ("release", "close", "down")):
            time.sleep(random.uniform(0, TRIAL_GAP))
            prober.send(wanted)
            prober.expect("polling")
            answer = listener.ask(command).split()
            if len(answer) > 1 and int(answer[1]):
                found.collisions += 1
            seen = prober.read()
            took = PROBE_TIMEOUT if seen == "timeout" else float(seen) - float(answer[0])
            getattr(found, step).append(took)
    if found.timeouts > trials // 10:
        raise tools.BenchError(f"{found.timeouts} of {2 * trials} trials timed out")
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def discovery(vm: Vm, direction: Direction) -> list[dict[str, Any]]:
    port = tools.free_port()
    listener = Helper(direction.server, "listen", "0.0.0.0", port)
    probers = {
        "direct": Helper(direction.client, "probe", direction.direct_ip, port),
        "hostnet": Helper(direction.client, "probe", "127.0.0.1", port),
    }
    try:
        # hostnet first: its trials end with the mirror gone; the direct prober's would not.
        measured = {"hostnet": toggle_trials(listener, probers["hostnet"], TRIALS)}
        measured["direct"] = toggle_trials(listener, probers["direct"], DIRECT_TRIALS)
    finally:
        for helper in (listener, *probers.values()):
            helper.close()
    targets = {"discovery": 0.100, "release": 0.250}
    rows = []
    for step, limit in targets.items():
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            value = 1e3 * percentile(getattr(measured["hostnet"], step), fraction)
            label = f"full-path/{direction.name}/{step}-{name}"
            target = f"<= {limit * 1e3:.0f} ms" if name == "p99" else None
            rows.append(
                figure(
                    f"{label}/hostnet ({TRIALS} trials)",
                    value,
                    "ms",
                    f"{label}/direct ({DIRECT_TRIALS} trials)",
                    1e3 * percentile(getattr(measured["direct"], step), fraction),
                    target=target,
                    met=None if target is None else value <= limit * 1e3,
                )
            )
    rows.append(
        figure(
            f"full-path/{direction.name}/trials-over-{PROBE_TIMEOUT:.0f}s/hostnet ({2 * TRIALS})",
            measured["hostnet"].timeouts,
            "trials",
            f"full-path/{direction.name}/trials-over-{PROBE_TIMEOUT:.0f}s/direct "
            f"({2 * DIRECT_TRIALS})",
            measured["direct"].timeouts,
            target="0",
            met=measured["hostnet"].timeouts == 0,
        )
    )
    # A server restarted in under ~50 ms can find its port taken by the other side's mirror
    # of this side's own mirror (a mirror of a mirror): each such bind had to be retried.
    rows.append(
        figure(
            f"full-path/{direction.name}/reopen-bind-eaddrinuse/hostnet ({TRIALS} trials)",
            measured["hostnet"].collisions,
            "binds",
            f"full-path/{direction.name}/reopen-bind-eaddrinuse/direct ({DIRECT_TRIALS} trials)",
            measured["direct"].collisions,
            target="0",
            met=measured["hostnet"].collisions == 0,
        )
    )
    return rows


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with namespace_vm() as vm:
        for direction in directions(vm):
            rows += tcp_bulk(vm, direction)
            rows += connection_rate(vm, direction)
            rows += discovery(vm, direction)
    return rows
