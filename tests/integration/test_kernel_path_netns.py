"""The kernel path on its own, in two real namespaces: NAT both ways, loopback peers,
counters, the loopback guard, replacement without dropping a connection, and removal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from proxy.nat.kernel_path import KernelPath, remove_stale_tables
from proxy.nat.nft import nft_available
from proxy.nat.ruleset import PortKey
from tests.integration.nat_namespaces import NatPair, nat_pair

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nft need root"),
    pytest.mark.skipif(not nft_available(), reason="libnftables missing: apt install nftables"),
]

PORT = 7411


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[NatPair]:
    with nat_pair(str(abs(hash(request.node.name)) % 100)) as made:
        yield made


def kernel(pair: NatPair) -> KernelPath:
    return KernelPath(pair.link, pair.vm_path, host_netns=pair.host_path)


async def carry(pair: NatPair, *keys: PortKey) -> KernelPath:
    path = kernel(pair)
    await path.start()
    await path.set_ports(keys)
    return path


@pytest.mark.parametrize("proto", ["tcp", "udp"])
async def test_host_reaches_a_vm_loopback_server_which_sees_a_loopback_peer(
    pair: NatPair, proto: str
) -> None:
    server = pair.serve("vm", proto, "127.0.0.1", PORT)
    try:
        assert pair.ask("host", proto, "127.0.0.1", PORT, "hi", 0.5).startswith("error:")
        path = await carry(pair, ("to_vm", proto, PORT))  # type: ignore[arg-type]
        assert pair.ask("host", proto, "127.0.0.1", PORT, "hello") == "127.0.0.1:hello"
        await path.refresh_counters()
        counters = path.counters(("to_vm", proto, PORT))  # type: ignore[arg-type]
        assert counters is not None
        total = counters.connections_total if proto == "tcp" else counters.udp_flows_total
        assert total == 1
        assert counters.bytes_in >= len("hello") and counters.bytes_out >= len("127.0.0.1:hello")
        await path.set_ports([])
        assert pair.ask("host", proto, "127.0.0.1", PORT, "hi", 0.5).startswith("error:")
    finally:
        server.kill()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
async def test_vm_reaches_a_host_loopback_server_which_sees_a_loopback_peer(
    pair: NatPair, proto: str
) -> None:
    server = pair.serve("host", proto, "127.0.0.1", PORT)
    try:
        assert pair.ask("vm", proto, "127.0.0.1", PORT, "hi", 0.5).startswith("error:")
        path = await carry(pair, ("to_host", proto, PORT))  # type: ignore[arg-type]
        assert pair.ask("vm", proto, "127.0.0.1", PORT, "hello") == "127.0.0.1:hello"
        await path.refresh_counters()
        counters = path.counters(("to_host", proto, PORT))  # type: ignore[arg-type]
        assert counters is not None and counters.bytes_in > 0 and counters.bytes_out > 0
    finally:
        server.kill()


async def test_the_vm_reaches_no_unmirrored_host_loopback_port(pair: NatPair) -> None:
    """Only carried ports pass: not another loopback port, not through the link address,
    and not a packet the VM routes to the host's 127.0.0.1 itself (route_localnet is on)."""
    other = PORT + 1
    servers = [pair.serve("host", "tcp", "127.0.0.1", port) for port in (PORT, other)]
    try:
        await carry(pair, ("to_host", "tcp", PORT))
        assert pair.ask("vm", "tcp", "127.0.0.1", PORT, "ok") == "127.0.0.1:ok"
        assert pair.ask("vm", "tcp", "127.0.0.1", other, "x", 0.5).startswith("error:")
        assert pair.ask("vm", "tcp", pair.link.host_ip, other, "x", 0.5).startswith("error:")
        # A VM's root sends to the host's loopback directly over the link.
        vm = pair.prefix("vm")
        subprocess.run(
            [*vm, "ip", "route", "add", "127.0.0.77/32", "dev", pair.link.vm_if, "table", "77"],
            check=True,
        )
        subprocess.run([*vm, "ip", "rule", "add", "to", "127.0.0.77", "lookup", "77"], check=True)
        subprocess.run(
            [*pair.prefix("host"), "ip", "addr", "add", "127.0.0.77/8", "dev", "lo"], check=True
        )
        bypass = pair.serve("host", "tcp", "127.0.0.77", other)
        try:
            assert pair.ask("vm", "tcp", "127.0.0.77", other, "x", 1).startswith("error:")
        finally:
            bypass.kill()
    finally:
        for server in servers:
            server.kill()


