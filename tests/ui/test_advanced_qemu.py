"""Resources > Advanced switches the VM to QEMU with Apply & restart, and ports are mirrored
from the new VM (a real QEMU VM under TCG: slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit

from app.gui.controller import Controller
from tests.integration.daemon_fixture import HOSTNET, RunningDaemon
from tests.integration.vm_helpers import SERVER, free_port, host_answer
from tests.ui.app_harness import pump_until
from tests.ui.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow, pytest.mark.vm]

IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BOOT = 240.0  # TCG on a busy 2-core machine, after the netns VM is taken down


@pytest.mark.timeout(int(BOOT) + 120)
def test_switch_to_qemu_with_apply_and_restart(
    daemon_factory: Callable[..., RunningDaemon],
    app_factory: Callable[[], Controller],
    signed_in: object,
    qtbot: Any,
) -> None:
    daemon = daemon_factory({"HostNetworkingEnabled": True})
    app = app_factory()
    window = app.window
    window.show_page("advanced")
    page = window.advanced
    page.backend.setCurrentIndex(page.backend.findData("qemu"))
    editors = {editor.name: editor.widget for editor in page.editors}
    accel, memory, cache = editors["accel"], editors["memory_mib"], editors["image_cache_dir"]
    assert isinstance(accel, QComboBox) and isinstance(memory, QLineEdit)
    assert isinstance(cache, QLineEdit)
    accel.setCurrentIndex(accel.findData("tcg"))
    qtbot.keyClicks(memory, "768")
    qtbot.keyClicks(cache, str(IMAGE_CACHE))
    assert page.restart_marker.isVisibleTo(window)
    qtbot.mouseClick(window.apply_button, Qt.MouseButton.LeftButton)

    def on_qemu() -> bool:
        status = app.link.status
        return (
            app.link.connected
            and status.get("vm", {}).get("backend") == "qemu"
            and status.get("agent", {}).get("state") == "connected"
            and status.get("state") == "on"
        )

    pump_until(on_qemu, BOOT, "the QEMU VM and its agent")
    settings = daemon.client.get("/v1/settings")["settings"]
    assert settings["VmBackend"]["value"] == "qemu"
    assert settings["VmOptions"]["value"] == {
        "accel": "tcg",
        "memory_mib": 768,
        "image_cache_dir": str(IMAGE_CACHE),
    }
    assert not page.restart_marker.isVisibleTo(window)
    assert window.general.fields["vm"].text().startswith("qemu")

    port = free_port()
    started = subprocess.run(
        [HOSTNET, "vm", "exec", "--detach", "--", sys.executable, "-S", "-c", SERVER, "tcp",
         "127.0.0.1", str(port)],
        env=daemon.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr

    def in_the_table() -> bool:
        return any(
            e["port"] == port and e["host_address"] == "127.0.0.1" and e["state"] == "active"
            for e in window.network.model.entries
        )

    pump_until(in_the_table, 60, "the QEMU VM's port in the ports table")
    assert host_answer("tcp", "127.0.0.1", port, b"hi", timeout=10) == b"echo:hi"
