"""The desktop app against a real daemon on a real namespace VM (offscreen Qt)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.gui.controller import Controller
from app.gui.icons import tray_icon_name
from app.gui.signin_dialog import SignInDialog
from app.gui.tray import Tray
from app.paths import Paths
from app.signin.state import current_session
from tests.integration.daemon_fixture import RunningDaemon
from tests.integration.vm_helpers import free_port, host_answer, start_server
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry
from tests.ui.app_harness import pump_until, write_user_settings
from tests.ui.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root]

DaemonFactory = Callable[..., RunningDaemon]
AppFactory = Callable[[], Controller]


def banner_text(app: Controller) -> str:
    return "\n".join(app.window.banner_texts())


def wait_dialog(app: Controller) -> SignInDialog:
    pump_until(lambda: app.dialog is not None and app.dialog.isVisible(), 5, "the dialog")
    assert app.dialog is not None
    return app.dialog


def test_signed_out_the_toggle_is_disabled_with_a_sign_in_link(
    daemon_factory: DaemonFactory, app_factory: AppFactory
) -> None:
    daemon_factory()
    app = app_factory()
    page = app.window.network
    assert not page.toggle.isEnabled()
    assert page.toggle_reason.isVisible() or page.toggle_reason.isVisibleTo(app.window)
    assert 'href="sign-in"' in page.toggle_reason.text()
    assert "Sign in to enable" in page.toggle.accessibleDescription()
    assert not app.menu.enable_action.isEnabled()
    assert app.window.user_chip.text() == "Not signed in"
    page.toggle_reason.linkActivated.emit("sign-in")
    dialog = wait_dialog(app)
    assert dialog.docker_choice.isChecked()
    dialog.reject()


def test_sign_in_enable_apply_and_a_vm_port_appears(
    daemon_factory: DaemonFactory,
    app_factory: AppFactory,
    home: Paths,
    basic_registry: Registry,
    real_keyring: object,
    qtbot: Any,
) -> None:
    daemon = daemon_factory({"HostNetworkingEnabled": False, "DockerRegistry": basic_registry.url})
    app = app_factory()
    window = app.window
    window.show_page("account")
    qtbot.mouseClick(window.account.sign_in, Qt.MouseButton.LeftButton)
    dialog = wait_dialog(app)
    dialog.username.setText(DOCKER_USER)
    dialog.token.setText("wrong-password")
    qtbot.mouseClick(dialog.submit, Qt.MouseButton.LeftButton)
    pump_until(lambda: dialog.error.text() != "", 10, "the inline error")
    assert dialog.isVisible() and "refused" in dialog.error.text()
    dialog.token.setText(DOCKER_PASSWORD)
    qtbot.mouseClick(dialog.submit, Qt.MouseButton.LeftButton)
    pump_until(lambda: not dialog.isVisible(), 10, "the sign-in to finish")
    assert current_session(home) is not None
    pump_until(lambda: window.user_chip.text() == f"Signed in as {DOCKER_USER}", 5, "the user")
    assert app.menu.user_action.text() == f"Signed in as {DOCKER_USER}"

    page = window.network
    pump_until(page.toggle.isEnabled, 10, "the daemon to see the sign-in")
    window.show_page("network")
    assert not window.apply_button.isEnabled()
    page.toggle.click()
    assert page.staged == {"HostNetworkingEnabled": True}
    assert window.apply_button.isEnabled()
    assert daemon.client.get("/v1/settings")["settings"]["HostNetworkingEnabled"]["value"] is False
    qtbot.mouseClick(window.apply_button, Qt.MouseButton.LeftButton)
    pump_until(lambda: window.footer_message.text().startswith("Applied"), 15, "apply")
    pump_until(lambda: app.link.state == "on", 10, "host networking on")
    assert window.pill.text().endswith("Host networking on")

    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "127.0.0.1", port)
    try:
        model = page.model

        def row() -> int | None:
            for index, entry in enumerate(model.entries):
                if (entry["direction"], entry["port"], entry["host_address"]) == (
                    "vm-to-host",
                    port,
                    "127.0.0.1",
                ) and entry["state"] == "active":
                    return index
            return None

        pump_until(lambda: row() is not None, 10, "the VM port in the table")
        index = row()
        assert index is not None
        cells = [model.cell(index, column) for column in range(7)]
        assert cells[:5] == ["VM → host", "TCP", f"127.0.0.1:{port}", f"127.0.0.1:{port}", "active"]
        assert host_answer("tcp", "127.0.0.1", port, b"hi") == b"echo:hi"
        pump_until(lambda: model.cell(row() or 0, 6) != "0 B / 0 B", 6, "the byte counters")

        submenu = next(a for a in app.menu.ports_menu.actions() if a.text() == f"localhost:{port}")
        actions = {a.text(): a for a in submenu.menu().actions()}
        assert f"Open http://localhost:{port}" in actions
        actions["Copy address"].trigger()
        assert QApplication.clipboard().text() == f"localhost:{port}"
    finally:
        server.kill()

    app.menu.action_named("Sign out").trigger()
    pump_until(lambda: app.link.state == "off", 15, "sign-out to turn host networking off")
    pump_until(lambda: not page.toggle.isEnabled(), 5, "the toggle to lock again")
    assert window.user_chip.text() == "Not signed in"


def test_an_admin_lock_disables_the_toggle_with_the_reason(
    daemon_factory: DaemonFactory, app_factory: AppFactory, home: Paths, signed_in: object
) -> None:
    admin = {
        "configurationFileVersion": 2,
        "HostNetworkingEnabled": {"locked": True, "value": False},
        "HostNetworkingExposeAllInterfaces": {"locked": True, "value": False},
    }
    daemon_factory(admin=admin)
    app = app_factory()
    page = app.window.network
    assert app.link.status["signed_in"] is True
    assert not page.toggle.isEnabled()
    assert f"Locked off by your administrator in {home.config_dir.parent}" in (
        page.toggle_reason.text()
    )
    assert "sign-in" not in page.toggle_reason.text()
    assert not page.expose.isEnabled() and page.expose_lock.isVisibleTo(app.window)
    assert page.excluded.isEnabled()
    assert not app.menu.enable_action.isEnabled()


@pytest.mark.parametrize(
    ("key", "button_text"),
    [
        ("EnhancedContainerIsolation", "Turn off Enhanced Container Isolation"),
        ("UseWindowsContainers", "Switch to Linux containers"),
    ],
)
def test_a_refusal_banner_offers_the_fix_as_a_button(
    daemon_factory: DaemonFactory,
    app_factory: AppFactory,
    home: Paths,
    key: str,
    button_text: str,
    qtbot: Any,
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    write_user_settings(home.config_dir.parent, {"HostNetworkingEnabled": True, key: True})
    pump_until(lambda: app.link.state == "refused", 10, "the refusal")
    pump_until(lambda: f"Host networking is refused: {key}" in banner_text(app), 5, "banner")
    text = banner_text(app)
    assert f"Fix: {button_text} here." in text
    assert "hostnet settings set" not in text  # the app makes the fix; no CLI text
    page = app.window.network
    assert not page.toggle.isEnabled()
    assert f"Blocked by {key}" in page.toggle_reason.text()
    assert app.window.pill.text().endswith("Refused")
    assert tray_icon_name(app.link.state, app.link.connected) == "tray-refused"
    assert app.menu.status_action.text() == "Host networking is refused"
    tray = Tray(app.link, app.menu)  # where the desktop has a tray, its icon says the same
    assert tray.icon_name() == "tray-refused"
    assert tray.icon.toolTip() == "hostnet: Host networking is refused"

    buttons = [b.button for b in app.window.banners.banners if b.button is not None]
    assert [b.text() for b in buttons] == [button_text]
    qtbot.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
    pump_until(lambda: app.link.state != "refused", 10, "the fix to lift the refusal")
    assert daemon.client.get("/v1/settings")["settings"][key]["value"] is False
    pump_until(lambda: "refused" not in banner_text(app), 5, "the banner to go")


def test_a_locked_refusal_keeps_the_administrators_fix_and_no_button(
    daemon_factory: DaemonFactory, app_factory: AppFactory, home: Paths
) -> None:
    admin = {
        "configurationFileVersion": 2,
        "EnhancedContainerIsolation": {"locked": True, "value": True},
    }
    daemon_factory()  # a refused start exits; the lock comes while it runs
    app = app_factory()
    admin_file = home.config_dir.parent / "admin-settings.json"
    staged = admin_file.with_suffix(".tmp")
    staged.write_text(json.dumps(admin))
    staged.replace(admin_file)
    write_user_settings(home.config_dir.parent, {"HostNetworkingEnabled": True})
    pump_until(lambda: app.link.state == "refused", 10, "the refusal")
    text = banner_text(app)
    assert "Ask your administrator" in text
    assert all(b.button is None for b in app.window.banners.banners)
    general = app.window.general
    switch = general.switches["EnhancedContainerIsolation"]
    assert switch.isChecked() and not switch.isEnabled()
    reason = f"Locked on by your administrator in {admin_file}."
    assert switch.toolTip() == reason
    assert not general.locks["EnhancedContainerIsolation"].isHidden()
    assert general.locks["EnhancedContainerIsolation"].accessibleName() == reason
    assert general.switches["UseWindowsContainers"].isEnabled()


def test_a_bad_settings_file_shows_the_problem_and_the_fix(
    daemon_factory: DaemonFactory, app_factory: AppFactory, home: Paths
) -> None:
    daemon_factory()
    app = app_factory()
    path = home.settings_file
    path.write_text(json.dumps({"HostNetworkingEnabled": False, "HostNetworkingExcludedPorts": 7}))
    pump_until(lambda: "HostNetworkingExcludedPorts" in banner_text(app), 10, "the problem")
    assert f"Problem in {path}" in banner_text(app)
    assert "Fix:" in banner_text(app)


def test_a_lost_daemon_is_shown_and_the_app_reconnects(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    daemon.stop()
    pump_until(lambda: not app.link.connected, 10, "the app to notice")
    pump_until(lambda: "Not connected to the hostnet daemon" in banner_text(app), 5, "banner")
    assert app.window.pill.text().endswith("Daemon not running")
    assert tray_icon_name("", app.link.connected) == "tray-error"
    assert not app.window.network.toggle.isEnabled()
    button = app.window.banners.banners[0].button
    assert button is not None and button.text() == "Start daemon"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    pump_until(lambda: app.link.connected and bool(app.link.status), 20, "the reconnection")
    pump_until(lambda: banner_text(app) == "", 5, "the banner to go")
    assert app.daemon_proc is not None and app.daemon_proc.poll() is None


def test_tray_menu_actions(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    menu = app.menu
    assert app.tray is None and app.window.menu_button.isVisible()  # no tray: the window is it
    assert menu.status_action.text() == "Host networking is off"
    assert [a.text() for a in menu.ports_menu.actions()] == ["No forwarded ports"]
    app.window.hide()
    menu.action_named("Settings...").trigger()
    assert app.window.isVisible()
    menu.action_named("Sign in...").trigger()
    wait_dialog(app).reject()
    assert not menu.action_named("Sign out").isVisible()
    menu.action_named("Restart").trigger()
    pump_until(lambda: app.last_notice == "Forwarding restarted.", 10, "the restart")
    with qtbot.waitSignal(app.quit_requested, timeout=2000):
        menu.action_named("Quit").trigger()
    assert daemon.proc.poll() is None  # Quit leaves forwarding running
    app.link.start()
    app.show_window()
    with qtbot.waitSignal(app.quit_requested, timeout=2000):
        app.window.close()  # no tray: closing the window quits the app
    assert daemon.proc.poll() is None
    app.link.start()
    pump_until(lambda: app.link.connected, 10, "reconnection")
    with qtbot.waitSignal(app.quit_requested, timeout=10000):
        menu.action_named("Quit and stop forwarding").trigger()
    assert daemon.proc.wait(15) == 0


def focus_chain(window: Any) -> list[Any]:
    start = window.focusWidget()
    seen = [start]
    widget = start.nextInFocusChain()
    for _ in range(200):
        if widget is start:
            break
        if (
            widget.focusPolicy() & Qt.FocusPolicy.TabFocus
            and widget.isEnabled()
            and widget.isVisibleTo(window)
        ):
            seen.append(widget)
        widget = widget.nextInFocusChain()
    return seen


def tab_through(app: Any, window: Any, count: int) -> list[Any]:
    reached = []
    for _ in range(count):
        focused = QApplication.focusWidget()
        from PySide6.QtTest import QTest

        QTest.keyClick(focused, Qt.Key.Key_Tab)
        reached.append(QApplication.focusWidget())
    return reached


def test_keyboard_reaches_every_control_and_each_has_a_name(
    daemon_factory: DaemonFactory, app_factory: AppFactory, signed_in: object, qtbot: Any
) -> None:
    daemon_factory()
    app = app_factory()
    window = app.window
    page = window.network
    pump_until(page.toggle.isEnabled, 10, "the toggle")
    window.activateWindow()
    window.sidebar.setFocus()
    page.excluded.setText("22")
    page.excluded.textEdited.emit("22")  # stage a change, so Apply and Cancel are enabled
    assert window.apply_button.isEnabled() and window.cancel_button.isEnabled()
    wanted = [
        window.sidebar,
        page.toggle,
        page.expose,
        page.excluded,
        page.table,
        window.cancel_button,
        window.apply_button,
        window.menu_button,
    ]
    reached = tab_through(app, window, 30)
    for widget in wanted:
        assert widget in reached, widget.accessibleName()
        assert widget.accessibleName(), widget
    for widget in focus_chain(window):
        assert widget.accessibleName() or widget.objectName() == "qt_scrollarea_viewport", widget
    window.sidebar.setFocus()
    from PySide6.QtTest import QTest

    QTest.keyClick(window.sidebar, Qt.Key.Key_Down)  # Network -> Account
    assert window.current_page() == "account"
    QTest.keyClick(window.sidebar, Qt.Key.Key_Home)
    assert window.current_page() == "general"
    window.show_page("network")
    QTest.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # Apply
    pump_until(lambda: window.footer_message.text().startswith("Applied"), 10, "Ctrl+S apply")
    assert app.link.value("HostNetworkingExcludedPorts") == [22]

    window.sign_in_requested.emit()
    dialog = wait_dialog(app)
    dialog.activateWindow()
    dialog.username.setFocus()
    names = {w.accessibleName() for w in tab_through(app, dialog, 8)}
    assert {"Password or personal access token", "Sign in", "Cancel"} <= names
    dialog.reject()
