"""A clone inside a folder other users cannot pass (mode 0700, like a home folder): the tests
that drop to ``nobody`` still run there.

This clone is bind-mounted under a fresh 0700 folder in a private mount namespace, which is,
for ``nobody``, exactly a clone made there; pytest then runs a test that drops to ``nobody``
from that path (with a direct ``setpriv`` of the clone's own ``hostnet``, it failed with
"Permission denied").
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.other_user import REPO, why_unusable

pytestmark = pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable()))

INNER_TEST = "tests/integration/test_forward_cli.py::test_privileged_port_is_named_with_the_fix"
# Run as root in the new mount namespace: show the clone at CLONE, then run pytest there.
BIND_THEN_RUN = (
    "import os, subprocess, sys\n"
    "subprocess.run(['mount', '--bind', sys.argv[1], sys.argv[2]], check=True)\n"
    "os.chdir(sys.argv[2])\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def test_nobody_tests_pass_in_a_clone_under_a_0700_folder() -> None:
    with tempfile.TemporaryDirectory(prefix="hostnet-private-") as private:
        Path(private).chmod(0o700)
        clone = Path(private) / "hostnet"
        clone.mkdir()
        if not Path(sys.executable).is_relative_to(REPO):
            pytest.skip("the tests run on a Python outside the clone; the clone's venv is needed")
        python = clone / Path(sys.executable).relative_to(REPO)  # the clone's venv, in there
        bind = [sys.executable, "-c", BIND_THEN_RUN, str(REPO), str(clone)]
        pytest_argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", INNER_TEST]
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", *bind, *pytest_argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
