"""The guest agent as one zipapp: ``vm/`` and ``proxy/`` plus pyroute2, run by any python3 >= 3.11.

uvloop is a C extension and cannot load from a zip, so the agent runs on asyncio's loop
unless the guest has uvloop installed (``proxy.event_loop`` picks it up when importable).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import zipapp
from pathlib import Path

from vm.backends.guest_agent_launch import AGENT_ZIPAPP_NAME

REPO = Path(__file__).resolve().parents[1]
ZIPAPP_NAME = AGENT_ZIPAPP_NAME  # the frozen app looks for it by this name
BUNDLED_PACKAGES = ("pyroute2",)
MAIN = '''"""hostnet guest agent (zipapp): see `python3 hostnet-agent.pyz --help`."""
import sys

from vm.agent.__main__ import main

sys.exit(main())
'''


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"{name} is not installed in this Python; run `make setup` (it is a hostnet dependency)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _copy_sources(source: Path, target: Path) -> None:
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "tests"),
    )


def build_agent_zipapp(out_dir: Path) -> Path:
    """Write ``out_dir/hostnet-agent.pyz`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIPAPP_NAME
    with tempfile.TemporaryDirectory(prefix="hostnet-agent-") as tmp:
        stage = Path(tmp)
        for package in ("vm", "proxy"):
            _copy_sources(REPO / package, stage / package)
        for package in BUNDLED_PACKAGES:
            _copy_sources(_package_dir(package), stage / package)
        (stage / "__main__.py").write_text(MAIN)
        partial = target.with_suffix(".pyz.tmp")
        zipapp.create_archive(stage, partial, interpreter="/usr/bin/env python3", compressed=True)
        partial.replace(target)
    target.chmod(0o755)
    return target
