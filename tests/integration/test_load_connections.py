"""10,000 TCP connections open at once through the whole proxy path, every byte checked.

Host client -> the daemon's mirror on 127.0.0.1 -> a stream to the agent -> the VM's echo
server, as a developer's tools would use it. All connections are open at the same moment
(the test waits until every one is, and counts the daemon's sockets), then each sends its
own payload and checks the echo byte for byte.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from proxy.addresses import Endpoint
from proxy.pipe_pool import IDLE_KEPT, MAX_LENT, PIPES
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.relay_helpers import recv_all
from tests.integration.vm_helpers import free_port, host_answer, start_server, wait_for
from tests.reliability.figures import record
from tests.reliability.leaks import fd_count, socket_count
from tests.reliability.load_limits import open_file_limit, raise_in_namespace, raised_limits

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

CONNECTIONS = int(os.environ.get("HOSTNET_LOAD_CONNECTIONS", "10000"))
DAEMON_RESERVE = 1500  # descriptors the daemon needs besides its connections
FDS_PER_CONNECTION = 2  # the client's socket and the VM target's: splice pipes are lent
PAYLOAD = 2048
CONNECTING_AT_ONCE = 64  # bursts above the agent's unix backlog (512) get reset: see report

ASYNC_ECHO = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
async def serve(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except OSError:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "0.0.0.0", int(sys.argv[1]), backlog=65535)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def start_async_echo(prefix: list[str], port: int) -> subprocess.Popen[str]:
    """An echo server that answers as bytes arrive, for thousands of connections at once."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", ASYNC_ECHO, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def loaded_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with raised_limits(4 * CONNECTIONS + 10_000):
        home = tmp_path_factory.mktemp("load") / "home"
        # The proxy path: the kernel path's own 10k row is test_load_kernel_path.py.
        settings = {"HostNetworkingEnabled": True, "HostNetworkingDataPath": "proxy"}
        session = daemon_session(home, settings)
        daemon = next(session)
        raise_in_namespace(daemon.vm_prefix)
        yield daemon
        with pytest.raises(StopIteration):
            next(session)


def echoes(port: int) -> bool:
    try:
        return host_answer("tcp", "127.0.0.1", port, b"x", timeout=0.5) == b"x"
    except OSError:
        return False


