"""Issue 14's steps as a person takes them, on a real QEMU VM (TCG): start the daemon, then
while the VM boots sign in and turn host networking on. Status tells the truth all along
(signed in at once; never "turn it on" about a setting that is on) and forwarding starts when
the VM is up. The faster namespace version of this is test_gate_inputs.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from app.control_client import ControlClient
from tests.integration.daemon_fixture import HOSTNET, write_settings
from tests.integration.gate_helpers import TURN_IT_ON, answers, cli, login
from tests.integration.test_qemu_hostnet import BOOT, IMAGE_CACHE
from tests.integration.vm_helpers import wait_for
from tests.signin_peers.fixtures import Registry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="the test daemon runs as root"),
]


def test_enabling_while_the_qemu_vm_boots(
    hostnet_home: Path,
    real_keyring: object,
    basic_registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = {"image_cache_dir": str(IMAGE_CACHE), "accel": "tcg", "memory_mib": 768}
    write_settings(hostnet_home, {"VmBackend": "qemu", "VmOptions": options})
    with (hostnet_home / "daemon.out").open("w") as out:
        proc = subprocess.Popen([HOSTNET, "daemon"], stdout=out, stderr=out, text=True)
    client = ControlClient(hostnet_home / "run" / "control.sock")
    try:
        wait_for(lambda: answers(client), 60, "the control API")
        assert client.get("/v1/status")["vm"]["state"] == "starting"
        assert login(capsys, basic_registry).returncode == 0
        assert cli(capsys, "settings", "set", "HostNetworkingEnabled", "true").returncode == 0
        said: list[str] = []
        deadline = time.monotonic() + BOOT
        while True:
            status = client.get("/v1/status")
            assert status["signed_in"] is True
            said.append(status["message"])
            assert TURN_IT_ON not in status["message"], said
            if status["agent"]["state"] == "connected":
                break
            assert proc.poll() is None, (hostnet_home / "daemon.out").read_text()
            assert time.monotonic() < deadline, f"the VM did not come up in {BOOT} s"
            time.sleep(0.5)
        assert status["state"] == "on"
        assert any("the VM is starting" in message for message in said)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)
