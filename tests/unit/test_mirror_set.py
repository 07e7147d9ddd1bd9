"""MirrorSet on real loopback sockets: states with reasons, retries, and own-socket exclusion."""

from __future__ import annotations

import asyncio
import socket

import pytest

import proxy.mirror_set as mirror_set
from proxy.addresses import Endpoint
from proxy.listeners import Proto
from proxy.mirror_set import Engine, MirrorSet
from proxy.tcp_forwarder import TcpForwarder, tcp_connector
from proxy.udp_forwarder import UdpForwarder


def make_engine(proto: Proto, bind: Endpoint, remote_host: str) -> Engine:
    target = Endpoint(remote_host, 9)  # never connected to in these tests
    if proto == "tcp":
        return TcpForwarder(bind, tcp_connector(target))
    return UdpForwarder(bind, target=target)


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_active_on_both_loopbacks_then_removed() -> None:
    port = free_tcp_port()
    mirrors = MirrorSet(make_engine)
    await mirrors.set_remote([("tcp", "0.0.0.0", port), ("tcp", "10.1.2.3", port + 1)])
    states = {(m.key.bind, m.key.port): m for m in mirrors.states()}
    assert set(states) == {("127.0.0.1", port), ("::1", port)}  # 10.1.2.3 is not mirrored
    assert all(m.state == "active" for m in states.values())
    assert states[("::1", port)].remote_host == "127.0.0.1"  # reached over IPv4 loopback
    await mirrors.set_remote([])
    assert mirrors.states() == []
    await mirrors.close()


async def test_conflict_names_the_reason_and_clears_when_freed() -> None:
    port = free_tcp_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    changes: list[tuple[str, str]] = []
    mirrors = MirrorSet(
        make_engine,
        binds=("127.0.0.1",),
        retry_interval=0.05,
        on_change=lambda m: changes.append((m.state, m.reason)),
    )
    await mirrors.set_remote([("tcp", "127.0.0.1", port)])
    (mirror,) = mirrors.states()
    assert mirror.state == "conflict"
    assert "already in use" in mirror.reason
    squatter.close()
    for _ in range(100):
        if mirror.state == "active":
            break
        await asyncio.sleep(0.02)
    assert mirror.state == "active"
    assert changes[0][0] == "conflict" and changes[-1] == ("active", "")
    await mirrors.close()


async def test_excluded_and_shadowed_ports_are_states_not_mirrors() -> None:
    port = free_tcp_port()
    mirrors = MirrorSet(
        make_engine,
        binds=("127.0.0.1",),
        excluded_ports=lambda p: p == port,
        local_ports=lambda proto, p: proto == "udp" and p == port,
    )
    await mirrors.set_remote([("tcp", "0.0.0.0", port), ("udp", "0.0.0.0", port)])
    states = {m.key.proto: m for m in mirrors.states()}
    assert states["tcp"].state == "excluded" and "excluded" in states["tcp"].reason
    assert states["udp"].state == "excluded"  # exclusion wins over everything else
    mirrors.excluded_ports = lambda p: False
    await mirrors.reconcile()
    states = {m.key.proto: m for m in mirrors.states()}
    assert states["tcp"].state == "active"
    assert states["udp"].state == "shadowed" and "already listens" in states["udp"].reason
    await mirrors.close()


async def test_closed_mirrors_stay_excluded_for_a_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A discovery scan that began before a mirror closed may still hold its socket."""
    monkeypatch.setattr(mirror_set, "CLOSED_GRACE", 0.2)
    port = free_tcp_port()
    mirrors = MirrorSet(make_engine, binds=("127.0.0.1",))
    await mirrors.set_remote([("tcp", "0.0.0.0", port)])
    (mirror,) = mirrors.states()
    assert mirror.engine is not None
    inode = mirror.engine.socket_inode
    assert inode in mirrors.own_inodes()
    await mirrors.set_remote([])
    assert inode in mirrors.own_inodes()
    await asyncio.sleep(0.3)
    assert inode not in mirrors.own_inodes()
    await mirrors.close()
