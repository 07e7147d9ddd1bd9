"""Atomic replacement under SIGKILL: a real child process rewrites the settings file in a
loop and is killed at random moments, many times; the file is always a whole version."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import app.settings.atomic as atomic_module
from app.settings.atomic import remove_stale_temps, temp_prefix, write_atomically

CHILD = r"""
import hashlib, importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
target = Path(sys.argv[2])
start = int(sys.argv[3])
sys.stdout.write("go\n"); sys.stdout.flush()
n = start
while True:
    pad = ("%08d" % n) * (5000 + (n * 7919) % 40000)
    doc = {"SettingsVersion": 2, "n": n, "pad": pad,
           "sha": hashlib.sha256(pad.encode()).hexdigest()}
    atomic.write_atomically(target, json.dumps(doc).encode())
    n += 1
"""


def version(n: int) -> bytes:
    pad = f"{n:08d}" * 10
    doc = {
        "SettingsVersion": 2,
        "n": n,
        "pad": pad,
        "sha": hashlib.sha256(pad.encode()).hexdigest(),
    }
    return json.dumps(doc).encode()


def check_whole(path: Path) -> int:
    doc = json.loads(path.read_bytes())
    assert hashlib.sha256(doc["pad"].encode()).hexdigest() == doc["sha"]
    assert doc["pad"] == f"{doc['n']:08d}" * (len(doc["pad"]) // 8)
    return int(doc["n"])


def test_sigkill_at_random_moments_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "config" / "settings-store.json"
    write_atomically(target, version(0))
    rng = random.Random(int(os.environ.get("HOSTNET_TEST_SEED", "4242")))
    next_n = 1
    interrupted = 0
    iterations = int(os.environ.get("HOSTNET_KILL_ITERATIONS", "60"))
    for _ in range(iterations):
        child = subprocess.Popen(
            [sys.executable, "-S", "-c", CHILD, atomic_module.__file__, str(target), str(next_n)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"go\n"
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        n = check_whole(target)
        assert n == 0 or n < next_n + 10_000
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        leftovers = [p for p in target.parent.iterdir() if p.name.startswith(temp_prefix(target))]
        if leftovers:
            interrupted += 1
            remove_stale_temps(target, older_than=0)
        next_n = max(next_n, n + 1) + 100_000
    # the kills really did land in the middle of writes, or the test proves nothing
    assert interrupted >= iterations // 10, interrupted
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings-store.json"]


FULL_DISK_CHILD = r"""
import importlib.util, resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
try:
    atomic.write_atomically(Path(sys.argv[2]), b"x" * 4096)
except OSError as exc:
    print(exc.errno)
"""


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    """A write the kernel refuses part-way (RLIMIT_FSIZE makes write(2) fail with EFBIG, a real
    short write as on a full disk) leaves the old file whole and no temp file."""
    target = tmp_path / "settings-store.json"
    write_atomically(target, b"{}")
    result = subprocess.run(
        [sys.executable, "-S", "-c", FULL_DISK_CHILD, atomic_module.__file__, str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(errno.EFBIG)
    assert target.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings-store.json"]


def test_stale_temps_only_when_old(tmp_path: Path) -> None:
    target = tmp_path / "settings-store.json"
    fresh = tmp_path / f"{temp_prefix(target)}1-1"
    old = tmp_path / f"{temp_prefix(target)}2-2"
    other = tmp_path / "unrelated.tmp"
    for path in (fresh, old, other):
        path.write_text("x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temps(target) == [old]
    assert fresh.exists() and other.exists() and not old.exists()
