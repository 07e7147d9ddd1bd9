"""The desktop app as a PyInstaller onedir bundle: ``<dist>/hostnet/hostnet`` and its ``_internal``.

``app``, ``vm`` and ``proxy`` are collected whole: commands are imported by name at run time
(``app.cli``), and the daemon starts helpers as ``hostnet -m MODULE`` (see ``frozen_entry``).
``resources/`` goes in as data, found at run time under ``sys._MEIPASS/resources``, and the
guest agent's zipapp under ``sys._MEIPASS/agent`` (a QEMU guest cannot run the bundle's
launcher as Python: see ``vm/backends/guest_agent_launch.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vm.backends.guest_agent_launch import BUNDLE_AGENT_DIR

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "installer" / "frozen_entry.py"
# Qt modules the desktop app uses; PyInstaller's PySide6 hooks add their plugins.
QT_MODULES = ("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtSvg")
EXCLUDED = ("tkinter", "pytest", "hypothesis", "mypy", "ruff", "PyInstaller", "installer", "tests")


class BuildError(Exception):
    """A build step failed; the message says which and where its log is."""


def build_desktop_bundle(dist_dir: Path, work_dir: Path, agent_zipapp: Path) -> Path:
    """Run PyInstaller, with AGENT_ZIPAPP inside; return the bundle folder ``dist_dir/hostnet``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--onedir",
        "--name",
        "hostnet",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist_dir),
        "--workpath",
        str(work_dir),
        "--specpath",
        str(work_dir),
        "--paths",
        str(REPO),
    ]
    for package in ("app", "vm", "proxy"):
        argv += ["--collect-submodules", package, "--collect-data", package]
    resources = REPO / "resources"
    if resources.is_dir():  # icons and schemas, found under sys._MEIPASS/resources
        argv += ["--add-data", f"{resources}:resources"]
    argv += ["--add-data", f"{agent_zipapp}:{BUNDLE_AGENT_DIR}"]
    for module in QT_MODULES:
        argv += ["--hidden-import", module]
    for module in EXCLUDED:
        argv += ["--exclude-module", module]
    argv.append(str(ENTRY))
    log = work_dir / "pyinstaller.log"
    with log.open("w") as out:
        result = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise BuildError(f"PyInstaller failed (exit {result.returncode}); log {log}:\n{tail}")
    bundle = dist_dir / "hostnet"
    if not (bundle / "hostnet").is_file():
        raise BuildError(f"PyInstaller wrote no {bundle / 'hostnet'}; log {log}")
    return bundle
