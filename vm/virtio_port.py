"""Guest side: find the device node of a named virtio-serial port.

The host names each port (``-device virtserialport,name=org.hostnet.agent.0``); the guest
kernel shows the name in ``/sys/class/virtio-ports/vportNpM/name``. Udev would link
``/dev/virtio-ports/NAME`` to ``/dev/vportNpM``; hostnet's micro-VM has no udev (its init makes
the links), and other VMs may lack the node, so this looks in every place and, as root,
creates the node from the port's major:minor when it is missing.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

AGENT_PORT_NAME = "org.hostnet.agent.0"


def list_virtio_ports(sys_dir: Path = Path("/sys")) -> dict[str, str]:
    """{port name: kernel device name (vportNpM)} for every named port the guest has."""
    ports: dict[str, str] = {}
    root = sys_dir / "class" / "virtio-ports"
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ports
    for entry in entries:
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            continue
        if name:
            ports[name] = entry.name
    return ports


def _node_matches(path: Path, major: int, minor: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return (
        stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == major and os.minor(st.st_rdev) == minor
    )


def find_virtio_port(
    name: str = AGENT_PORT_NAME,
    *,
    timeout: float = 0.0,
    dev_dir: Path = Path("/dev"),
    sys_dir: Path = Path("/sys"),
) -> Path:
    """The device path of the virtio-serial port called ``name``.

    Waits up to ``timeout`` seconds for the port to appear (the driver may still be probing).
    Raises FileNotFoundError naming the ports that do exist when there is no such port.
    """
    deadline = time.monotonic() + timeout
    while True:
        ports = list_virtio_ports(sys_dir)
        if name in ports or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    kernel_name = ports.get(name)
    if kernel_name is None:
        known = ", ".join(sorted(ports)) or "none"
        raise FileNotFoundError(
            f"no virtio-serial port named {name!r} in this VM (ports: {known}); "
            "the VM needs -device virtserialport,name=" + name + " and the virtio_console module"
        )
    major_s, _, minor_s = (
        (sys_dir / "class" / "virtio-ports" / kernel_name / "dev")
        .read_text()
        .strip()
        .partition(":")
    )
    major, minor = int(major_s), int(minor_s)
    for candidate in (dev_dir / "virtio-ports" / name, dev_dir / kernel_name):
        if _node_matches(candidate, major, minor):
            return candidate
    node = dev_dir / kernel_name
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except FileExistsError:
        pass
    except OSError as e:
        raise FileNotFoundError(
            f"virtio-serial port {name!r} is {kernel_name} ({major}:{minor}) but {node} is "
            f"missing and cannot be created ({e.strerror}): run as root or create it with "
            f"mknod {node} c {major} {minor}"
        ) from e
    if not _node_matches(node, major, minor):
        raise FileNotFoundError(f"{node} exists but is not device {major}:{minor} of port {name!r}")
    return node