def payload_for(index: int) -> bytes:
    seed = index.to_bytes(4, "big")
    return (seed * (PAYLOAD // 4 + 1))[:PAYLOAD]


async def hold_many(port: int, count: int, daemon_pid: int) -> tuple[float, int, int, int]:
    """Open ``count`` connections, hold them all, then check every echo; the seconds taken,
    the daemon's socket and descriptor counts with all open, and how many echoes came back
    whole."""
    all_open = asyncio.Event()
    go = asyncio.Event()
    opened = 0
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    good = 0

    async def one(index: int) -> None:
        nonlocal opened, good
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened += 1
        if opened == count:
            all_open.set()
        await go.wait()
        data = payload_for(index)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read(-1)
        writer.close()
        if echoed == data:
            good += 1

    start = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.wait_for(all_open.wait(), 50)
    idle = socket_count(daemon_pid)
    sockets_at_peak = idle
    for _ in range(500):  # until the daemon holds every connection (or 10 s)
        sockets_at_peak = socket_count(daemon_pid)
        if sockets_at_peak >= 2 * count:
            break
        await asyncio.sleep(0.02)
    fds_at_peak = fd_count(daemon_pid)
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 50)
    return time.monotonic() - start, sockets_at_peak, fds_at_peak, good


@needs_root
@pytest.mark.slow
async def test_ten_thousand_concurrent_connections(loaded_daemon: RunningDaemon) -> None:
    daemon = loaded_daemon
    port = free_port()
    server = start_async_echo(daemon.vm_prefix, port)
    try:
        wait_for(lambda: echoes(port), 5, "the mirror")
        idle_sockets = socket_count(daemon.proc.pid)
        idle_fds = fd_count(daemon.proc.pid)
        # Each connection holds two descriptors in the daemon (its splice pipes are lent only
        # while bytes are in flight): where the hard RLIMIT_NOFILE cannot be raised (no
        # CAP_SYS_RESOURCE, as in some containers) that caps how many it can hold at once.
        count = min(CONNECTIONS, (open_file_limit() - DAEMON_RESERVE) // FDS_PER_CONNECTION)
        took, peak, peak_fds, good = await hold_many(port, count, daemon.proc.pid)
        assert good == count, f"only {good} of {count} echoes came back whole"
        assert peak >= idle_sockets + 2 * count * 0.99, (idle_sockets, peak)
        # Idle connections hold no pipes: two descriptors each, plus at most the pool's bound.
        assert peak_fds <= idle_fds + FDS_PER_CONNECTION * count + 2 * MAX_LENT, (
            idle_fds,
            peak_fds,
        )
        await asyncio.to_thread(
            wait_for,
            lambda: fd_count(daemon.proc.pid) <= idle_fds + 2 * IDLE_KEPT + 8,  # pipe pool
            10,
            "the daemon's descriptors back to idle",
        )
    finally:
        server.kill()
        server.wait()
    megabytes = 2 * count * PAYLOAD / 1e6
    limited = (
        f"; capped by RLIMIT_NOFILE {open_file_limit():,} (hard, not raisable here)"
        if count < CONNECTIONS
        else ""
    )
    record(
        "load",
        "concurrent TCP connections, all bytes checked",
        count,
        "conns",
        f"{took:.1f} s; {megabytes:.0f} MB both ways; daemon {peak:,} sockets, "
        f"{peak_fds:,} descriptors at peak{limited}",
    )


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def limit_leaving_free(free: int) -> int:
    """The lowest open-file limit under which exactly ``free`` more descriptors fit."""
    listed = {int(fd) for fd in os.listdir("/proc/self/fd")}
    used = {fd for fd in listed if is_open(fd)}  # not the listing's own, closed since
    limit = 0
    available = 0
    while available < free:
        if limit not in used:
            available += 1
        limit += 1
    return limit


async def test_out_of_descriptors_for_pipes_still_relays_every_byte() -> None:
    """With too few descriptors left for splice pipes (EMFILE), connections are copied in
    user space instead: none hangs, none leaks its sockets, every byte arrives."""
    loop = asyncio.get_running_loop()
    # The echo server is a process of its own: only the relay runs short of descriptors
    # (an event-loop server out of them sheds connections by itself, libuv's EMFILE trick).
    port = free_port()
    server = start_server([], "tcp", "127.0.0.1", port)
    target = Endpoint("127.0.0.1", port)
    forwarder = TcpForwarder(Endpoint("127.0.0.1", 0), tcp_connector(target))
    await forwarder.start()
    count = 20
    clients = [socket.socket() for _ in range(count)]  # made before the limit is lowered
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    PIPES.release_idle()  # no pipe kept from an earlier test: each one must be made anew
    # Room for each connection's two relay sockets (accepted, upstream) and one more: never
    # the two descriptors of a splice pipe. New descriptors take the lowest free numbers
    # below the limit, so count the free numbers, holes included.
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit_leaving_free(2 * count + 1), hard))
    try:
        for sock in clients:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", forwarder.bound.port))
        async with asyncio.timeout(5):  # every relay socket made before any byte flows
            while forwarder.counters.connections_open < count:
                await asyncio.sleep(0.01)
        for index, sock in enumerate(clients):
            await loop.sock_sendall(sock, payload_for(index))
            sock.shutdown(socket.SHUT_WR)
        for index, sock in enumerate(clients):
            async with asyncio.timeout(5):
                assert await recv_all(sock) == b"echo:" + payload_for(index)
            sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await forwarder.stop()
        server.kill()
        server.wait()
    assert forwarder.counters.connections_open == 0
    assert forwarder.counters.last_error.startswith("no splice pipes"), "the limit never bit"
