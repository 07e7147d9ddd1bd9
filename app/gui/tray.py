"""The tray icon and its menu. The menu is built from the daemon's state each time it
changes; without a system tray the same menu is reachable from the window (the window is the
app then)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.gui.account_page import user_text
from app.gui.daemon_link import DaemonLink
from app.gui.icons import icon, tray_icon_name
from app.gui.setting_lock import lock_reason
from app.gui.setting_notices import LINUX_ONLY
from app.gui.toggle_gate import ENABLED, toggle_gate

WINDOWS_CONTAINERS = "UseWindowsContainers"
WINDOWS_CONTAINERS_TEXT = "Use Windows containers"

STATUS_LINES = {
    "on": "Host networking is on",
    "off": "Host networking is off",
    "refused": "Host networking is refused",
    "error": "Host networking: error",
    "lost": "hostnet daemon not running",
}


def status_line(link: DaemonLink) -> str:
    line = STATUS_LINES.get(link.state, link.state)
    if link.state == "on":
        active = sum(1 for p in link.ports() if p.get("state") == "active")
        line += f" ({active} port{'s' if active != 1 else ''})"
    return line


def forwarded_ports(link: DaemonLink) -> list[int]:
    """Ports reachable on the host's localhost: active VM-to-host mirrors, each port once."""
    return sorted(
        {
            int(p["port"])
            for p in link.ports()
            if p.get("direction") == "vm-to-host"
            and p.get("state") == "active"
            and p.get("proto") == "tcp"
        }
    )


class TrayMenu(QMenu):
    """The tray's menu; actions are named for tests and for screen readers."""

    enable_requested = Signal(bool)
    setting_requested = Signal(str, object)  # key, value: applied at once, like the toggle
    settings_requested = Signal()
    sign_in_requested = Signal()
    sign_out_requested = Signal()
    restart_requested = Signal()
    quit_requested = Signal()
    quit_and_stop_requested = Signal()

    def __init__(self, link: DaemonLink) -> None:
        super().__init__()
        self.link = link
        self.setAccessibleName("hostnet menu")
        self.status_action = self._action("Status", enabled=False)
        self.user_action = self._action("Not signed in", enabled=False)
        self.addSeparator()
        self.enable_action = self._action("Enable host networking")
        self.enable_action.setCheckable(True)
        # QAction.triggered has a no-argument overload, and PySide picks it for a bare
        # ``signal.emit``; the slot reads the check state itself instead.
        self.enable_action.triggered.connect(self._enable_triggered)
        self.windows_action = self._action(WINDOWS_CONTAINERS_TEXT)
        self.windows_action.setCheckable(True)
        self.windows_action.triggered.connect(self._windows_triggered)
        self.ports_menu = QMenu("Forwarded ports", self)
        self._filled_ports: list[int] | None = None
        self.ports_menu.setAccessibleName("Forwarded ports")
        self.addMenu(self.ports_menu)
        self.addSeparator()
        self.settings_action = self._action("Settings...")
        self.settings_action.triggered.connect(self.settings_requested.emit)
        self.sign_in_action = self._action("Sign in...")
        self.sign_in_action.triggered.connect(self.sign_in_requested.emit)
        self.sign_out_action = self._action("Sign out")
        self.sign_out_action.triggered.connect(self.sign_out_requested.emit)
        self.restart_action = self._action("Restart")
        self.restart_action.triggered.connect(self.restart_requested.emit)
        self.addSeparator()
        self.quit_action = self._action("Quit")
        self.quit_action.triggered.connect(self.quit_requested.emit)
        self.quit_stop_action = self._action("Quit and stop forwarding")
        self.quit_stop_action.triggered.connect(self.quit_and_stop_requested.emit)
        for signal in (
            link.status_changed,
            link.ports_changed,
            link.settings_changed,
            link.connection_changed,
            link.session_changed,
        ):
            signal.connect(self.refresh)
        self.refresh()

    @Slot()
    def _enable_triggered(self) -> None:
        """The check mark flips before the daemon agrees; ``refresh`` puts it back to the
        setting's value if the change is refused."""
        self.enable_requested.emit(self.enable_action.isChecked())

    @Slot()
    def _windows_triggered(self) -> None:
        self.setting_requested.emit(WINDOWS_CONTAINERS, self.windows_action.isChecked())

    def _action(self, text: str, enabled: bool = True) -> QAction:
        action = QAction(text, self)
        action.setEnabled(enabled)
        self.addAction(action)
        return action

    def action_named(self, text: str) -> QAction:
        for action in [*self.actions(), *self.ports_menu.actions()]:
            if action.text() == text:
                return action
        raise KeyError(text)

    def refresh(self, *_args: Any) -> None:
        link = self.link
        self.status_action.setText(status_line(link))
        session = link.session
        self.user_action.setText(
            f"Signed in as {user_text(session)}" if session else "Not signed in"
        )
        gate = toggle_gate(
            connected=link.connected, status=link.status, enabled_setting=link.setting(ENABLED)
        )
        self.enable_action.setChecked(bool(link.value(ENABLED)))
        self.enable_action.setEnabled(gate.enabled and bool(link.settings))
        self.enable_action.setToolTip(gate.reason_text)
        self.enable_action.setStatusTip(gate.reason_text)
        windows = link.setting(WINDOWS_CONTAINERS)
        self.windows_action.setChecked(bool(windows.get("value")))
        locked = bool(windows.get("locked"))
        self.windows_action.setEnabled(link.connected and bool(windows) and not locked)
        self.windows_action.setToolTip(lock_reason(windows) or LINUX_ONLY)
        self.sign_in_action.setVisible(session is None)
        self.sign_out_action.setVisible(session is not None)
        self.restart_action.setEnabled(link.connected)
        self.quit_stop_action.setEnabled(link.connected)
        self._fill_ports()

    def _fill_ports(self) -> None:
        """Rebuilt only when the ports change: counters move every second, and a menu
        rebuilt under the pointer would close the submenu a user is opening."""
        ports = forwarded_ports(self.link)
        if ports == self._filled_ports and not self.ports_menu.isEmpty():
            return
        self._filled_ports = ports
        menu = self.ports_menu
        menu.clear()
        if not ports:
            none = menu.addAction("No forwarded ports")
            none.setEnabled(False)
        for port in ports:
            sub = menu.addMenu(f"localhost:{port}")
            sub.setAccessibleName(f"Port {port}")
            url = f"http://localhost:{port}"
            open_action = sub.addAction(f"Open {url}")
            open_action.triggered.connect(lambda _c=False, u=url: QDesktopServices.openUrl(QUrl(u)))
            copy_action = sub.addAction("Copy address")
            copy_action.triggered.connect(
                lambda _c=False, a=f"localhost:{port}": QGuiApplication.clipboard().setText(a)
            )
        menu.setEnabled(True)


class Tray(QObject):
    """The system tray icon when the desktop has one."""

    activated = Signal()

    def __init__(self, link: DaemonLink, menu: TrayMenu) -> None:
        super().__init__()
        self.link = link
        self.menu = menu
        self.icon = QSystemTrayIcon(icon("tray-off"))
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._activated)
        for signal in (link.status_changed, link.connection_changed, link.ports_changed):
            signal.connect(self.refresh)
        self.refresh()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def icon_name(self) -> str:
        return tray_icon_name(self.link.state if self.link.connected else "", self.link.connected)

    def refresh(self, *_args: Any) -> None:
        self.icon.setIcon(icon(self.icon_name()))
        self.icon.setToolTip(f"hostnet: {status_line(self.link)}")

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.activated.emit()
