"""The kernel path against the proxy path, pasta, socat and the veth itself, both ways.

A real ``hostnet daemon`` as root on a real namespace VM (root is needed; otherwise the
module raises and the table says why). One daemon carries the test port on either path: its
``HostNetworkingDataPath`` setting is switched (live) before each turn and the port row's
``path`` is checked, so the kernel and proxy figures come from the same run, the same VM and
the same servers.

Routes, per direction (VM -> host: a VM server reached at the host's 127.0.0.1; host -> VM:
the reverse):

- ``direct``: the client straight to the server side's veth address, on a server port of its
  own (forwarded connections and direct ones must not share a 4-tuple space: TIME_WAIT
  entries of one would stall the other);
- ``kernel``: hostnet's NAT rules (``path: kernel``); ``proxy``: hostnet's user-space relay
  (``path: proxy``);
- ``pasta``: ``pasta --netns`` forwarding a loopback port into (or out of) the same
  namespace, with its spliced loopback path;
- ``socat``: a forking socat on the client side relaying to the veth address.

Figures: TCP bulk with 1 and 4 streams (iperf3), connections per second with 32 in flight
and their p99 (connect, 1 byte each way, close), the machine's busy CPU per connection (what
a route costs, kernel included), UDP loss at 30,000 datagrams/s (64 bytes), and the daemon's
CPU while the kernel path carries bulk, against the proxy path's daemon and agent. Routes
take turns round after round, in reverse order every other round; a figure is the median of
its rounds.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tests.bench import tools
from tests.bench.bench_full_path import (
    CONCURRENCY,
    CONN_WARMUP,
    Direction,
    Side,
    Vm,
    directions,
    namespace_vm,
    ratio_row,
    wait,
)
from tests.bench.smoke_mode import full_or_smoke

SMOKE_MARKS = ("root",)
BULK_SECONDS = 3
BULK_ROUNDS = full_or_smoke(3, 1)
BULK_STREAMS = full_or_smoke((1, 4), (1,))
CONN_ROUNDS = full_or_smoke(5, 1)
CONN_SECONDS = full_or_smoke(2.0, 0.2)
"""Five rounds of 2 s, not three of 1.5: single 2 s rounds of the direct route alone ranged
over 4,845-5,737 conn/s (18 %) in one quiet run, more than the gap this figure is judged on."""
UDP_RATE = 30_000
UDP_SECONDS = full_or_smoke(3.0, 0.2)
UDP_ROUNDS = full_or_smoke(2, 1)
SWITCH_TIMEOUT = 30.0
SETTLE = full_or_smoke(0.5, 0.1)
SWITCH_SETTLE = full_or_smoke(2.0, 0.2)
"""Seconds after each measurement: a server finishes with its last client first."""
IPERF3_ATTEMPTS = 4
PASTA_ATTEMPTS = 3
ROUTE_NAMES = ("direct", "kernel", "proxy", "pasta", "socat")


@dataclass(frozen=True)
class Route:
    """Where the client connects, the processes charged with CPU, and the daemon's data
    path this route needs (None: it does not go through hostnet)."""

    host: str
    port: int
    cpu_pids: dict[str, int] = field(default_factory=dict)
    tree: bool = False
    data_path: str | None = None
    server_port: int | None = None
    """The server's port, where the client's is a forwarder's (pasta, socat)."""


def row_path(vm: Vm, direction: Direction, proto: str, port: int) -> str | None:
    for entry in vm.daemon.ports():
        address = entry["host_address"] if direction.name == "vm-to-host" else entry["vm_address"]
        if (entry["direction"], entry["proto"], entry["port"], address) == (
            direction.name,
            proto,
            port,
            "127.0.0.1",
        ) and entry["state"] == "active":
            return str(entry.get("path"))
    return None


