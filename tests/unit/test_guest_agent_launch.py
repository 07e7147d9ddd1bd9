"""Which command starts the guest agent in a QEMU VM, from source and from a frozen build.

The frozen case sets ``sys.frozen`` and ``sys._MEIPASS`` as PyInstaller's launcher does: a
real frozen build is booted in tests/integration/test_package_deb.py (slow); here are the
choices and the errors, in milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vm.backends.errors import VMError
from vm.backends.guest_agent_launch import (
    AGENT_ZIPAPP_NAME,
    BUNDLE_AGENT_DIR,
    guest_agent_launch,
)


def test_from_source_the_agent_is_this_python_on_the_source_tree() -> None:
    launch = guest_agent_launch()
    assert launch.argv == (sys.executable, "-S", "-m", "vm.agent")
    source_root = str(Path(__file__).resolve().parents[2])
    assert launch.env["PYTHONPATH"].split(":")[0] == source_root
    assert Path(source_root) in launch.visible_paths
    # the environment it names is enough: the agent starts with -S on it
    result = subprocess.run(
        [*launch.argv, "--help"],
        env={**os.environ, **launch.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--listen" in result.stdout, result.stderr


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    return tmp_path


def test_frozen_the_agent_is_the_bundled_zipapp_on_the_hosts_python3(frozen: Path) -> None:
    zipapp = frozen / BUNDLE_AGENT_DIR / AGENT_ZIPAPP_NAME
    zipapp.parent.mkdir()
    zipapp.write_bytes(b"PK")
    launch = guest_agent_launch()
    assert Path(launch.argv[0]).name.startswith("python3")
    assert launch.argv[1:] == ("-S", str(zipapp))
    assert launch.env == {}
    assert zipapp.parent in launch.visible_paths


def test_frozen_without_the_zipapp_names_the_fix(frozen: Path) -> None:
    with pytest.raises(VMError) as caught:
        guest_agent_launch()
    assert str(frozen / BUNDLE_AGENT_DIR / AGENT_ZIPAPP_NAME) in caught.value.problem
    assert "reinstall" in caught.value.fix


def test_frozen_without_python3_names_the_fix(
    frozen: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    zipapp = frozen / BUNDLE_AGENT_DIR / AGENT_ZIPAPP_NAME
    zipapp.parent.mkdir()
    zipapp.write_bytes(b"PK")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(VMError) as caught:
        guest_agent_launch()
    assert "python3" in caught.value.problem
    assert "apt-get install python3" in caught.value.fix
