"""The tray on a real tray host: each case of tray_host_cases.py in a process of its own,
under Xvfb with openbox and tint2's system tray (Qt picks its platform once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.tray_host import missing_tools, tray_host

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("tray_host_cases.py")
NAMES = sorted(
    line.split("(")[0].removeprefix("def ")
    for line in CASES.read_text().splitlines()
    if line.startswith("def test_")
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace VM needs root"),
    pytest.mark.skipif(
        bool(missing_tools()),
        reason=f"the tray host needs {', '.join(missing_tools())}: run `make setup`",
    ),
]


@pytest.mark.parametrize("case", NAMES)
def test_tray_on_a_real_tray_host(case: str) -> None:
    with tray_host() as env:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                "--timeout=110",
                f"{CASES}::{case}",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=115,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert " passed" in run.stdout, run.stdout[-2000:]