def use_data_path(vm: Vm, direction: Direction, proto: str, port: int, setting: str) -> None:
    """Switch the daemon's data path and wait until the port's row says it took effect."""
    wanted = "proxy" if setting == "proxy" else "kernel"
    if row_path(vm, direction, proto, port) == wanted:
        return
    vm.daemon.client.call("PUT", "/v1/settings", {"HostNetworkingDataPath": setting})
    try:
        wait(
            lambda: row_path(vm, direction, proto, port) == wanted,
            SWITCH_TIMEOUT,
            f"{direction.name} {proto} port {port} to go on the {wanted} path",
        )
    except tools.BenchError as exc:
        rows = [e for e in vm.daemon.ports() if e["port"] == port and e["proto"] == proto]
        status = vm.daemon.client.get("/v1/status")["data_path"]
        raise tools.BenchError(f"{exc}; rows {rows}; data path {status}") from exc
    # Open issue: iperf3's first bulk run through the proxy right after a kernel -> proxy
    # switch (host -> VM) was reset in tests, while plain connections were not; runs two
    # seconds later pass. Until that is understood, measurements start after the pause.
    time.sleep(SWITCH_SETTLE)


def bound(side: Side, proto: str, port: int) -> bool:
    """Whether something listens on ``proto`` ``port`` in ``side``'s namespace."""
    argv = side.argv(["ss", "-H", "-l", "-n", "-t" if proto == "tcp" else "-u"])
    done = subprocess.run([*argv, "sport", "=", f":{port}"], capture_output=True, text=True)
    return bool(done.stdout.strip())


@contextlib.contextmanager
def started(side: Side, argv: list[str], proto: str, port: int) -> Iterator[tools.Running]:
    with tools.running(side.argv(argv)) as proc:
        wait(lambda: bound(side, proto, port), 10, f"{argv[0]} to listen on {port}", proc)
        yield proc


def pasta_argv(vm: Vm, direction: Direction, proto: str, listen: int, port: int) -> list[str]:
    """pasta joining the VM's namespace, forwarding only ``listen`` -> ``port``."""
    ports = {"-t": "none", "-u": "none", "-T": "none", "-U": "none"}
    if direction.name == "vm-to-host":  # a host loopback port into the namespace
        ports["-t" if proto == "tcp" else "-u"] = f"127.0.0.1/{listen}:{port}"
    else:  # a namespace port out to the host (pasta takes no address here)
        ports["-T" if proto == "tcp" else "-U"] = f"{listen}:{port}"
    netns = f"/run/netns/{vm.daemon.netns['name']}"
    argv = ["pasta", "-f", "-q", "--runas", "0", "--netns", netns, "--no-map-gw"]
    for option, value in ports.items():
        argv += [option, value]
    return argv


def socat_argv(direction: Direction, proto: str, listen: int, port: int) -> list[str]:
    if proto == "tcp":
        return [
            "socat",
            f"TCP-LISTEN:{listen},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
            f"TCP:{direction.direct_ip}:{port}",
        ]
    return [
        "socat",
        f"UDP-LISTEN:{listen},bind=127.0.0.1,fork,reuseaddr",
        f"UDP:{direction.direct_ip}:{port}",
    ]


@dataclass(frozen=True)
class Ports:
    """A server port per route. The kernel and proxy routes have one each: a path switch
    cuts what the old path carried, and a stateful server (iperf3) must not see that as its
    next client's. The direct and socat ports are served on the veth address only: not
    mirrored, so no rule of ours touches them (nor shares their 4-tuples). pasta has its own
    too: its connections reach the server from the server's loopback, as the kernel path's
    do after its SNAT, and a burst of one would leave TIME_WAIT entries on the other's
    4-tuples (a second's stall per collision), charging one contender for another's run."""

    kernel: int
    proxy: int
    direct: int
    pasta: int
    socat: int

    @classmethod
    def pick(cls, *, udp: bool = False) -> Ports:
        return cls(*(tools.free_port(tcp=not udp, udp=udp) for _ in range(5)))

    def servers(self, direction: Direction) -> list[tuple[str, int]]:
        """Where each server listens: (host, port)."""
        return [
            ("0.0.0.0", self.kernel),
            ("0.0.0.0", self.proxy),
            (direction.direct_ip, self.direct),
            ("0.0.0.0", self.pasta),
            (direction.direct_ip, self.socat),
        ]


