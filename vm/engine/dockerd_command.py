"""The dockerd command line for an engine inside the namespace VM.

The namespace is entered with nsenter(1) ``--net=`` (setns), never ``ip netns exec``: that
remounts /sys, the cgroup mounts vanish with it and dockerd fails with "Devices cgroup isn't
mounted". The mount namespace stays the host's, so dockerd listens on the API socket in
hostnet's runtime folder directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from vm.engine.layout import EngineLayout

DEFAULT_ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
"""runc refuses to raise RLIMIT_NOFILE past the hard limit; these fit under any host's."""

STORAGE_DRIVERS = ("overlay2", "vfs")
"""In order of preference: vfs copies every layer, but works on any backing filesystem."""


@dataclass(frozen=True)
class DockerdOptions:
    storage_driver: str
    host_gateway_ip: str
    dns: str


def in_vm(netns_path: str, command: list[str]) -> list[str]:
    """``command`` run in the VM's network namespace (setns), in the host's mount namespace."""
    return ["nsenter", f"--net={netns_path}", "--", *command]


def dockerd_command(layout: EngineLayout, netns_path: str, options: DockerdOptions) -> list[str]:
    command = [
        "dockerd",
        "--config-file",
        str(layout.config_file),
        "--data-root",
        str(layout.data_root),
        "--exec-root",
        str(layout.exec_root),
        "--pidfile",
        str(layout.pidfile),
        "--host",
        layout.docker_host,
        "--storage-driver",
        options.storage_driver,
        "--default-runtime",
        "runc",
        "--host-gateway-ip",
        options.host_gateway_ip,
        "--dns",
        options.dns,
    ]
    for ulimit in DEFAULT_ULIMITS:
        command += ["--default-ulimit", ulimit]
    return in_vm(netns_path, command)


def storage_driver_refused(log_tail: str, driver: str) -> bool:
    """True when dockerd's log says it cannot use ``driver`` on this filesystem."""
    text = log_tail.lower()
    return driver in text and (
        "driver not supported" in text
        or "is not supported over" in text
        or "failed to mount overlay" in text
        or "error initializing graphdriver" in text
    )
