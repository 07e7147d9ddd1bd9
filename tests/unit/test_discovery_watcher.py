"""ListenerWatcher on real sockets: it reports what appears and goes, and leaves out exclusions.

Bounds here are generous (seconds) and only guard correctness; the real latency figures come
from tests/bench/bench_discovery.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.listener_watcher import ListenerWatcher
from proxy.listeners import Listener

BOUND = 2.0


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


class Recorder:
    """Collects on_change calls and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.added: list[Listener] = []
        self.removed: list[Listener] = []
        self.calls = 0
        self._changed = asyncio.Event()

    def __call__(self, added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        assert added or removed
        self.calls += 1
        self.added.extend(added)
        self.removed.extend(removed)
        self._changed.set()

    async def wait_for(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(BOUND):
            while not check():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def recorder_and_watcher() -> AsyncIterator[tuple[Recorder, ListenerWatcher, set[int]]]:
    recorder = Recorder()
    excluded: set[int] = set()
    watcher = ListenerWatcher(recorder, lambda: excluded)
    await watcher.start()
    yield recorder, watcher, excluded
    await watcher.stop()


def added_inodes(recorder: Recorder) -> set[int]:
    return {item.inode for item in recorder.added}


def removed_inodes(recorder: Recorder) -> set[int]:
    return {item.inode for item in recorder.removed}


async def test_start_reports_existing_listeners() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        recorder = Recorder()
        async with ListenerWatcher(recorder) as watcher:
            assert inode(sock) in added_inodes(recorder)
            assert inode(sock) in {item.inode for item in watcher.current}
            assert watcher.problems == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::"])
async def test_tcp_listen_and_close_are_reported(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]], host: str
) -> None:
    recorder, watcher, _ = recorder_and_watcher
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    ino = inode(sock)
    sock.listen()
    await recorder.wait_for(lambda: ino in added_inodes(recorder))
    [item] = [item for item in recorder.added if item.inode == ino]
    assert item.key == ("tcp", host, sock.getsockname()[1])
    sock.close()
    await recorder.wait_for(lambda: ino in removed_inodes(recorder))
    assert ino not in {item.inode for item in watcher.current}


async def test_udp_bind_is_reported_and_connect_is_not(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]],
) -> None:
    recorder, _, _ = recorder_and_watcher
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client,
    ):
        client.connect(("::1", 9))  # autobinds an ephemeral port, with a peer
        server.bind(("::1", 0))
        await recorder.wait_for(lambda: inode(server) in added_inodes(recorder))
        assert inode(client) not in added_inodes(recorder)


async def test_excluded_socket_is_never_reported(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]],
) -> None:
    recorder, _, excluded = recorder_and_watcher
    with socket.socket() as mirror, socket.socket() as other:
        excluded.add(inode(mirror))  # registered right after socket(), before listen()
        mirror.bind(("127.0.0.1", 0))
        mirror.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        await recorder.wait_for(lambda: inode(other) in added_inodes(recorder))
        assert inode(mirror) not in added_inodes(recorder)


async def test_excluding_a_reported_socket_reports_it_removed(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]],
) -> None:
    recorder, watcher, excluded = recorder_and_watcher
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        await recorder.wait_for(lambda: inode(sock) in added_inodes(recorder))
        excluded.add(inode(sock))
        watcher.poke()
        await recorder.wait_for(lambda: inode(sock) in removed_inodes(recorder))


async def test_relisten_on_the_same_port_reports_new_inode(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]],
) -> None:
    recorder, _, _ = recorder_and_watcher
    first = socket.socket()
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    first.listen()
    first_ino = inode(first)
    await recorder.wait_for(lambda: first_ino in added_inodes(recorder))
    first.close()
    with socket.socket() as second:
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        second.bind(("127.0.0.1", port))
        second.listen()
        await recorder.wait_for(
            lambda: (
                inode(second) in added_inodes(recorder) and first_ino in removed_inodes(recorder)
            )
        )
        keys = {item.key for item in recorder.added if item.inode in (first_ino, inode(second))}
        assert keys == {("tcp", "127.0.0.1", port)}


async def test_safety_net_dump_finds_a_udp_socket_that_connects(
    recorder_and_watcher: tuple[Recorder, ListenerWatcher, set[int]],
) -> None:
    """connect() on a bound UDP socket moves no sockstat figure; the periodic dump sees it."""
    recorder, _, _ = recorder_and_watcher
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        await recorder.wait_for(lambda: inode(sock) in added_inodes(recorder))
        sock.connect(("127.0.0.1", 9))
        await recorder.wait_for(lambda: inode(sock) in removed_inodes(recorder))


async def test_poke_scans_without_waiting_for_the_probe() -> None:
    """With probing and refresh pushed out to an hour, only poke() can find the listener."""
    recorder = Recorder()
    watcher = ListenerWatcher(
        recorder, probe_interval=3600, min_refresh_interval=3600, max_refresh_interval=3600
    )
    await watcher.start()
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            await asyncio.sleep(0.1)
            assert inode(sock) not in added_inodes(recorder)
            watcher.poke()
            await recorder.wait_for(lambda: inode(sock) in added_inodes(recorder))
    finally:
        await watcher.stop()


async def test_failing_callback_does_not_stop_the_watcher() -> None:
    seen: list[int] = []

    def on_change(added: frozenset[Listener], removed: frozenset[Listener]) -> None:
        seen.extend(item.inode for item in added)
        raise RuntimeError("callback bug")

    async with ListenerWatcher(on_change):
        for _ in range(2):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen()
                async with asyncio.timeout(BOUND):
                    while inode(sock) not in seen:
                        await asyncio.sleep(0.005)


async def test_stop_ends_polling() -> None:
    recorder = Recorder()
    watcher = ListenerWatcher(recorder)
    await watcher.start()
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            await recorder.wait_for(lambda: inode(sock) in added_inodes(recorder))
    finally:
        await watcher.stop()
    assert not any(thread.name == "listener-watcher" for thread in threading.enumerate())
    scans = watcher.scans
    await asyncio.sleep(0.3)
    assert watcher.scans == scans


async def test_refresh_interval_follows_the_dump_cost() -> None:
    """Period = dump cost / CPU budget, clamped: a tiny budget hits the slow bound."""
    async with ListenerWatcher(Recorder(), cpu_budget=1e-9) as frugal:
        assert frugal.refresh_interval == 0.25
    async with ListenerWatcher(Recorder(), cpu_budget=1.0) as lavish:
        assert lavish.refresh_interval == 0.05
    async with ListenerWatcher(Recorder(), cpu_budget=0.0025) as default:
        assert 0.05 <= default.refresh_interval <= 0.25


async def test_start_twice_is_an_error() -> None:
    watcher = ListenerWatcher(Recorder())
    await watcher.start()
    try:
        with pytest.raises(RuntimeError, match="twice"):
            await watcher.start()
    finally:
        await watcher.stop()
