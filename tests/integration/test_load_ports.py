"""1,000 ports mirrored at once: one program in the VM listens on 1,000 ports; each gets a
mirror on the host's 127.0.0.1 and ::1 that answers with that port's own reply, within a
bound; the daemon and the agent sit idle with them; all go when the program exits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.vm_helpers import wait_for
from tests.reliability.figures import record
from tests.reliability.load_limits import raised_limits

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

PORTS = 1000
MIRROR_BOUND = 30.0  # seconds for all 1,000 to be mirrored, both families

MANY_LISTENERS = r"""
import asyncio, sys
ports = [int(p) for p in sys.stdin.read().split()]
async def main():
    servers = []
    for port in ports:
        async def answer(reader, writer, port=port):
            writer.write(b"port:%d" % port)
            await writer.drain()
            writer.close()
        servers.append(await asyncio.start_server(answer, "0.0.0.0", port))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_ports(count: int) -> list[int]:
    """``count`` ports free on the host's 127.0.0.1 and ::1 (the VM's are all free)."""
    found: list[int] = []
    port = 30000
    while len(found) < count and port < 60000:
        port += 1
        try:
            with socket.socket() as s4, socket.socket(socket.AF_INET6) as s6:
                s4.bind(("127.0.0.1", port))
                s6.bind(("::1", port))
        except OSError:
            continue
        found.append(port)
    assert len(found) == count
    return found


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    with raised_limits(4 * PORTS + 2000):
        session = daemon_session(tmp_path / "home", {"HostNetworkingEnabled": True})
        running = next(session)
        yield running
        with pytest.raises(StopIteration):
            next(session)


def active_mirrors(daemon: RunningDaemon, ports: set[int]) -> int:
    return sum(
        1
        for entry in daemon.ports()
        if entry["direction"] == "vm-to-host"
        and entry["proto"] == "tcp"
        and entry["port"] in ports
        and entry["state"] == "active"
    )


def reply(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            data = b""
            while chunk := sock.recv(100):
                data += chunk
            return data
    except OSError as exc:
        return f"error:{exc}".encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_a_thousand_ports_mirrored_at_once(daemon: RunningDaemon) -> None:
    ports = free_ports(PORTS)
    wanted = set(ports)
    program = subprocess.Popen(
        [*daemon.vm_prefix, sys.executable, "-c", MANY_LISTENERS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdin is not None and program.stdout is not None
        program.stdin.write(" ".join(map(str, ports)))
        program.stdin.close()
        assert program.stdout.readline().strip() == "ready"
        start = time.monotonic()
        wait_for(
            lambda: active_mirrors(daemon, wanted) == 2 * PORTS,
            MIRROR_BOUND,
            f"{2 * PORTS} mirrors",
        )
        mirrored_after = time.monotonic() - start
        with ThreadPoolExecutor(16) as pool:
            for host in ("127.0.0.1", "::1"):
                answers = list(pool.map(lambda port, h=host: reply(h, port), ports))
                wrong = [(p, a) for p, a in zip(ports, answers, strict=True) if a != b"port:%d" % p]
                assert not wrong, f"{len(wrong)} mirrors on {host} answered wrong: {wrong[:5]}"
        agent = int(daemon.netns["agent_pid"])
        time.sleep(1)  # the checks above are done; let the counters' publication settle
        before = cpu_seconds(daemon.proc.pid), cpu_seconds(agent)
        idle_seconds = 5.0
        time.sleep(idle_seconds)
        daemon_cpu = 100 * (cpu_seconds(daemon.proc.pid) - before[0]) / idle_seconds
        agent_cpu = 100 * (cpu_seconds(agent) - before[1]) / idle_seconds
    finally:
        program.kill()
        program.wait()
    closed = time.monotonic()
    wait_for(lambda: active_mirrors(daemon, wanted) == 0, MIRROR_BOUND, "every mirror to go")
    gone_after = time.monotonic() - closed
    assert all(reply("127.0.0.1", port).startswith(b"error:") for port in ports[:: PORTS // 20])
    assert mirrored_after < MIRROR_BOUND
    assert daemon_cpu < 50 and agent_cpu < 50, (daemon_cpu, agent_cpu)
    record(
        "load",
        "ports mirrored at once (x2: 127.0.0.1 and ::1)",
        PORTS,
        "ports",
        f"all mirrored in {mirrored_after:.1f} s and answering; gone in {gone_after:.1f} s; "
        f"idle CPU with them: daemon {daemon_cpu:.1f} %, agent {agent_cpu:.1f} %",
    )
