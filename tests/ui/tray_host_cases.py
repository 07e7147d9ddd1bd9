"""The tray on a real tray host, against a real daemon on a real namespace VM.

tests/ui/test_tray_host.py runs this file in a process of its own, under Xvfb with openbox and
tint2's system tray (tests/ui/tray_host.py), because Qt picks its platform once per process
and the other UI tests run offscreen. Menus are opened and items chosen with real pointer
clicks (xdotool, through the X server), and also with QAction.trigger(), the menu's own path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.gui.controller import Controller
from app.paths import Paths
from app.signin.state import current_session
from tests.integration.daemon_fixture import RunningDaemon
from tests.integration.vm_helpers import free_port, start_server
from tests.ui.app_harness import open_app, pump_until, settled
from tests.ui.tray_host import click

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("QT_QPA_PLATFORM") != "xcb" or not os.environ.get("DISPLAY"),
        reason="runs under a tray host only (tests/ui/test_tray_host.py starts one)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace VM needs root"),
]

DaemonFactory = Callable[..., RunningDaemon]


def env() -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture
def tray_app(qapp: Any, home: Paths) -> Iterator[Callable[[], Controller]]:
    from app.gui.theme import apply_theme

    apply_theme(qapp)
    opened: list[Controller] = []

    def start() -> Controller:
        pump_until(QSystemTrayIcon.isSystemTrayAvailable, 10, "the system tray")
        controller = open_app(home, use_tray=True)
        opened.append(controller)
        pump_until(lambda: settled(controller), 15, "the app to hear the daemon")
        tray = controller.tray
        assert tray is not None, "a tray host is running, so the app must use its tray"
        pump_until(lambda: tray.icon.geometry().width() > 0, 10, "the icon in the panel")
        controller.window.hide()
        return controller

    yield start
    for controller in opened:
        controller.shutdown()


def setting(daemon: RunningDaemon, key: str) -> Any:
    return daemon.client.get("/v1/settings")["settings"][key]["value"]


def open_tray_menu(app: Controller) -> QMenu:
    """Right-click the icon where tint2 shows it; the menu pops up."""
    assert app.tray is not None
    centre = app.tray.icon.geometry().center()
    for _ in range(2):  # a click that only took the focus back from a closing popup: again
        click(env(), centre.x(), centre.y(), button=3)
        with contextlib.suppress(AssertionError):
            pump_until(app.menu.isVisible, 5, "the tray menu to open")
            return app.menu
    click(env(), centre.x(), centre.y(), button=3)
    pump_until(app.menu.isVisible, 5, "the tray menu to open")
    return app.menu


def click_item(menu: QMenu, action: QAction) -> None:
    """Click ACTION where MENU (open on screen) draws it."""
    assert action.isVisible() and action.isEnabled(), action.text()
    pump_until(lambda: not menu.actionGeometry(action).isEmpty(), 5, "the menu's layout")
    point = menu.mapToGlobal(menu.actionGeometry(action).center())
    click(env(), point.x(), point.y())


def choose(app: Controller, text: str) -> None:
    menu = open_tray_menu(app)
    click_item(menu, app.menu.action_named(text))
    pump_until(lambda: not menu.isVisible(), 5, "the menu to close")


def test_the_icon_sits_in_the_panel_and_a_left_click_opens_the_window(
    daemon_factory: DaemonFactory, tray_app: Callable[[], Controller]
) -> None:
    daemon_factory()
    app = tray_app()
    assert app.tray is not None and app.tray.icon.isVisible()
    geometry = app.tray.icon.geometry()
    screen = QGuiApplication.primaryScreen().geometry()
    assert geometry.bottom() >= screen.bottom() - 32, "tint2's panel is at the bottom"
    assert not app.window.menu_button.isVisible()  # with a tray, the window has no menu button
    assert app.tray.icon.toolTip() == "hostnet: Host networking is off"
    click(env(), geometry.center().x(), geometry.center().y())
    pump_until(app.window.isVisible, 5, "the window")


def test_enable_and_windows_containers_by_real_clicks_and_by_trigger(
    daemon_factory: DaemonFactory, tray_app: Callable[[], Controller], signed_in: object
) -> None:
    daemon = daemon_factory()
    app = tray_app()
    enable = app.menu.enable_action
    pump_until(enable.isEnabled, 10, "the item to be enabled (signed in)")
    assert not enable.isChecked()

    choose(app, "Enable host networking")
    pump_until(lambda: app.link.state == "on", 15, "host networking on")
    assert setting(daemon, "HostNetworkingEnabled") is True
    pump_until(enable.isChecked, 5, "the check mark to follow the setting")
    assert app.tray is not None and app.tray.icon_name() == "tray-on"

    enable.trigger()  # the menu's own path, as a keyboard or accessibility tool uses it
    pump_until(lambda: app.link.state == "off", 15, "host networking off")
    assert setting(daemon, "HostNetworkingEnabled") is False
    pump_until(lambda: not enable.isChecked(), 5, "the check mark to follow the setting")
    enable.trigger()
    pump_until(lambda: app.link.state == "on", 15, "host networking on again")

    choose(app, "Use Windows containers")
    pump_until(lambda: app.link.state == "refused", 15, "the refusal")
    assert setting(daemon, "UseWindowsContainers") is True
    reasons = [r["setting"] for r in app.link.status["reasons"]]
    assert reasons == ["UseWindowsContainers"]
    pump_until(lambda: "Linux containers only" in app.last_notice, 5, "the Linux-only notice")
    assert app.menu.windows_action.isChecked()
    assert app.tray.icon_name() == "tray-refused"
    assert enable.isChecked() and not enable.isEnabled()  # the setting stays on, refused

    choose(app, "Use Windows containers")
    pump_until(lambda: app.link.state == "on", 15, "forwarding to resume")
    assert setting(daemon, "UseWindowsContainers") is False
    pump_until(lambda: not app.menu.windows_action.isChecked(), 5, "the check mark to follow")


def test_ports_settings_restart_and_sign_out_by_real_clicks(
    daemon_factory: DaemonFactory,
    tray_app: Callable[[], Controller],
    home: Paths,
    signed_in: object,
) -> None:
    daemon = daemon_factory({"HostNetworkingEnabled": True})
    app = tray_app()
    pump_until(lambda: app.link.state == "on", 15, "host networking on")
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "127.0.0.1", port)
    try:
        address = f"localhost:{port}"
        pump_until(lambda: _has_port(app, port), 10, "the port in the menu")
        menu = open_tray_menu(app)
        click_item(menu, app.menu.ports_menu.menuAction())
        ports = app.menu.ports_menu
        pump_until(ports.isVisible, 5, "the ports submenu")
        entry = next(a for a in ports.actions() if a.text() == address)
        click_item(ports, entry)
        sub = entry.menu()
        assert isinstance(sub, QMenu)
        pump_until(sub.isVisible, 5, "the port's submenu")
        copy = next(a for a in sub.actions() if a.text() == "Copy address")
        click_item(sub, copy)
        pump_until(lambda: QGuiApplication.clipboard().text() == address, 5, "the clipboard")
    finally:
        server.kill()

    choose(app, "Settings...")
    pump_until(app.window.isVisible, 5, "the window")
    app.window.hide()

    choose(app, "Restart")
    pump_until(lambda: app.last_notice == "Forwarding restarted.", 15, "the restart")

    assert not app.menu.action_named("Sign in...").isVisible()
    choose(app, "Sign out")
    pump_until(lambda: app.link.state == "off", 15, "sign-out to turn host networking off")
    assert current_session(home) is None
    assert setting(daemon, "HostNetworkingEnabled") is False
    pump_until(lambda: app.menu.action_named("Sign in...").isVisible(), 5, "Sign in... back")
    assert not app.menu.enable_action.isEnabled()


def _has_port(app: Controller, port: int) -> bool:
    return any(a.text() == f"localhost:{port}" for a in app.menu.ports_menu.actions())


def test_quit_leaves_forwarding_and_quit_and_stop_ends_it(
    daemon_factory: DaemonFactory, tray_app: Callable[[], Controller], qtbot: Any
) -> None:
    daemon = daemon_factory()
    app = tray_app()
    with qtbot.waitSignal(app.quit_requested, timeout=5000):
        choose(app, "Quit")
    assert daemon.proc.poll() is None
    assert app.tray is not None and not app.tray.icon.isVisible()

    again = tray_app()
    with qtbot.waitSignal(again.quit_requested, timeout=15000):
        choose(again, "Quit and stop forwarding")
    assert daemon.proc.wait(15) == 0
