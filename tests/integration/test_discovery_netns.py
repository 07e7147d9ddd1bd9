"""Discovery sees the listeners of its own network namespace only: a fresh namespace per test.

The namespace side runs as ``ip netns exec NAME python -c ...`` (the agent's situation: it runs
inside the VM's namespace), the test process stays in the host namespace (the daemon's).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.discovery import snapshot

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip"),
]

NAMESPACE_SIDE = r"""
import asyncio, json, os, socket, sys
from proxy.discovery import snapshot
from proxy.listener_watcher import ListenerWatcher
from proxy.socket_counts import SocketCounts

def ino(s):
    return os.fstat(s.fileno()).st_ino

counts_before = SocketCounts().read()
tcp = socket.socket(socket.AF_INET6); tcp.bind(("::", 0)); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
mirror = socket.socket(); mirror.bind(("127.0.0.1", 0)); mirror.listen()
seen = sorted(
    [l.proto, l.host, l.port, l.inode, l.dual_stack] for l in snapshot({ino(mirror)})
)

async def watch():
    events = []
    changed = asyncio.Event()
    def on_change(added, removed):
        events.append(([l.inode for l in added], [l.inode for l in removed]))
        changed.set()
    async with ListenerWatcher(on_change, lambda: {ino(mirror)}):
        late = socket.socket(); late.bind(("127.0.0.1", 0)); late.listen()
        late_ino = ino(late)
        async with asyncio.timeout(2):
            while not any(late_ino in a for a, _ in events):
                changed.clear(); await changed.wait()
        late.close()
        async with asyncio.timeout(2):
            while not any(late_ino in r for _, r in events):
                changed.clear(); await changed.wait()
    return late_ino, events

late_ino, events = asyncio.run(watch())
print(json.dumps({
    "counts_before": [c.decode() for c in counts_before],
    "tcp": [tcp.getsockname()[1], ino(tcp)],
    "udp": [udp.getsockname()[1], ino(udp)],
    "mirror": ino(mirror),
    "seen": seen,
    "late": late_ino,
    "events": events,
}), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"hostnet-disc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert (
        name
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )


def test_discovery_in_a_fresh_namespace_sees_only_that_namespace(netns: str) -> None:
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        host_ino = os.fstat(host_listener.fileno()).st_ino
        child = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", NAMESPACE_SIDE],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else "no output"
            report = json.loads(line)
            # While the namespace's sockets are still open, the host side does not see them.
            host_view = snapshot()
            ns_inodes = {report["tcp"][1], report["udp"][1], report["mirror"]}
            assert not ns_inodes & {item.inode for item in host_view}
            assert host_ino in {item.inode for item in host_view}
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    # A fresh namespace has no other sockets: its counters start at zero and the snapshot is
    # exactly the namespace's own listeners, the excluded mirror and the host's left out.
    assert report["counts_before"] == ["0"] * 6
    tcp_port, tcp_ino = report["tcp"]
    udp_port, udp_ino = report["udp"]
    assert report["seen"] == [
        ["tcp", "::", tcp_port, tcp_ino, True],
        ["udp", "127.0.0.1", udp_port, udp_ino, False],
    ]
    late = report["late"]
    added = [ino for a, _ in report["events"] for ino in a]
    removed = [ino for _, r in report["events"] for ino in r]
    assert sorted(added) == sorted([tcp_ino, udp_ino, late])
    assert removed == [late]


QUIET_SIDE = r"""
import asyncio, json, socket
from proxy.listener_watcher import ListenerWatcher

async def probes_during(watcher, seconds):
    before = watcher.probes
    await asyncio.sleep(seconds)
    return watcher.probes - before

async def watch():
    found = asyncio.Event()
    def on_change(added, removed):
        if added:
            found.set()
    watcher = ListenerWatcher(
        on_change, probe_interval=0.01, quiet_probe_interval=0.1, quiet_after=0.5
    )
    async with watcher:
        await asyncio.sleep(1.0)  # nothing in the namespace moves: quiet
        quiet = await probes_during(watcher, 1.0)
        late = socket.socket(); late.bind(("127.0.0.1", 0)); late.listen()
        async with asyncio.timeout(2):
            await found.wait()
        busy = await probes_during(watcher, 0.25)
        late.close()
    return {"quiet": quiet, "busy": busy}

print(json.dumps(asyncio.run(watch())), flush=True)
"""


def test_a_quiet_namespace_is_probed_less_often_and_a_listen_there_is_still_found(
    netns: str,
) -> None:
    """No socket figure moves for ``quiet_after``: probes slow to ``quiet_probe_interval``
    (10 a second here, not 100); a listen() is still reported, and probing is fast again.
    A fresh namespace is needed: the host's figures move with every other program's sockets.
    The bounds are loose (a loaded machine stretches every poll), the rates 10x apart."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", QUIET_SIDE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 3 <= report["quiet"] <= 15, report
    assert report["busy"] >= 10, report
