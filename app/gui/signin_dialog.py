"""The sign-in dialog: a Docker account (username and token), or the organisation's OpenID
Connect sign-in in the browser, with a device code as the fallback. Errors show inline."""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.icons import icon
from app.gui.widgets import label, link_label
from app.gui.workers import Workers
from app.paths import Paths
from app.signin import manager
from app.signin.cancel import run_blocking
from app.signin.config import SignInConfig
from app.signin.errors import SignInCancelled, SignInError
from app.signin.oidc import DeviceCode


class _FlowRelay(QObject):
    """Carries what a running flow asks for (a browser page, a device code) to the UI thread."""

    open_url = Signal(str)
    device_code = Signal(object)


class SignInDialog(QDialog):
    signed_in = Signal(object)  # LoginOutcome

    def __init__(
        self, paths: Paths, config: SignInConfig, workers: Workers, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.paths, self.config, self.workers = paths, config, workers
        self.cancel_event: threading.Event | None = None
        self.outcome: Any = None
        self.device_code: DeviceCode | None = None
        self.device_page = ""
        self.relay = _FlowRelay(self)
        self.relay.open_url.connect(self._browser_opened)
        self.relay.device_code.connect(self._show_device_code)
        self.setWindowTitle("Sign in to hostnet")
        self.setWindowIcon(icon("hostnet"))
        self.setAccessibleName("Sign in to hostnet")
        self.setMinimumWidth(440)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 18)
        layout.setSpacing(10)
        layout.addWidget(label("Sign in", "PageTitle"))
        layout.addWidget(label("Host networking needs a signed-in account.", "PageIntro"))

        provider_row = QHBoxLayout()
        self.docker_choice = QRadioButton("Docker account")
        self.docker_choice.setAccessibleName("Sign in with a Docker account")
        self.oidc_choice = QRadioButton("Organisation (OpenID Connect)")
        self.oidc_choice.setAccessibleName("Sign in with your organisation")
        group = QButtonGroup(self)
        group.addButton(self.docker_choice)
        group.addButton(self.oidc_choice)
        provider_row.addWidget(self.docker_choice)
        provider_row.addWidget(self.oidc_choice)
        provider_row.addStretch(1)
        layout.addLayout(provider_row)
        self.provider_lock = label("", "Hint")
        self.provider_lock.setVisible(False)
        layout.addWidget(self.provider_lock)

        self.pages = QStackedWidget()
        self.pages.addWidget(self._docker_page())
        self.pages.addWidget(self._oidc_page())
        layout.addWidget(self.pages)

        self.error = label("", "FieldError")
        self.error.setAccessibleName("Sign-in error")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setVisible(False)
        layout.addWidget(self.error)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumHeight(6)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Signing in")
        self.progress.setVisible(False)
        layout.addWidget(self.progress)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.submit = QPushButton("Sign in")
        self.submit.setAccessibleName("Sign in")
        self.submit.setProperty("primary", True)
        self.submit.setDefault(True)
        self.submit.clicked.connect(self.start)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.submit)
        layout.addLayout(buttons)

        self.docker_choice.toggled.connect(self._provider_changed)
        (self.oidc_choice if config.provider == "oidc" else self.docker_choice).setChecked(True)
        self._provider_changed()
        if "SignInProvider" in config.locked:
            self.docker_choice.setEnabled(config.provider == "docker")
            self.oidc_choice.setEnabled(config.provider == "oidc")
            self.provider_lock.setText("Your administrator chose the sign-in provider.")
            self.provider_lock.setVisible(True)

    # -- pages ----------------------------------------------------------------------------------

    def _docker_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 6, 0, 0)
        form.setVerticalSpacing(8)
        self.username = QLineEdit()
        self.username.setAccessibleName("Docker username")
        self.username.setPlaceholderText("Docker ID")
        self.token = QLineEdit()
        self.token.setAccessibleName("Password or personal access token")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Password or personal access token")
        form.addRow("Username", self.username)
        form.addRow("Token", self.token)
        form.addRow("", label(f"Checked against {self.config.registry}", "Hint"))
        return page

    def _oidc_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 6, 0, 0)
        where = self.config.issuer or "no issuer set (OidcIssuer)"
        layout.addWidget(label(f"Sign in with {where} in your browser.", "Hint"))
        self.device_link = link_label('<a href="device">Use a code on another device instead</a>')
        self.device_link.setAccessibleName("Use a code on another device instead")
        self.device_link.linkActivated.connect(lambda _h: self.start(device=True))
        layout.addWidget(self.device_link)
        self.browser_note = label("", "Hint")
        self.browser_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.browser_note.setVisible(False)
        layout.addWidget(self.browser_note)
        self.code_box = QWidget()
        code_layout = QVBoxLayout(self.code_box)
        code_layout.setContentsMargins(0, 4, 0, 0)
        self.code_where = label("", "Hint")
        self.code_where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        code_layout.addWidget(self.code_where)
        self.code = label("", "DeviceCode", wrap=False)
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.code.setAccessibleName("Device code")
        code_layout.addWidget(self.code)
        row = QHBoxLayout()
        self.copy_code = QPushButton("Copy code")
        self.copy_code.setAccessibleName("Copy the device code")
        self.copy_code.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.code.text())
        )
        self.open_page = QPushButton("Open the page")
        self.open_page.setAccessibleName("Open the device sign-in page")
        self.open_page.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl(self.device_page)) if self.device_page else None
        )
        row.addWidget(self.copy_code)
        row.addWidget(self.open_page)
        row.addStretch(1)
        code_layout.addLayout(row)
        self.code_box.setVisible(False)
        layout.addWidget(self.code_box)
        return page

    def _provider_changed(self) -> None:
        docker = self.docker_choice.isChecked()
        self.pages.setCurrentIndex(0 if docker else 1)
        self.submit.setText("Sign in" if docker else "Continue in browser")
        self.submit.setAccessibleName(self.submit.text())
        self.show_error("")

    # -- running a flow -------------------------------------------------------------------------

    def busy(self) -> bool:
        return self.cancel_event is not None

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        for widget in (self.submit, self.docker_choice, self.oidc_choice, self.username):
            widget.setEnabled(not busy)
        self.token.setEnabled(not busy)
        self.device_link.setEnabled(not busy)
        if not busy and "SignInProvider" in self.config.locked:
            self.docker_choice.setEnabled(self.config.provider == "docker")
            self.oidc_choice.setEnabled(self.config.provider == "oidc")

    def start(self, device: bool = False) -> None:
        if self.busy():
            return
        self.show_error("")
        paths, config = self.paths, self.config
        if self.docker_choice.isChecked():
            username, secret = self.username.text().strip(), self.token.text()
            if not username or not secret:
                self.show_error("Enter your Docker username and a password or access token.")
                (self.username if not username else self.token).setFocus()
                return

            def flow() -> Any:
                return manager.login_docker(paths, username, secret, registry=config.registry)

        else:
            if not config.issuer or not config.client_id:
                self.show_error(
                    "No OpenID Connect issuer or client ID is set. Set OidcIssuer and "
                    "OidcClientId (`hostnet settings set OidcIssuer https://...`), or ask your "
                    "administrator."
                )
                return
            relay = self.relay
            if device:

                def flow() -> Any:
                    return manager.login_oidc_device(
                        paths,
                        issuer=config.issuer,
                        client_id=config.client_id,
                        on_code=relay.device_code.emit,
                    )

            else:

                def flow() -> Any:
                    return manager.login_oidc(
                        paths,
                        issuer=config.issuer,
                        client_id=config.client_id,
                        open_browser=relay.open_url.emit,
                    )

        cancel = threading.Event()
        self.cancel_event = cancel
        self._set_busy(True)
        self.workers.run(lambda: run_blocking(flow, cancel), self._done, self._failed)

    def _done(self, outcome: Any) -> None:
        self.cancel_event = None
        self._set_busy(False)
        self.outcome = outcome
        self.token.clear()
        self.signed_in.emit(outcome)
        self.accept()

    def _failed(self, exc: Exception) -> None:
        cancelled = self.cancel_event is not None and self.cancel_event.is_set()
        self.cancel_event = None
        self._set_busy(False)
        self.code_box.setVisible(False)
        self.browser_note.setVisible(False)
        if cancelled or isinstance(exc, SignInCancelled):
            return
        if isinstance(exc, SignInError):
            self.show_error(str(exc))
        else:
            self.show_error(f"Sign-in failed unexpectedly: {exc}. Try again.")
        if self.docker_choice.isChecked():
            self.token.setFocus()
            self.token.selectAll()

    def _browser_opened(self, url: str) -> None:
        QDesktopServices.openUrl(QUrl(url))
        self.browser_note.setText(
            "Finish signing in in your browser. If it did not open, visit:\n" + url
        )
        self.browser_note.setVisible(True)

    def _show_device_code(self, code: DeviceCode) -> None:
        self.device_code = code
        where = code.verification_uri_complete or code.verification_uri
        self.code_where.setText(f"On any device, visit {code.verification_uri} and enter:")
        self.code.setText(code.user_code)
        self.device_page = where
        self.code_box.setVisible(True)

    def cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
        self.reject()

    def reject(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
        super().reject()
