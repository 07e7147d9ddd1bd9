"""The settings window, in Docker Desktop's shape: a sidebar (General, Resources > Advanced
and Network, Account), banners above the page, and a footer with the state and "Apply &
restart", which sends every page's staged changes in one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import Signal, SignalInstance
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.control_client import ControlError, DaemonUnavailable
from app.gui.account_page import AccountPage, user_text
from app.gui.advanced_page import AdvancedPage
from app.gui.banner import Banner, BannerArea
from app.gui.daemon_link import DaemonLink
from app.gui.general_page import GeneralPage
from app.gui.icons import icon
from app.gui.network_page import NetworkPage
from app.gui.status_banners import TURN_OFF, ActionMap, banner_specs
from app.gui.tray import TrayMenu
from app.gui.widgets import label, scrolling

PILL_TEXT = {
    "on": "● Host networking on",
    "off": "● Host networking off",
    "refused": "● Refused",
    "error": "● Error",
    "lost": "● Daemon not running",
}
PAGES = ("general", "advanced", "network", "account")


class StagingPage(Protocol):
    """A page whose changes wait for "Apply & restart"."""

    @property
    def staged_changed(self) -> SignalInstance: ...

    def changes(self) -> dict[str, Any]: ...

    def is_valid(self) -> bool: ...

    def discard(self) -> None: ...

    def applied(self) -> None: ...


def error_text(exc: Exception) -> str:
    if isinstance(exc, ControlError | DaemonUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class SettingsWindow(QMainWindow):
    sign_in_requested = Signal()
    sign_out_requested = Signal()
    restart_requested = Signal()
    start_daemon_requested = Signal()
    setting_requested = Signal(str, object)  # one setting, applied at once
    applied = Signal(bool, str)  # ok, message
    closed = Signal()

    def __init__(self, link: DaemonLink, menu: TrayMenu, has_tray: bool) -> None:
        super().__init__()
        self.link = link
        self.has_tray = has_tray
        self.daemon_said = ""
        self.applying = False
        self.setWindowTitle("hostnet — Settings")
        self.setWindowIcon(icon("hostnet"))
        self.setAccessibleName("hostnet settings")
        self.resize(1060, 780)
        self.setMinimumSize(820, 560)

        root = QWidget()
        outer = QVBoxLayout(root)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self._header(menu))
        body = QHBoxLayout()
        body.setSpacing(0)
        self.sidebar = self._sidebar()
        body.addWidget(self.sidebar)
        content = QFrame()
        content.setObjectName("Content")
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(1, 0, 0, 0)
        content_layout.setSpacing(0)
        self.banners = BannerArea()
        banner_wrap = QVBoxLayout()
        banner_wrap.setContentsMargins(28, 16, 28, 0)
        banner_wrap.addWidget(self.banners)
        content_layout.addLayout(banner_wrap)
        self.stack = QStackedWidget()
        self.general = GeneralPage(link)
        self.advanced = AdvancedPage(link)
        self.network = NetworkPage(link)
        self.account = AccountPage(link)
        self.staging: tuple[StagingPage, ...] = (self.advanced, self.network, self.account)
        for page in (self.general, self.advanced, self.network, self.account):
            self.stack.addWidget(scrolling(page))
        content_layout.addWidget(self.stack, 1)
        body.addWidget(content, 1)
        outer.addLayout(body, 1)
        outer.addWidget(self._footer())
        self.setCentralWidget(root)

        for staging in self.staging:
            staging.staged_changed.connect(self._update_footer)
        self.general.setting_requested.connect(self.setting_requested.emit)
        self.network.sign_in_requested.connect(self.sign_in_requested.emit)
        self.account.sign_in_requested.connect(self.sign_in_requested.emit)
        self.account.sign_out_requested.connect(self.sign_out_requested.emit)
        self.general.restart_requested.connect(self.restart_requested.emit)
        for signal in (link.status_changed, link.connection_changed, link.settings_changed):
            signal.connect(self.refresh)
        link.session_changed.connect(self._show_user)
        close_shortcut = QShortcut(QKeySequence("Ctrl+W"), self)
        close_shortcut.activated.connect(self.close)
        apply_shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.Save), self)
        apply_shortcut.activated.connect(self.apply)
        self.show_page("network")
        self.refresh()
        self._show_user(link.session)

    # -- building -------------------------------------------------------------------------------

    def _header(self, menu: TrayMenu) -> QWidget:
        header = QFrame()
        header.setObjectName("Footer")
        layout = QHBoxLayout(header)
        layout.setContentsMargins(16, 10, 16, 10)
        logo = QLabel()
        logo.setPixmap(icon("hostnet").pixmap(26, 26))
        layout.addWidget(logo)
        title = label("Settings", wrap=False)
        title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        layout.addWidget(title)
        layout.addStretch(1)
        self.user_chip = label("", "UserChip", wrap=False)
        self.user_chip.setAccessibleName("Signed-in user")
        layout.addWidget(self.user_chip)
        self.header_sign_in = QPushButton("Sign in")
        self.header_sign_in.setAccessibleName("Sign in")
        self.header_sign_in.clicked.connect(self.sign_in_requested.emit)
        layout.addWidget(self.header_sign_in)
        self.menu_button = QToolButton()
        self.menu_button.setText("Menu")
        self.menu_button.setIcon(icon("menu"))
        self.menu_button.setObjectName("MenuButton")
        self.menu_button.setAccessibleName("hostnet menu")
        self.menu_button.setToolTip("Everything the tray menu offers")
        self.menu_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu_button.setMenu(menu)
        self.menu_button.setVisible(not self.has_tray)  # without a tray, the window is the app
        layout.addWidget(self.menu_button)
        return header

    def _sidebar(self) -> QTreeWidget:
        tree = QTreeWidget()
        tree.setObjectName("Sidebar")
        tree.setHeaderHidden(True)
        tree.setFixedWidth(210)
        tree.setIndentation(14)
        tree.setRootIsDecorated(False)
        tree.setAccessibleName("Settings sections")
        self.items: dict[str, QTreeWidgetItem] = {}
        general = QTreeWidgetItem(tree, ["General"])
        general.setIcon(0, icon("general"))
        resources = QTreeWidgetItem(tree, ["Resources"])
        resources.setIcon(0, icon("resources"))
        advanced = QTreeWidgetItem(resources, ["Advanced"])
        advanced.setIcon(0, icon("resources"))
        network = QTreeWidgetItem(resources, ["Network"])
        network.setIcon(0, icon("network"))
        account = QTreeWidgetItem(tree, ["Account"])
        account.setIcon(0, icon("account"))
        resources.setExpanded(True)
        self.items = {"general": general, "resources": resources, "advanced": advanced}
        self.items["network"] = network
        self.items["account"] = account
        tree.currentItemChanged.connect(self._section_chosen)
        return tree

    def _footer(self) -> QWidget:
        footer = QFrame()
        footer.setObjectName("Footer")
        layout = QHBoxLayout(footer)
        layout.setContentsMargins(16, 10, 16, 10)
        layout.setSpacing(10)
        self.pill = label("", "StatusPill", wrap=False)
        self.pill.setAccessibleName("Host networking state")
        layout.addWidget(self.pill)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setFixedWidth(90)
        self.progress.setMaximumHeight(6)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Applying")
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.footer_message = label("", "Hint", wrap=True)
        self.footer_message.setAccessibleName("Result")
        layout.addWidget(self.footer_message, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel changes")
        self.cancel_button.clicked.connect(self.discard)
        layout.addWidget(self.cancel_button)
        self.apply_button = QPushButton("Apply && restart")
        self.apply_button.setAccessibleName("Apply & restart")
        self.apply_button.setProperty("primary", True)
        self.apply_button.clicked.connect(self.apply)
        layout.addWidget(self.apply_button)
        return footer

    # -- navigation -----------------------------------------------------------------------------

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentItem(self.items["network" if name == "resources" else name])

    def current_page(self) -> str:
        return PAGES[self.stack.currentIndex()]

    def _section_chosen(self, item: QTreeWidgetItem | None, _previous: Any) -> None:
        if item is None:
            return
        name = next(key for key, value in self.items.items() if value is item)
        if name == "resources":
            self.sidebar.setCurrentItem(self.items["network"])
            return
        self.stack.setCurrentIndex(PAGES.index(name))

    # -- state ----------------------------------------------------------------------------------

    def set_daemon_said(self, text: str) -> None:
        self.daemon_said = text
        self.refresh()

    def refresh(self, *_args: Any) -> None:
        link = self.link
        state = link.state
        self.pill.setText(PILL_TEXT.get(state, state))
        self.pill.setProperty("state", state)
        self.pill.style().unpolish(self.pill)
        self.pill.style().polish(self.pill)
        actions: ActionMap = {
            "start-daemon": ("Start daemon", self.start_daemon_requested.emit),
            "restart": ("Restart", self.restart_requested.emit),
            "sign-in": ("Sign in...", self.sign_in_requested.emit),
        }
        for key, text in TURN_OFF.items():
            actions[f"turn-off:{key}"] = (text, self._turn_off(key))
        specs = banner_specs(
            connected=link.connected,
            lost_message=link.lost_message,
            daemon_said=self.daemon_said,
            status=link.status,
        )
        self.banners.show_banners(
            [
                Banner(s.kind, s.title, s.body, s.fix, actions.get(s.action) if s.action else None)
                for s in specs
            ]
        )
        self._update_footer()

    def _turn_off(self, key: str) -> Callable[[], None]:
        return lambda: self.setting_requested.emit(key, False)

    def banner_texts(self) -> list[str]:
        return [banner.text() for banner in self.banners.banners]

    def _show_user(self, session: Any) -> None:
        if session is None:
            self.user_chip.setText("Not signed in")
        else:
            self.user_chip.setText(f"Signed in as {user_text(session)}")
        self.header_sign_in.setVisible(session is None)

    def changes(self) -> dict[str, Any]:
        """Every page's staged changes, sent together by "Apply & restart"."""
        out: dict[str, Any] = {}
        for staging in self.staging:
            out.update(staging.changes())
        return out

    def is_valid(self) -> bool:
        return all(staging.is_valid() for staging in self.staging)

    def _update_footer(self) -> None:
        staged = bool(self.changes())
        valid = self.is_valid()
        can_apply = staged and valid and self.link.connected and not self.applying
        self.apply_button.setEnabled(can_apply)
        self.cancel_button.setEnabled((staged or not valid) and not self.applying)
        if staged and not self.applying:
            self.footer_message.setText("You have changes that are not applied yet.")
            self.footer_message.setStyleSheet("")

    # -- apply and cancel -----------------------------------------------------------------------

    def discard(self) -> None:
        for staging in self.staging:
            staging.discard()
        self._say("")

    def _say(self, text: str, error: bool = False) -> None:
        self.footer_message.setText(text)
        self.footer_message.setStyleSheet("color: #c62828;" if error else "")

    def _busy(self, busy: bool, text: str = "") -> None:
        self.applying = busy
        self.progress.setVisible(busy)
        if text:
            self._say(text)
        self._update_footer()

    def apply(self) -> None:
        changes = self.changes()
        if not changes or self.applying or not self.is_valid():
            return
        self._busy(True, "Saving settings...")
        self.link.put_settings(changes, on_done=self._saved, on_error=self._apply_failed)

    def _saved(self, result: Any) -> None:
        for staging in self.staging:
            staging.applied()
        if isinstance(result, dict) and result.get("restart_required"):
            self._busy(True, "Restarting forwarding...")
            self.link.call("POST", "/v1/restart", on_done=self._done, on_error=self._apply_failed)
        else:
            self._done(None)

    def _done(self, _result: Any) -> None:
        self._busy(False)
        message = "Applied. " + (
            "Host networking is on."
            if self.link.value("HostNetworkingEnabled")
            else "Host networking is off."
        )
        self._say(message)
        self.applied.emit(True, message)

    def _apply_failed(self, exc: Exception) -> None:
        self._busy(False)
        message = f"Not applied: {error_text(exc)}"
        self._say(message, error=True)
        self.applied.emit(False, message)

    # -- closing --------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """With a tray the app lives on there; without one, closing the window quits it."""
        event.accept()
        if self.has_tray:
            self.hide()
        self.closed.emit()
