"""The .deb: lays out the package tree and runs ``dpkg-deb --build``.

Installed files: the PyInstaller bundle in /opt/hostnet, /usr/bin/hostnet (a symlink), the
.desktop file, hicolor icons, the daemon's systemd user unit, and the guest-agent package
(zipapp and system unit) in /usr/share/hostnet/agent for ``hostnet vm install-agent``.
No maintainer scripts: the icon cache and the desktop database are refreshed by the dpkg
triggers of hicolor-icon-theme and desktop-file-utils.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from installer.icons import install_hicolor_icons

INSTALL_DIR = "opt/hostnet"
AGENT_SHARE = "usr/share/hostnet/agent"
# What the bundle needs from the system: glibc, and the X11/xcb, Wayland, EGL and OpenGL
# libraries that Qt's platform plugins load (PyInstaller leaves GL/EGL/libc out of bundles,
# and bundles other libraries only where the build machine has them).
DEPENDS = (
    "libc6 (>= 2.36)",
    "libegl1",
    "libgl1",
    "libopengl0",
    "libdrm2",
    "libfontconfig1",
    "libfreetype6",
    "libdbus-1-3",
    "libglib2.0-0",
    "libx11-6",
    "libx11-xcb1",
    "libxcb1",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-image0",
    "libxcb-keysyms1",
    "libxcb-randr0",
    "libxcb-render-util0",
    "libxcb-shape0",
    "libxcb-xfixes0",
    "libxcb-xkb1",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
    "libwayland-client0",
    "libwayland-cursor0",
    "libwayland-egl1",
)
# python3 runs the guest agent's zipapp in a QEMU VM (VmBackend "qemu"), which QEMU boots.
RECOMMENDS = ("hicolor-icon-theme", "desktop-file-utils", "openssh-client", "python3 (>= 3.11)")
SUGGESTS = ("qemu-system-x86",)
DESCRIPTION = """\
Host networking for a Linux VM, like Docker Desktop's
 A program listening in the VM is reachable on the host's localhost at the same
 port, and programs in the VM reach the host's localhost servers: TCP and UDP,
 IPv4 and IPv6. Includes the desktop app, the daemon (with a systemd user unit)
 and the guest agent that `hostnet vm install-agent` puts into a VM."""


@dataclass(frozen=True)
class DesktopFiles:
    desktop_entry: Path  # installed as hostnet.desktop
    icon_svg: Path  # installed as the hicolor icon "hostnet"
    daemon_unit: Path  # the systemd user unit


@dataclass(frozen=True)
class DebInputs:
    version: str
    bundle: Path  # the PyInstaller onedir folder
    agent_dir: Path  # hostnet-agent.pyz and hostnet-agent.service
    desktop: DesktopFiles


def deb_architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _installed_size_kib(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return (total + 1023) // 1024


def _md5sums(root: Path) -> str:
    lines = []
    for folder, _dirs, files in sorted(os.walk(root)):
        relative_folder = Path(folder).relative_to(root)
        if relative_folder.parts[:1] == ("DEBIAN",):
            continue
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink():
                continue
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {relative_folder / name}\n")
    return "".join(lines)


def control_text(version: str, architecture: str, installed_size: int) -> str:
    return (
        f"Package: hostnet\n"
        f"Version: {version}\n"
        f"Architecture: {architecture}\n"
        f"Maintainer: hostnet developers <hostnet@localhost>\n"
        f"Installed-Size: {installed_size}\n"
        f"Depends: {', '.join(DEPENDS)}\n"
        f"Recommends: {', '.join(RECOMMENDS)}\n"
        f"Suggests: {', '.join(SUGGESTS)}\n"
        f"Section: net\n"
        f"Priority: optional\n"
        f"Description: {DESCRIPTION}\n"
    )


def lay_out_tree(inputs: DebInputs, root: Path) -> None:
    """Fill ``root`` with the package's files (without DEBIAN/)."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(inputs.bundle, root / INSTALL_DIR, symlinks=True)
    usr_bin = root / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    (usr_bin / "hostnet").symlink_to(f"/{INSTALL_DIR}/hostnet")
    applications = root / "usr" / "share" / "applications"
    applications.mkdir(parents=True)
    shutil.copy2(inputs.desktop.desktop_entry, applications / "hostnet.desktop")
    install_hicolor_icons(inputs.desktop.icon_svg, root / "usr" / "share" / "icons")
    user_units = root / "usr" / "lib" / "systemd" / "user"
    user_units.mkdir(parents=True)
    shutil.copy2(inputs.desktop.daemon_unit, user_units / "hostnet-daemon.service")
    agent = root / AGENT_SHARE
    agent.mkdir(parents=True)
    for name in ("hostnet-agent.pyz", "hostnet-agent.service", "hostnet-agent.cloud-init.yaml"):
        shutil.copy2(inputs.agent_dir / name, agent / name)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o755)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)


def build_deb(inputs: DebInputs, work_dir: Path, out_dir: Path, compression: str = "zstd") -> Path:
    """Build ``out_dir/hostnet_<version>_<arch>.deb``; ``compression`` is zstd, gzip or xz."""
    root = work_dir / "root"
    lay_out_tree(inputs, root)
    architecture = deb_architecture()
    debian = root / "DEBIAN"
    debian.mkdir(mode=0o755)
    (debian / "md5sums").write_text(_md5sums(root))
    (debian / "control").write_text(
        control_text(inputs.version, architecture, _installed_size_kib(root))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"hostnet_{inputs.version}_{architecture}.deb"
    level = {"zstd": "3", "gzip": "1", "xz": "1"}[compression]
    argv = ["dpkg-deb", "--root-owner-group", f"-Z{compression}", f"-z{level}", "--build"]
    subprocess.run(
        [*argv, str(root), str(deb)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return deb
