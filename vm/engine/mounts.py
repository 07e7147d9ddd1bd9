"""Mounts dockerd leaves behind when it stops.

dockerd bind-mounts its network namespace at ``EXEC_ROOT/netns/default`` and makes its data
root a mount of its own, and unmounts neither when it exits. Left alone they pin the VM's
network namespace (it would outlive ``vm down``) and make the folders impossible to remove.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

MNT_DETACH = 2


def mounts_under(folder: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below ``folder``, deepest first."""
    root = str(folder)
    points = []
    for line in mountinfo.read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == root or point.startswith(root + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def release_mounts(folder: Path) -> list[str]:
    """Detach every mount below ``folder``; returns those that could not be (with why)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    failed = []
    for point in mounts_under(folder):
        if libc.umount2(point.encode(), MNT_DETACH) != 0:
            failed.append(f"{point}: {os.strerror(ctypes.get_errno())}")
    return failed
