"""How a micro-VM starts the guest agent: the one place that knows a source tree from a
frozen (PyInstaller) build.

The guest runs the host's files, so it starts the agent with a Python interpreter of the
host's:

- from source (a venv, a wheel): this interpreter with ``-S -m vm.agent`` (site.py costs
  seconds under TCG), its packages coming by PYTHONPATH: hostnet's source root and the
  site-packages;
- frozen: ``sys.executable`` is the bundle's own launcher, which cannot run as a plain
  Python in the guest. The bundle carries the agent's zipapp (``vm/`` and ``proxy/`` plus
  pyroute2, built by ``installer/agent_zipapp.py``) under ``agent/``, and the host's
  ``python3`` runs it.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vm.backends.errors import VMError
from vm.backends.qemu import default_visible_paths

AGENT_ZIPAPP_NAME = "hostnet-agent.pyz"
BUNDLE_AGENT_DIR = "agent"  # the zipapp's folder inside a frozen bundle
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class GuestAgentLaunch:
    """The agent's argv (its own options follow), its environment, and the host paths it
    reads, which the guest must see."""

    argv: tuple[str, ...]
    env: dict[str, str]
    visible_paths: tuple[Path, ...]


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def bundled_zipapp() -> Path:
    """The agent's zipapp inside this frozen bundle."""
    bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
    return bundle / BUNDLE_AGENT_DIR / AGENT_ZIPAPP_NAME


def guest_agent_launch() -> GuestAgentLaunch:
    """How to start the agent in a guest that sees the host's files; VMError if it cannot be."""
    if is_frozen():
        return _zipapp_launch(bundled_zipapp(), _host_python())
    root = Path(__file__).resolve().parents[2]  # holds the vm and proxy packages
    python_path = ":".join(dict.fromkeys([str(root), *site.getsitepackages()]))
    return GuestAgentLaunch(
        argv=(sys.executable, "-S", "-m", "vm.agent"),
        env={"PYTHONPATH": python_path},
        visible_paths=tuple(default_visible_paths()),
    )


def _zipapp_launch(zipapp: Path, python: str) -> GuestAgentLaunch:
    if not zipapp.is_file():
        raise VMError(
            f"this hostnet build has no guest agent at {zipapp}",
            "reinstall the hostnet package, or build it again with `make package`",
        )
    prefix = Path(python).resolve().parents[1]
    return GuestAgentLaunch(
        argv=(python, "-S", str(zipapp)), env={}, visible_paths=(zipapp.parent, prefix)
    )


def _host_python() -> str:
    """The host's python3 (>= 3.11), which the guest runs the zipapp with."""
    found = shutil.which("python3")
    wanted = ".".join(map(str, MIN_PYTHON))
    fix = f"install Python {wanted} or later as python3 (Debian: apt-get install python3)"
    if found is None:
        raise VMError("the qemu VM runs its agent with the host's python3: none is on PATH", fix)
    check = f"import sys; sys.exit(sys.version_info < {MIN_PYTHON!r})"
    if subprocess.run([found, "-S", "-c", check], capture_output=True).returncode != 0:
        raise VMError(f"the qemu VM's agent needs Python {wanted} or later; {found} is older", fix)
    return found