async def test_a_new_owner_replaces_the_tables_and_an_open_connection_lives_on(
    pair: NatPair,
) -> None:
    """What a restarted daemon does: the same tables made anew, in one transaction a side;
    conntrack keeps the open connection's NAT."""
    server = pair.serve("vm", "tcp", "127.0.0.1", PORT)
    client = subprocess.Popen(
        [*pair.prefix("host"), sys.executable, "-c", LINE_CLIENT, str(PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        await carry(pair, ("to_vm", "tcp", PORT))
        client.stdin.write("one\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "127.0.0.1:one"
        successor = await carry(pair)  # a new owner, with no ports known yet
        client.stdin.write("two\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "127.0.0.1:two"
        await successor.set_ports([("to_vm", "tcp", PORT)])
        client.kill()  # the server answers one connection at a time
        client.wait()
        assert pair.ask("host", "tcp", "127.0.0.1", PORT, "new") == "127.0.0.1:new"
    finally:
        client.kill()
        server.kill()


LINE_CLIENT = r"""
import socket, sys
c = socket.socket()
for _ in range(100):
    try:
        c.connect(("127.0.0.1", int(sys.argv[1]))); break
    except OSError:
        import time; c.close(); c = socket.socket(); time.sleep(0.05)
for line in sys.stdin:
    c.sendall(line.strip().encode()); print(c.recv(65536).decode(), flush=True)
"""


async def test_close_removes_both_tables_and_route_localnet(pair: NatPair) -> None:
    path = await carry(pair, ("to_vm", "tcp", PORT))
    table = pair.link.table
    assert table in pair.nft("host", "list", "tables")
    assert table in pair.nft("vm", "list", "tables")
    assert pair.sysctl("host", pair.link.host_if) == "1"
    assert pair.sysctl("vm", pair.link.vm_if) == "1"
    await path.close()
    assert table not in pair.nft("host", "list", "tables")
    assert table not in pair.nft("vm", "list", "tables")
    assert pair.sysctl("host", pair.link.host_if) == "0"
    assert pair.sysctl("vm", pair.link.vm_if) == "0"


async def test_counters_read_while_ports_change_or_the_path_closes(pair: NatPair) -> None:
    """The counters are read outside the rules' lock: a port added during a read is carried
    at once (and reads as zero until the next read), and a read the close overtook ends
    quietly rather than with the missing table's error."""
    path = await carry(pair, ("to_vm", "tcp", PORT))
    added = ("to_vm", "udp", PORT + 1)
    reading = asyncio.ensure_future(path.refresh_counters())
    await path.set_ports({("to_vm", "tcp", PORT), added})
    await reading
    assert added in path.carried
    assert path.counters(added) is not None
    await path.refresh_counters()
    assert path.counters(added) is not None
    reading = asyncio.ensure_future(path.refresh_counters())
    await asyncio.sleep(0)  # the read is on its way
    await path.close()
    await reading
    assert path.counters(added) is None


def test_stale_host_tables_of_vanished_links_are_removed_and_live_ones_kept() -> None:
    """A SIGKILLed daemon's host table whose VM is gone goes; one whose link lives stays."""
    from proxy.nat import ruleset
    from proxy.nat.nft import run_nft

    gone = ruleset.NatLink("hn0dead00h", "hn0dead00v", "10.199.1.1", "10.199.1.2")
    live_if = "hnk15live0h"
    subprocess.run(
        ["ip", "link", "add", live_if, "type", "veth", "peer", "name", "hnk15live0v"], check=True
    )
    live = ruleset.NatLink(live_if, "hnk15live0v", "10.199.2.1", "10.199.2.2")
    try:
        run_nft(ruleset.host_table(gone))
        run_nft(ruleset.host_table(live))
        removed = remove_stale_tables()
        assert gone.table in removed and live.table not in removed
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert gone.table not in tables and live.table in tables
    finally:
        run_nft(ruleset.delete_table(gone.table))
        run_nft(ruleset.delete_table(live.table))
        subprocess.run(["ip", "link", "del", live_if], capture_output=True)
