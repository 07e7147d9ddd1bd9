"""``make package`` (``python -m installer.build``): the guest-agent package and the desktop .deb.

Writes ``build/agent/`` (hostnet-agent.pyz, .service, .cloud-init.yaml) and
``dist/hostnet_<version>_<arch>.deb``. The version is ``proxy.__version__``, the one place.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.agent_cloud_init import cloud_init_snippet
from installer.agent_zipapp import REPO, ZIPAPP_NAME, build_agent_zipapp
from installer.deb_package import DebInputs, DesktopFiles, build_deb
from installer.desktop_bundle import BuildError, build_desktop_bundle
from proxy import __version__

AGENT_UNIT = REPO / "installer" / "agent" / "hostnet-agent.service"
DESKTOP_FILES = REPO / "installer" / "desktop"
RESOURCES = REPO / "resources"


def desktop_files() -> DesktopFiles:
    """The app's own .desktop file and icon from resources/, else installer/desktop's."""

    def pick(resource: Path, fallback: Path) -> Path:
        return resource if resource.is_file() else fallback

    return DesktopFiles(
        desktop_entry=pick(RESOURCES / "hostnet.desktop", DESKTOP_FILES / "hostnet.desktop"),
        icon_svg=pick(RESOURCES / "icons" / "hostnet.svg", DESKTOP_FILES / "hostnet.svg"),
        daemon_unit=DESKTOP_FILES / "hostnet-daemon.service",
    )


@dataclass(frozen=True)
class BuildOutputs:
    agent_dir: Path
    deb: Path | None


def build_agent_package(build_dir: Path) -> Path:
    """The guest-agent package: ``build_dir/agent/`` with the zipapp, the systemd unit and
    a cloud-init snippet."""
    agent_dir = build_dir / "agent"
    zipapp = build_agent_zipapp(agent_dir)
    unit = agent_dir / AGENT_UNIT.name
    shutil.copy2(AGENT_UNIT, unit)
    (agent_dir / "hostnet-agent.cloud-init.yaml").write_text(cloud_init_snippet(zipapp, unit))
    return agent_dir


def build_all(
    build_dir: Path, dist_dir: Path, *, desktop: bool = True, compression: str = "zstd"
) -> BuildOutputs:
    agent_dir = build_agent_package(build_dir)
    if not desktop:
        return BuildOutputs(agent_dir, None)
    bundle = build_desktop_bundle(
        build_dir / "pyinstaller" / "dist", build_dir / "pyinstaller", agent_dir / ZIPAPP_NAME
    )
    deb = build_deb(
        DebInputs(__version__, bundle, agent_dir, desktop_files()),
        build_dir / "deb",
        dist_dir,
        compression,
    )
    return BuildOutputs(agent_dir, deb)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m installer.build", description="Build hostnet's packages."
    )
    parser.add_argument("--build-dir", type=Path, default=REPO / "build")
    parser.add_argument("--dist-dir", type=Path, default=REPO / "dist")
    parser.add_argument(
        "--agent-only", action="store_true", help="only the guest-agent package (no PyInstaller)"
    )
    parser.add_argument("--compression", choices=["zstd", "gzip", "xz"], default="zstd")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        outputs = build_all(
            args.build_dir.resolve(),
            args.dist_dir.resolve(),
            desktop=not args.agent_only,
            compression=args.compression,
        )
    except BuildError as exc:
        print(f"installer.build: {exc}", file=sys.stderr)
        return 1
    print(f"hostnet {__version__}: guest agent in {outputs.agent_dir}")
    if outputs.deb is not None:
        size_mib = outputs.deb.stat().st_size / 2**20
        print(f"hostnet {__version__}: {outputs.deb} ({size_mib:.0f} MiB)")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
