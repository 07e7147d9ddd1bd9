"""The guest-agent zipapp: built from vm/ and proxy/ with pyroute2, run by a bare python3 -I.

End to end: the zipapp agent in a fresh network namespace (the "VM"), a real ``hostnet daemon``
on the attach backend connected to it over a unix socket, and a TCP server in the namespace
reachable on the host's 127.0.0.1 at the same port.
"""

from __future__ import annotations

import base64
import gzip
import os
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.build import build_agent_package
from tests.integration.daemon_fixture import assert_vm_port_mirrored, start_daemon
from tests.integration.vm_helpers import wait_for

# The Python a VM has: the distribution's, without hostnet's venv (no pyroute2 installed there).
GUEST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_agent_package(tmp_path_factory.mktemp("agent-build"))


def test_zipapp_holds_the_agent_and_pyroute2_only(agent_dir: Path) -> None:
    zipapp = agent_dir / "hostnet-agent.pyz"
    assert zipapp.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(zipapp, os.X_OK)
    with zipfile.ZipFile(zipapp) as archive:
        names = set(archive.namelist())
        main = archive.read("__main__.py").decode()
    assert "from vm.agent.__main__ import main" in main
    for needed in ("vm/agent/__main__.py", "vm/agent/server.py", "proxy/wire/__init__.py"):
        assert needed in names
    assert "pyroute2/__init__.py" in names
    assert not any(name.startswith(("app/", "PySide6/", "tests/")) for name in names)
    assert not any(name.endswith((".so", ".pyc")) for name in names)
    unit = (agent_dir / "hostnet-agent.service").read_text()
    assert "ExecStart=/usr/bin/python3 -I /usr/lib/hostnet/hostnet-agent.pyz" in unit


def test_cloud_init_snippet_carries_the_agent(agent_dir: Path) -> None:
    import yaml

    config = yaml.safe_load((agent_dir / "hostnet-agent.cloud-init.yaml").read_text())
    files = {entry["path"]: entry for entry in config["write_files"]}
    packed = files["/usr/lib/hostnet/hostnet-agent.pyz"]
    assert packed["encoding"] == "gz+b64"
    zipapp = gzip.decompress(base64.b64decode(packed["content"]))
    assert zipapp == (agent_dir / "hostnet-agent.pyz").read_bytes()
    unit = files["/etc/systemd/system/hostnet-agent.service"]["content"]
    assert unit == (agent_dir / "hostnet-agent.service").read_text()
    assert files["/etc/hostnet/agent.env"]["content"].startswith("HOSTNET_AGENT_LISTEN=vsock:")
    assert ["systemctl", "enable", "--now", "hostnet-agent.service"] in config["runcmd"]


def test_pyroute2_loads_from_the_zip_with_no_site_packages(agent_dir: Path) -> None:
    zipapp = agent_dir / "hostnet-agent.pyz"
    probe = (
        f"import sys; sys.path.insert(0, {str(zipapp)!r}); "
        "import pyroute2, vm.agent.server; print(pyroute2.__file__)"
    )
    result = subprocess.run(
        [GUEST_PYTHON, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"{zipapp}/pyroute2/")


def test_zipapp_rejects_bad_arguments_cleanly(agent_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            GUEST_PYTHON,
            "-I",
            str(agent_dir / "hostnet-agent.pyz"),
            "--listen",
            "bogus:x",
            "--secret-file",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "hostnet agent:" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"hn-zipapp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


def start_zipapp_agent(
    namespace: str, zipapp: Path, work: Path
) -> tuple[subprocess.Popen[str], Path, Path]:
    """The zipapp agent in ``namespace`` on work/agent.sock: (process, socket, secret)."""
    secret = work / "secret"
    secret.touch(mode=0o600)
    secret.write_bytes(secrets.token_bytes(32))
    sock, ready = work / "agent.sock", work / "agent.ready"
    agent = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            GUEST_PYTHON,
            "-I",
            str(zipapp),
            "--listen",
            f"unix:{sock}",
            "--secret-file",
            str(secret),
            "--loopback-up",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def listening() -> bool:
        if agent.poll() is not None:
            out = agent.stdout.read() if agent.stdout else ""
            raise AssertionError(f"the zipapp agent exited with {agent.returncode}: {out}")
        return ready.exists()

    wait_for(listening, 15, "the zipapp agent to listen")
    return agent, sock, secret


@needs_root
def test_mirror_end_to_end_through_the_zipapp_agent(
    agent_dir: Path, namespace: str, tmp_path: Path
) -> None:
    assert shutil.which("ip"), "iproute2 is needed (installer/dev-packages.txt)"
    agent, sock, secret = start_zipapp_agent(namespace, agent_dir / "hostnet-agent.pyz", tmp_path)
    home = tmp_path / "home"
    settings = {
        "HostNetworkingEnabled": True,
        "VmBackend": "attach",
        "VmOptions": {"transport": f"unix:{sock}", "secret_file": str(secret)},
    }
    daemon = start_daemon(home, settings)
    try:
        assert_vm_port_mirrored(daemon, ["ip", "netns", "exec", namespace], b"through-zipapp")
    finally:
        daemon.stop()
        agent.terminate()
        agent.wait(10)
    assert agent.returncode == 0, "the agent stops cleanly on SIGTERM"
