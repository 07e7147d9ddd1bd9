"""The app: the daemon link, the window, the tray and the sign-in dialog, wired together.
Every action that talks to the daemon or a server runs on the worker pool."""

from __future__ import annotations

import subprocess
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.gui.daemon_link import DaemonLink
from app.gui.daemon_start import read_log_tail, spawn_daemon
from app.gui.setting_notices import setting_notice
from app.gui.settings_window import SettingsWindow, error_text
from app.gui.signin_dialog import SignInDialog
from app.gui.status_banners import daemon_exit_reason
from app.gui.toggle_gate import ENABLED
from app.gui.tray import Tray, TrayMenu
from app.gui.workers import Workers
from app.paths import Paths
from app.signin import manager
from app.signin.cancel import run_blocking
from app.signin.config import load_config


class Controller(QObject):
    """``start()`` shows the window and follows the daemon; ``quit_requested`` ends the app."""

    quit_requested = Signal()
    notice = Signal(str)  # what the last tray action did, for the person (and tests)

    def __init__(
        self,
        paths: Paths,
        *,
        use_tray: bool | None = None,
        daemon_proc: subprocess.Popen[bytes] | None = None,
    ) -> None:
        super().__init__()
        self.paths = paths
        self.daemon_proc = daemon_proc
        self.workers = Workers(self)
        self.link = DaemonLink(paths, self.workers, self)
        self.menu = TrayMenu(self.link)
        if use_tray is None:
            use_tray = QSystemTrayIcon.isSystemTrayAvailable()
        self.tray = Tray(self.link, self.menu) if use_tray else None
        self.window = SettingsWindow(self.link, self.menu, has_tray=self.tray is not None)
        self.dialog: SignInDialog | None = None
        self.last_notice = ""

        self.menu.enable_requested.connect(self.set_enabled)
        self.menu.setting_requested.connect(self.set_setting)
        self.menu.settings_requested.connect(self.show_window)
        self.menu.sign_in_requested.connect(self.sign_in)
        self.menu.sign_out_requested.connect(self.sign_out)
        self.menu.restart_requested.connect(self.restart)
        self.menu.quit_requested.connect(self.quit)
        self.menu.quit_and_stop_requested.connect(self.quit_and_stop)
        self.window.sign_in_requested.connect(self.sign_in)
        self.window.sign_out_requested.connect(self.sign_out)
        self.window.restart_requested.connect(self.restart)
        self.window.start_daemon_requested.connect(self.start_daemon)
        self.window.setting_requested.connect(self.set_setting)
        self.window.applied.connect(lambda _ok, message: self._notify(message))
        self.window.closed.connect(self._window_closed)
        self.link.connection_changed.connect(self._connection_changed)
        if self.tray is not None:
            self.tray.activated.connect(self.show_window)

    # -- lifetime -------------------------------------------------------------------------------

    def start(self, show_window: bool = True) -> None:
        self.link.start()
        if self.tray is not None:
            self.tray.show()
        if show_window or self.tray is None:
            self.show_window()

    def shutdown(self) -> None:
        """Stop following the daemon and let running calls finish (bounded)."""
        if self.dialog is not None:
            self.dialog.reject()
        self.link.stop()
        self.workers.wait(3000)
        if self.tray is not None:
            self.tray.hide()
        self.window.hide()

    def show_window(self) -> None:
        first = not self.window.isVisible()
        self.window.show()
        if first:
            self.window.sidebar.setFocus()
        self.window.raise_()
        self.window.activateWindow()

    def _window_closed(self) -> None:
        if self.tray is None:
            self.quit()

    def quit(self) -> None:
        """Quit the app; the daemon keeps forwarding."""
        self.shutdown()
        self.quit_requested.emit()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    def quit_and_stop(self) -> None:
        """Stop forwarding and the daemon, then quit."""

        def stopped(_result: Any) -> None:
            self.quit()

        def failed(exc: Exception) -> None:
            self._notify(f"Could not stop the daemon: {error_text(exc)}")
            self.quit()

        self.link.call("POST", "/v1/shutdown", on_done=stopped, on_error=failed)

    def _notify(self, message: str) -> None:
        self.last_notice = message
        self.notice.emit(message)
        if self.tray is not None and not self.window.isVisible() and message:
            self.tray.icon.showMessage("hostnet", message, QSystemTrayIcon.MessageIcon.NoIcon, 4000)

    # -- daemon ---------------------------------------------------------------------------------

    def set_enabled(self, on: bool) -> None:
        """The tray's switch: applied at once (the window stages; the tray does not)."""

        def done(_result: Any) -> None:
            self._notify("Host networking is turning on." if on else "Host networking is off.")

        def failed(exc: Exception) -> None:
            self._notify(f"Could not change host networking: {error_text(exc)}")

        self.link.put_settings({ENABLED: on}, on_done=done, on_error=failed)

    def set_setting(self, key: str, value: Any) -> None:
        """One setting applied at once through the daemon (General's switches, the tray's
        "Use Windows containers", a banner's fix); a refusal puts the controls back."""

        def failed(exc: Exception) -> None:
            self._notify(f"Could not change {key}: {error_text(exc)}")

        self.link.put_settings(
            {key: value},
            on_done=lambda _result: self._notify(setting_notice(key, value)),
            on_error=failed,
        )

    def restart(self) -> None:
        self._notify("Restarting forwarding...")
        self.link.call(
            "POST",
            "/v1/restart",
            on_done=lambda _r: self._notify("Forwarding restarted."),
            on_error=lambda exc: self._notify(f"Restart failed: {error_text(exc)}"),
        )

    def start_daemon(self) -> None:
        paths = self.paths

        def started(proc: Any) -> None:
            self.daemon_proc = proc
            self.window.set_daemon_said("")
            self._notify("Starting the hostnet daemon...")

        self.workers.run(
            lambda: spawn_daemon(paths),
            started,
            lambda exc: self._notify(f"Could not start the daemon: {exc}"),
        )

    def _connection_changed(self, connected: bool, _message: str) -> None:
        if connected:
            self.window.set_daemon_said("")
            return
        proc = self.daemon_proc
        if proc is None or proc.poll() is None:
            return
        log = self.paths.daemon_log
        self.workers.run(
            lambda: daemon_exit_reason(read_log_tail(log)),
            self.window.set_daemon_said,
            lambda exc: None,
        )

    # -- account --------------------------------------------------------------------------------

    def sign_in(self) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            self.dialog.activateWindow()
            return
        paths = self.paths
        self.workers.run(
            lambda: load_config(paths),
            self._open_dialog,
            lambda exc: self._sign_in_unavailable(exc),
        )

    def _sign_in_unavailable(self, exc: Exception) -> None:
        self.window.account.show_notice(str(exc))
        self._notify(str(exc))

    def _open_dialog(self, config: Any) -> None:
        parent = self.window if self.window.isVisible() else None
        self.dialog = SignInDialog(self.paths, config, self.workers, parent)
        self.dialog.signed_in.connect(self._signed_in)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def _signed_in(self, outcome: Any) -> None:
        self.link.refresh_session()
        self.window.account.show_notice(getattr(outcome, "notice", ""))
        self._notify(f"Signed in as {outcome.session.user}.")

    def sign_out(self) -> None:
        paths = self.paths

        def done(outcome: Any) -> None:
            self.link.refresh_session()
            notes = " ".join(getattr(outcome, "notes", ()))
            self.window.account.show_notice(notes)
            self._notify("Signed out. Host networking is off.")

        self.workers.run(
            lambda: run_blocking(lambda: manager.logout(paths)),
            done,
            lambda exc: self._notify(f"Sign-out failed: {exc}"),
        )
