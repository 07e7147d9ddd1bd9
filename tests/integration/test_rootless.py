"""The namespace VM without root: a user namespace made by unshare, as an ordinary user.

The test drops to the ``nobody`` user, who runs the system's Python 3.11 on a view of the
clone with the venv's packages on PYTHONPATH (tests/integration/other_user.py: the clone
and the venv's interpreter may sit where nobody cannot reach them); that is the only thing
that differs from a user's installation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.other_user import NOBODY, SYSTEM_PYTHON, other_user, why_unusable
from tests.integration.vm_helpers import (
    free_port,
    host_answer,
    run_client,
    start_server,
    tcp_open,
    wait_for,
)


def _usable() -> str | None:
    reason = why_unusable()
    if reason is not None:
        return reason
    if not shutil.which("nsenter"):
        return "needs nsenter (util-linux)"
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "unshare",
            "--user",
            "--net",
            "--map-root-user",
            "true",
        ]
    )
    if probe.returncode != 0:
        return "unprivileged user namespaces are disabled on this kernel"
    return None


pytestmark = pytest.mark.skipif(_usable() is not None, reason=str(_usable()))


@pytest.fixture
def home() -> Iterator[Path]:
    """A HOSTNET_HOME owned by nobody, in a folder nobody can reach (pytest's are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="hostnet-rootless-"))
    os.chmod(top, 0o755)
    home = top / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings-store.json").write_text(
        json.dumps({"HostNetworkingEnabled": True})
    )
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)
    yield home
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def hostnet(home: Path) -> Iterator[list[str]]:
    """``hostnet`` as nobody, with HOSTNET_HOME (and HOME) at ``home``."""
    with other_user() as nobody:
        yield nobody.hostnet({"HOSTNET_HOME": str(home), "HOME": str(home)})


def ports(hostnet: list[str]) -> list[dict[str, object]]:
    result = subprocess.run([*hostnet, "ports", "--json"], capture_output=True, text=True)
    return list(json.loads(result.stdout)) if result.returncode == 0 else []


def test_rootless_daemon_forwards_both_ways(home: Path, hostnet: list[str]) -> None:
    daemon = subprocess.Popen(
        [*hostnet, "daemon"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    vm_server = host_server = None
    try:

        def connected() -> bool:
            result = subprocess.run([*hostnet, "status", "--json"], capture_output=True, text=True)
            return result.returncode == 0 and json.loads(result.stdout)["agent"]["state"] == (
                "connected"
            )

        wait_for(connected, 30, "the rootless daemon and its agent")
        state = json.loads((home / "state" / "vm" / "netns.json").read_text())
        assert state["rootless"] is True
        in_vm = [*hostnet, "vm", "exec", "--"]
        port = free_port()
        vm_server = start_server(in_vm, "tcp", "127.0.0.1", port, python=SYSTEM_PYTHON)
        wait_for(lambda: tcp_open("127.0.0.1", port), 10, "the VM port on the host")
        assert host_answer("tcp", "::1", port, b"rootless") == b"echo:rootless"

        # Port 81 in the VM is fine (root in its user namespace); nobody may not bind it on
        # the host, so that mirror shows as privileged, with the reason.
        privileged = start_server(in_vm, "tcp", "0.0.0.0", 81, python=SYSTEM_PYTHON)
        try:
            wait_for(
                lambda: any(p["port"] == 81 and p["state"] == "privileged" for p in ports(hostnet)),
                10,
                "the privileged state",
            )
            entry = next(p for p in ports(hostnet) if p["port"] == 81)
            assert "privileged" in entry["reason"] and "1024" in entry["reason"]
        finally:
            privileged.kill()
            privileged.wait()

        host_port = free_port()
        host_server = start_server([], "tcp", "127.0.0.1", host_port)
        wait_for(
            lambda: (
                run_client(in_vm, "tcp", "127.0.0.1", host_port, "up", python=SYSTEM_PYTHON)
                == "echo:up"
            ),
            10,
            "the host port in the VM",
        )
    finally:
        for proc in (vm_server, host_server):
            if proc is not None:
                proc.kill()
                proc.wait()
        subprocess.run([*hostnet, "daemon", "--stop"], capture_output=True)
        daemon.wait(20)
    agent_pid = state["agent_pid"]
    assert (
        not Path(f"/proc/{agent_pid}").exists()
        or "Z" in Path(f"/proc/{agent_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    )
    assert not (home / "state" / "vm" / "netns.json").exists()