@contextlib.contextmanager
def routes(vm: Vm, direction: Direction, proto: str, ports: Ports) -> Iterator[dict[str, Route]]:
    """Every route to its own server on ``ports``."""
    socat_port = tools.free_port(udp=True)
    client = direction.client
    with (
        pasta_forward(vm, direction, proto, ports.pasta) as (pasta, pasta_port),
        started(
            client, socat_argv(direction, proto, socat_port, ports.socat), proto, socat_port
        ) as socat,
    ):
        hostnet = {"daemon": vm.daemon_pid, "agent": vm.agent_pid}
        yield {
            "direct": Route(direction.direct_ip, ports.direct),
            "kernel": Route("127.0.0.1", ports.kernel, hostnet, data_path="auto"),
            "proxy": Route("127.0.0.1", ports.proxy, hostnet, data_path="proxy"),
            "pasta": Route("127.0.0.1", pasta_port, {"pasta": pasta.pid}, server_port=ports.pasta),
            "socat": Route(
                "127.0.0.1", socat_port, {"socat": socat.pid}, tree=True, server_port=ports.socat
            ),
        }


@contextlib.contextmanager
def pasta_forward(
    vm: Vm, direction: Direction, proto: str, port: int
) -> Iterator[tuple[tools.Running, int]]:
    """pasta forwarding a free port to ``port``; a pasta that exits at once (seen now and
    then on a loaded machine, with nothing on its output) is started again on another port.

    The namespace-to-host UDP forward listens below ``port``: this pasta (Debian 12's)
    segfaults on ``-U listen:port`` whenever ``listen`` is the larger (its reverse port map
    is indexed by a negative delta), with nothing on its output.
    """
    below = port if direction.name != "vm-to-host" and proto == "udp" else None
    failures = []
    for _ in range(PASTA_ATTEMPTS):
        listen = tools.free_port(udp=True, below=below)
        argv = pasta_argv(vm, direction, proto, listen, port)
        with tools.running(argv) as pasta:
            try:
                wait(partial(bound, direction.client, proto, listen), 10, "pasta", pasta)
            except tools.BenchError as exc:
                failures.append(f"{' '.join(argv)}: {exc}")
                continue
            yield pasta, listen
            return
    raise tools.BenchError("pasta did not start: " + "; ".join(failures))


