"""10,000 TCP connections open at once through the kernel path (the default as root), every
byte checked: the reliability table's 10k row on the path a user gets.

Host client -> the host's 127.0.0.1:P -> NAT over the veth -> the VM's echo server. The
daemon holds no descriptor per connection: its socket count is checked at the peak.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from proxy.nat.nft import nft_available
from tests.integration.daemon_fixture import RunningDaemon, daemon_session
from tests.integration.test_load_connections import CONNECTIONS, hold_many, start_async_echo
from tests.integration.vm_helpers import free_port, wait_for
from tests.reliability.figures import record
from tests.reliability.leaks import socket_count
from tests.reliability.load_limits import raise_in_namespace, raised_limits

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces and nft need root"),
    pytest.mark.skipif(not nft_available(), reason="libnftables missing: apt install nftables"),
]

CLIENT_RESERVE = 2000


@pytest.fixture(scope="module")
def kernel_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with raised_limits(CONNECTIONS + 2 * CLIENT_RESERVE):
        home = tmp_path_factory.mktemp("load-kernel") / "home"
        session = daemon_session(home, {"HostNetworkingEnabled": True})
        daemon = next(session)
        raise_in_namespace(daemon.vm_prefix)
        yield daemon
        with pytest.raises(StopIteration):
            next(session)


def kernel_row(daemon: RunningDaemon, port: int) -> dict[str, object] | None:
    for entry in daemon.ports():
        if (entry["direction"], entry["proto"], entry["port"], entry["host_address"]) == (
            "vm-to-host",
            "tcp",
            port,
            "127.0.0.1",
        ) and entry.get("path") == "kernel":
            return dict(entry)
    return None


@pytest.mark.slow
@pytest.mark.timeout(300)  # 10,000 connections on a loaded 2-core machine
async def test_ten_thousand_concurrent_connections_on_the_kernel_path(
    kernel_daemon: RunningDaemon,
) -> None:
    daemon = kernel_daemon
    port = free_port()
    server = start_async_echo(daemon.vm_prefix, port)
    try:
        wait_for(lambda: kernel_row(daemon, port) is not None, 10, "the kernel path")
        idle_sockets = socket_count(daemon.proc.pid)
        took, peak, _fds, good = await hold_many(port, CONNECTIONS, daemon.proc.pid)
        assert good == CONNECTIONS, f"only {good} of {CONNECTIONS} echoes came back whole"
        # hold_many waits (10 s at most) for the daemon to hold 2 sockets per connection,
        # which it never does here: peak is its socket count with every connection open.
        assert peak <= idle_sockets + 50, (idle_sockets, peak)

        def counted() -> bool:
            row = kernel_row(daemon, port)
            counters = row["counters"] if row else {}
            assert isinstance(counters, dict)
            return int(counters.get("connections_total", 0)) >= CONNECTIONS

        wait_for(counted, 5, "the kernel's counters to show every connection")
    finally:
        server.kill()
        server.wait()
    megabytes = 2 * CONNECTIONS * 2048 / 1e6
    record(
        "load",
        "concurrent TCP connections on the kernel path, all bytes checked",
        CONNECTIONS,
        "conns",
        f"{took:.1f} s; {megabytes:.0f} MB both ways; daemon {peak:,} sockets with all open "
        f"({idle_sockets:,} idle)",
    )
