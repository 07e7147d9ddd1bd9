"""``make screenshots``: the main states of the app against real daemons, as PNG files in
docs/screenshots/. Runs under Xvfb (started here when there is no DISPLAY)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.integration.daemon_fixture import RunningDaemon, start_daemon
from tests.integration.vm_helpers import free_port, host_answer, start_server
from tests.ui.app_harness import (
    open_app,
    pump_until,
    record_session,
    settled,
    use_home,
    write_user_settings,
)

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@contextlib.contextmanager
def display() -> Iterator[None]:
    if os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        yield
        return
    if shutil.which("Xvfb") is None:
        sys.exit("screenshots: Xvfb is not installed; run `make setup` (apt package xvfb)")
    number = 99
    while Path(f"/tmp/.X{number}-lock").exists():
        number += 1
    xvfb = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or xvfb.poll() is not None:
            sys.exit("screenshots: Xvfb did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        yield
    finally:
        xvfb.terminate()
        xvfb.wait(5)


def shoot(
    name: str,
    *,
    settings: dict[str, object],
    admin: dict[str, object] | None = None,
    signed_in: bool = False,
    then: Callable[[RunningDaemon, Path], object] | None = None,
    ready: Callable[[object], bool] = lambda c: True,
    page: str = "network",
    sign_in_dialog: bool = False,
    after_ready: Callable[[Any], bool] | None = None,
) -> None:
    home = Path(tempfile.mkdtemp(prefix=f"hostnet-shot-{name}-"))
    paths = use_home(home)
    if signed_in:
        paths.ensure()
        record_session(paths)
    daemon = start_daemon(home, settings, admin)
    servers: list[subprocess.Popen[str]] = []
    controller = open_app(paths)
    try:
        pump_until(lambda: settled(controller), 15, f"{name}: the app to connect")
        if then is not None:
            extra = then(daemon, home)
            if isinstance(extra, list):
                servers.extend(extra)
        pump_until(lambda: ready(controller), 20, f"{name}: the state to show")
        if after_ready is not None:
            pump_until(lambda: after_ready(controller), 10, f"{name}: the final touch")
        window = controller.window
        window.show_page(page)
        end = time.monotonic() + 0.6
        pump_until(lambda: time.monotonic() > end, 2)
        OUT.mkdir(parents=True, exist_ok=True)
        target = OUT / f"{name}.png"
        widget: Any = window
        if sign_in_dialog:
            controller.sign_in()
            pump_until(lambda: controller.dialog is not None, 5, "the sign-in dialog")
            widget = controller.dialog
            widget.username.setText("alice")
            end = time.monotonic() + 0.5
            pump_until(lambda: time.monotonic() > end, 2)
        widget.grab().save(str(target))
        print(f"screenshots: {target}")
    finally:
        controller.shutdown()
        for server in servers:
            server.kill()
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)


def with_servers(daemon: RunningDaemon, home: Path) -> list[subprocess.Popen[str]]:
    return [
        start_server(daemon.vm_prefix, "tcp", "0.0.0.0", free_port()),
        start_server(daemon.vm_prefix, "tcp", "::", free_port()),
        start_server(daemon.vm_prefix, "udp", "127.0.0.1", free_port("udp")),
    ]


def some_traffic(controller: Any) -> bool:
    """Send a few requests through a mirror; done when the table's counters show them."""
    for entry in controller.link.ports():
        if entry["direction"] == "vm-to-host" and entry["proto"] == "tcp":
            if entry["counters"].get("bytes_in", 0) > 0:
                return True
            host = entry["host_address"]
            with contextlib.suppress(OSError):
                host_answer("tcp", host, entry["port"], b"GET / HTTP/1.0\r\n\r\n" * 40)
            time.sleep(0.3)
            return False
    return False


def refuse(daemon: RunningDaemon, home: Path) -> None:
    write_user_settings(home, {"HostNetworkingEnabled": True, "EnhancedContainerIsolation": True})


def stage_qemu(controller: Any) -> bool:
    """Choose QEMU with a few options, so the page shows them and "restart needed"."""
    page = controller.window.advanced
    page.backend.setCurrentIndex(page.backend.findData("qemu"))
    editors = {editor.name: editor.widget for editor in page.editors}
    editors["cpus"].setText("2")
    editors["memory_mib"].setText("2048")
    editors["accel"].setCurrentIndex(editors["accel"].findData("tcg"))
    page._edited()  # what typing does (setText alone does not emit textEdited)
    return bool(page.changes())


def main() -> int:
    with display():
        from PySide6.QtWidgets import QApplication

        from app.gui.theme import apply_theme

        app = QApplication(sys.argv[:1])
        app.setApplicationName("hostnet")
        apply_theme(app)
        shoot("signed-out", settings={"HostNetworkingEnabled": False})
        shoot("signed-in-off", settings={"HostNetworkingEnabled": False}, signed_in=True)
        shoot(
            "on-with-ports",
            settings={"HostNetworkingEnabled": True, "HostNetworkingExcludedPorts": [22]},
            signed_in=True,
            then=with_servers,
            ready=lambda c: sum(p.get("state") == "active" for p in c.link.ports()) >= 5,
            after_ready=some_traffic,
        )
        shoot(
            "refused",
            settings={"HostNetworkingEnabled": False},
            signed_in=True,
            then=refuse,
            ready=lambda c: c.link.state == "refused",
        )
        shoot(
            "locked",
            settings={"HostNetworkingEnabled": False},
            admin={
                "configurationFileVersion": 2,
                "HostNetworkingEnabled": {"locked": True, "value": False},
                "HostNetworkingExposeAllInterfaces": {"locked": True, "value": False},
            },
            signed_in=True,
        )
        shoot(
            "general-eci-refused",
            settings={"HostNetworkingEnabled": False},
            signed_in=True,
            then=refuse,
            ready=lambda c: c.link.state == "refused",
            page="general",
        )
        shoot(
            "advanced",
            settings={"HostNetworkingEnabled": True},
            signed_in=True,
            ready=lambda c: c.link.state == "on",
            after_ready=stage_qemu,
            page="advanced",
        )
        shoot("account", settings={"HostNetworkingEnabled": False}, signed_in=True, page="account")
        shoot("sign-in", settings={"HostNetworkingEnabled": False}, sign_in_dialog=True)
        del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