def take_turns(
    vm: Vm,
    direction: Direction,
    proto: str,
    found: dict[str, Route],
    measure: Callable[[Route], dict[str, float]],
    rounds: int,
) -> dict[str, dict[str, float]]:
    """Medians over ``rounds`` of ``measure`` on every route in turn, the order reversed each
    round; ``cpu_<name>`` is CPU seconds per wall second of each charged process during the
    measurement only."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    order = list(found.items())
    for _ in range(rounds):
        for name, route in order:
            if route.data_path is not None:
                use_data_path(vm, direction, proto, route.port, route.data_path)
            cpu = tools.tree_cpu_seconds if route.tree else tools.cpu_seconds
            before = {key: cpu(pid) for key, pid in route.cpu_pids.items()}
            wall = time.monotonic()
            try:
                result = measure(route)
            except tools.BenchError as exc:
                raise tools.BenchError(f"{direction.name} {proto} via {name}: {exc}") from exc
            wall = time.monotonic() - wall
            for key, pid in route.cpu_pids.items():
                result[f"cpu_{key}"] = (cpu(pid) - before[key]) / wall
            samples[name].append(result)
            time.sleep(SETTLE)
        order.reverse()  # no route always follows the same neighbour (or runs first)
    use_data_path(vm, direction, proto, found["kernel"].port, "auto")
    return {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


@contextlib.contextmanager
def serving_all(
    side: Side,
    argv: Callable[[str, int], list[str]],
    proto: str,
    ports: Ports,
    direction: Direction,
) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for host, port in ports.servers(direction):
            stack.enter_context(started(side, argv(host, port), proto, port))
        yield


def compare(
    label: str,
    unit: str,
    results: dict[str, dict[str, float]],
    key: str,
    targets: dict[str, tuple[str, Callable[[float], bool]]],
) -> list[dict[str, Any]]:
    """Each route's figure against direct, and the kernel path's against pasta."""
    rows = []
    direct = results["direct"][key]
    for name in ROUTE_NAMES[1:]:
        target, meets = targets.get(name, (None, None))
        rows.append(
            ratio_row(
                f"{label}/{name}",
                unit,
                results[name][key],
                f"{label}/direct",
                direct,
                target,
                meets,
            )
        )
    target, meets = targets.get("kernel-vs-pasta", (None, None))
    rows.append(
        ratio_row(
            f"{label}/kernel",
            unit,
            results["kernel"][key],
            f"{label}/pasta",
            results["pasta"][key],
            target,
            meets,
        )
    )
    return rows


def tcp_bulk(vm: Vm, direction: Direction, streams: int) -> list[dict[str, Any]]:
    ports = Ports.pick()

    def iperf3_server(host: str, port: int) -> list[str]:
        return ["iperf3", "--server", "--bind", host, "--port", str(port)]

    def bulk(route: Route) -> dict[str, float]:
        report = iperf3_streams(direction.client, route.host, route.port, streams)
        return {"gbits": tools.iperf3_tcp_gbits(report)}

    with (
        serving_all(direction.server, iperf3_server, "tcp", ports, direction),
        routes(vm, direction, "tcp", ports) as found,
    ):
        results = take_turns(vm, direction, "tcp", found, bulk, BULK_ROUNDS)
    label = f"kernel-path/{direction.name}/tcp-bulk-{streams}-stream"
    rows = compare(
        label,
        "Gbit/s",
        results,
        "gbits",
        {
            "kernel": (">= 0.9 x direct", lambda r: r >= 0.9),
            "kernel-vs-pasta": (">= 1.05 x pasta", lambda r: r >= 1.05),
        },
    )
    kernel_cpu = 100 * results["kernel"]["cpu_daemon"]
    proxy_cpu = 100 * (results["proxy"]["cpu_daemon"] + results["proxy"]["cpu_agent"])
    rows.append(
        ratio_row(
            f"{label}-cpu/kernel-daemon",
            "% of a core",
            kernel_cpu,
            f"{label}-cpu/proxy-daemon+agent",
            proxy_cpu,
            "<= 2 % of a core",
        )
    )
    rows[-1]["met"] = kernel_cpu <= 2.0
    return rows


def iperf3_streams(side: Side, host: str, port: int, streams: int) -> dict[str, Any]:
    """An iperf3 run, asked again when the server is still busy with the last client or the
    run broke off (on a loaded machine iperf3's control exchange times out now and then):
    every retry is printed, and the last error raised."""
    report: dict[str, Any] = {}
    for attempt in range(IPERF3_ATTEMPTS):
        try:
            report = iperf3_once(side, host, port, streams)
        except subprocess.TimeoutExpired:
            report = {"error": f"no answer in {BULK_SECONDS + 30} s"}
        if "error" not in report:
            return report
        print(
            f"bench: iperf3 to {host}:{port}: {report['error']} (try {attempt + 1})",
            file=sys.stderr,
        )
        time.sleep(1.0)
    raise tools.BenchError(f"iperf3 to {host}:{port}: {report['error']}")


def iperf3_once(side: Side, host: str, port: int, streams: int) -> dict[str, Any]:
    argv = ["iperf3", "-c", host, "-p", str(port), "-J"]
    argv += full_or_smoke(["-t", str(BULK_SECONDS)], ["-n", str(tools.IPERF3_SMOKE_BYTES)])
    done = subprocess.run(
        side.argv([*argv, "-P", str(streams)]),
        capture_output=True,
        text=True,
        timeout=BULK_SECONDS + 30,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise tools.BenchError(f"iperf3 gave no JSON: {done.stderr.strip()}") from None
    return report


def connection_rate(vm: Vm, direction: Direction) -> list[dict[str, Any]]:
    ports = Ports.pick()

    def serve(host: str, port: int) -> list[str]:
        argv = [tools.PYTHON, "-m", "tests.bench.conn_rate", "serve"]
        return [*argv, "--host", host, "--port", str(port)]

    def rate(route: Route) -> dict[str, float]:
        return tools.connection_rate(
            route.port,
            host=route.host,
            prefix=direction.client.prefix,
            seconds=CONN_SECONDS,
            concurrency=CONCURRENCY,
            warmup=CONN_WARMUP,
        )

    with (
        serving_all(direction.server, serve, "tcp", ports, direction),
        routes(vm, direction, "tcp", ports) as found,
    ):
        results = take_turns(vm, direction, "tcp", found, rate, CONN_ROUNDS)
    label = f"kernel-path/{direction.name}/tcp-connect-1-byte-close-{CONCURRENCY}-concurrent"
    rows = compare(
        label,
        "conn/s",
        results,
        "per_second",
        {"kernel": (">= 0.85 x direct", lambda r: r >= 0.85)},
    )
    rows.append(
        ratio_row(
            f"{label}-p99/kernel",
            "ms",
            results["kernel"]["p99_ms"],
            f"{label}-p99/direct",
            results["direct"]["p99_ms"],
        )
    )
    rows += compare(f"{label}-machine-cpu", "us/conn", results, "busy_us_per_connection", {})
    return rows


class Sink:
    """A :mod:`tests.bench.udp_loss` sink, asked for its count after each run."""

    def __init__(self, side: Side, host: str, port: int) -> None:
        argv = [tools.PYTHON, "-m", "tests.bench.udp_loss", "sink", "--host", host]
        argv += ["--port", str(port)]
        self.proc = subprocess.Popen(
            side.argv(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tools.REPO,
        )
        if self.read() != "ready":
            raise tools.BenchError("the UDP sink did not start")

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def count(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.read())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def udp_loss(vm: Vm, direction: Direction) -> list[dict[str, Any]]:
    ports = Ports.pick(udp=True)
    sinks: dict[int, Sink] = {}

    def loss(route: Route) -> dict[str, float]:
        sink = sinks[route.server_port or route.port]
        sink.count()  # start from zero
        argv = [
            tools.PYTHON,
            "-m",
            "tests.bench.udp_loss",
            "send",
            "--host",
            route.host,
            "--port",
            str(route.port),
            "--rate",
            str(UDP_RATE),
            "--seconds",
            str(UDP_SECONDS),
        ]
        done = subprocess.run(
            direction.client.argv(argv),
            capture_output=True,
            text=True,
            cwd=tools.REPO,
            timeout=UDP_SECONDS + 30,
            check=False,
        )
        if done.returncode != 0:
            raise tools.BenchError(f"the UDP sender failed: {done.stderr.strip()[-500:]}")
        sent = int(done.stdout.strip())
        received = sink.count()
        return {"loss": 100.0 * max(0, sent - received) / max(1, sent)}

    try:
        for host, port in ports.servers(direction):
            sinks[port] = Sink(direction.server, host, port)
        with routes(vm, direction, "udp", ports) as found:
            results = take_turns(vm, direction, "udp", found, loss, UDP_ROUNDS)
    finally:
        for sink in sinks.values():
            sink.close()
    label = f"kernel-path/{direction.name}/udp-loss-{UDP_RATE // 1000}k-dgram-per-s"
    direct = results["direct"]["loss"]
    rows = []
    for name in ROUTE_NAMES[1:]:
        value = results[name]["loss"]
        target = "<= direct + 0.5 points" if name == "kernel" else None
        rows.append(
            ratio_row(f"{label}/{name}", "% lost", value, f"{label}/direct", direct, target)
        )
        if target is not None:
            rows[-1]["met"] = value <= direct + 0.5
    return rows


def run() -> Iterator[dict[str, Any]]:
    """The figures as they are measured (the runner keeps them if a later step fails)."""
    with namespace_vm("auto") as vm:

        def data_path() -> dict[str, str]:
            return dict(vm.daemon.client.get("/v1/status")["data_path"])

        try:
            wait(lambda: data_path()["active"] == "kernel", SWITCH_TIMEOUT, "the kernel path")
        except tools.BenchError as exc:
            raise tools.BenchError(
                f"the daemon does not use the kernel path: {data_path()}"
            ) from exc
        for direction in directions(vm):
            for streams in BULK_STREAMS:
                yield from tcp_bulk(vm, direction, streams)
            yield from connection_rate(vm, direction)
            yield from udp_loss(vm, direction)
