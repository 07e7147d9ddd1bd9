"""Pieces benchmarks share: processes that listen, iperf3, CPU time of a process, ports.

Everything here drives real programs on loopback and returns plain numbers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.smoke_mode import full_or_smoke

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HOSTNET = str(Path(sys.executable).with_name("hostnet"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_COUNT = os.cpu_count() or 1


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to; the message says why."""


def free_port(
    *, tcp: bool = True, udp: bool = False, host: str = "127.0.0.1", below: int | None = None
) -> int:
    """A port the kernel calls free for every protocol asked for (racy, good enough here);
    with ``below``, one under that number."""
    for _ in range(100):
        if below is None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                port: int = probe.getsockname()[1]
        else:
            port = random.randrange(1024, below)
        if udp and not port_free(port, socket.SOCK_DGRAM, host):
            continue
        if tcp and not port_free(port, socket.SOCK_STREAM, host):
            continue
        return port
    raise BenchError("no port free for both TCP and UDP")


def port_free(port: int, kind: socket.SocketKind, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def tcp_listening(port: int) -> bool:
    """Whether a socket listens on TCP ``port``, from /proc (a probe connection would reach
    the server through a relay, and iperf3 takes one for a client that went away)."""
    wanted = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in lines:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A" and (fields[1] + " ").endswith(wanted):
                    return True
    return False


@dataclass
class Running:
    """A process started by :func:`running`."""

    argv: Sequence[str]
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    *,
    tcp_port: int | None = None,
    udp_port: int | None = None,
    timeout: float = 30.0,
) -> Iterator[Running]:
    """Run ``argv`` until the block ends; first wait until it listens on the ports given.

    ``timeout`` is generous: ``hostnet forward`` took 5-6 s to listen on a 2-core machine at
    load 20 (it imports every command's modules first), and a start is no figure.

    A UDP port counts as taken once binding it fails. On exit the process gets SIGTERM
    (SIGKILL after 5 s). Its output goes to a temporary log, quoted when it dies early.
    """
    with tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    proc = Running(argv, process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise BenchError(
                    f"{argv[0]} exited with {process.returncode}: {proc.output().strip()}"
                )
            ready = (tcp_port is None or tcp_listening(tcp_port)) and (
                udp_port is None or not port_free(udp_port, socket.SOCK_DGRAM)
            )
            if ready:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(argv)} did not listen within {timeout} s")
            time.sleep(0.02)
        yield proc
    finally:
        stop(process)
        log_path.unlink(missing_ok=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (socat forks children), then SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# --- relays -----------------------------------------------------------------------------


def hostnet_forward(listen: int, target: int, *, udp: bool = False) -> list[str]:
    argv = [HOSTNET, "forward", "--listen", f"127.0.0.1:{listen}", "--to", f"127.0.0.1:{target}"]
    return [*argv, "--udp"] if udp else argv


def socat_tcp(listen: int, target: int) -> list[str]:
    return [
        "socat",
        f"TCP-LISTEN:{listen},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
        f"TCP:127.0.0.1:{target}",
    ]


def socat_udp(listen: int, target: int) -> list[str]:
    """One child per client address (UDP-LISTEN with fork), like hostnet's flows."""
    listener = f"UDP-LISTEN:{listen},bind=127.0.0.1,fork,reuseaddr"
    return ["socat", listener, f"UDP:127.0.0.1:{target}"]


# --- CPU time ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (utime + stime)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``, its reaped children, and its live descendants (socat forks)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry)] = int(_stat_fields(int(entry))[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for member in tree:
        with contextlib.suppress(OSError):
            fields = _stat_fields(member)
            total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


# --- iperf3 -----------------------------------------------------------------------------


def iperf3_server(port: int) -> list[str]:
    return ["iperf3", "--server", "--bind", "127.0.0.1", "--port", str(port)]


IPERF3_SMOKE_BYTES = 32 << 20
"""What a smoke run of a TCP bulk figure sends: a fraction of a second even at 1 Gbit/s."""


def iperf3(
    port: int,
    *,
    seconds: int,
    smoke_bytes: int = IPERF3_SMOKE_BYTES,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    streams: int = 1,
    udp_bitrate: int | None = None,
    length: int | None = None,
    window: str | None = None,
) -> dict[str, Any]:
    """Run an iperf3 client against ``host``:``port`` and return its ``-J`` report.

    It sends for ``seconds``, or in smoke mode ``smoke_bytes`` (iperf3's ``-t`` takes whole
    seconds only). ``prefix`` runs it elsewhere (``ip netns exec NS``). ``window`` (``-w``,
    e.g. "4M") sets the socket buffers of both ends' data sockets.
    """
    argv = [*prefix, "iperf3", "-c", host, "-p", str(port), "-J", "-P", str(streams)]
    argv += full_or_smoke(["-t", str(seconds)], ["-n", str(smoke_bytes)])
    if udp_bitrate is not None:
        argv += ["-u", "-b", str(udp_bitrate)]
    if length is not None:
        argv += ["-l", str(length)]
    if window is not None:
        argv += ["-w", window]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 gave no JSON (exit {done.returncode}): {done.stderr}") from None
    if "error" in report:
        raise BenchError(f"{' '.join(argv)}: {report['error']}")
    return report


def iperf3_tcp_gbits(report: dict[str, Any]) -> float:
    """Receiver-side throughput of a TCP run, in Gbit/s."""
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def iperf3_udp_loss(report: dict[str, Any]) -> tuple[float, float]:
    """Loss in percent and datagrams sent per second, as the server counted them, of a UDP
    run."""
    summary = report["end"]["sum"]
    return float(summary["lost_percent"]), int(summary["packets"]) / float(summary["seconds"])


# --- connection rate --------------------------------------------------------------------


def one_byte_server(port: int) -> list[str]:
    return [PYTHON, "-m", "tests.bench.conn_rate", "serve", "--port", str(port)]


def connection_rate(
    port: int,
    *,
    seconds: float,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    concurrency: int = 32,
    warmup: float = 0.3,
) -> dict[str, float]:
    """Connections/s and latency percentiles (ms) of the client in :mod:`tests.bench.conn_rate`.

    The client is its own process on uvloop, so it shares the machine's cores with the
    relay and the server but not their event loop. ``prefix`` runs it elsewhere.
    """
    argv = [*prefix, PYTHON, "-m", "tests.bench.conn_rate", "client", "--host", host]
    argv += ["--port", str(port), "--seconds", str(seconds), "--concurrency", str(concurrency)]
    argv += ["--warmup", str(warmup)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, cwd=REPO, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"connection-rate client failed: {done.stderr.strip()[-1000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result
