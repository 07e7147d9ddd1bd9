"""Raising the limits a load test needs: open files, listen backlogs, ephemeral ports.

Each is raised, never lowered, and restored afterwards (the sysctls are machine-wide in the
host's network namespace; a namespace the test made has its own copies).
"""

from __future__ import annotations

import contextlib
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

SYSCTLS = {
    "net.core.somaxconn": 65535,
    "net.ipv4.tcp_max_syn_backlog": 65535,
}


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


@contextlib.contextmanager
def raised_limits(open_files: int) -> Iterator[None]:
    """RLIMIT_NOFILE to at least ``open_files`` (soft and hard; children inherit it) and the
    host's listen backlogs raised, all restored on exit."""
    old_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old_limit
    if soft < open_files:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, max(hard, open_files)))
        except (ValueError, OSError):  # no CAP_SYS_RESOURCE: the hard limit is the ceiling
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    old_values = {}
    for name, wanted in SYSCTLS.items():
        path = sysctl_path(name)
        current = int(path.read_text().split()[0])
        if current < wanted:
            old_values[name] = current
            path.write_text(str(wanted))
    try:
        yield
    finally:
        for name, value in old_values.items():
            with contextlib.suppress(OSError):
                sysctl_path(name).write_text(str(value))
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, old_limit)


def open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_in_namespace(prefix: list[str]) -> None:
    """The same backlogs inside a namespace (``prefix`` is ``ip netns exec NAME``)."""
    for name, wanted in SYSCTLS.items():
        subprocess.run([*prefix, "sysctl", "-q", "-w", f"{name}={wanted}"], check=True)
