"""Account: who is signed in, with which provider; sign in and sign out."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.gui.daemon_link import DaemonLink
from app.gui.setting_field import FieldGroup, SettingField
from app.gui.widgets import card, label, page_header
from app.settings.errors import SettingValueError
from app.signin.session import Session


def provider_text(session: Session) -> str:
    if session.provider == "docker":
        return f"Docker account at {session.server}"
    return f"OpenID Connect at {session.server}"


def user_text(session: Session) -> str:
    if session.display_name and session.display_name != session.user:
        return f"{session.display_name} ({session.user})"
    return session.user


PROVIDER = "SignInProvider"
PROVIDER_TITLES = (("docker", "Docker account"), ("oidc", "OpenID Connect (your organisation)"))


class AccountPage(QWidget):
    """Who is signed in, and the sign-in provider's settings (staged, sent with Apply)."""

    sign_in_requested = Signal()
    sign_out_requested = Signal()
    staged_changed = Signal()

    def __init__(self, link: DaemonLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.link = link
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 22, 28, 16)
        layout.setSpacing(10)
        page_header(layout, "Account", "Turning host networking on needs a signed-in account.")
        box, inner = card()
        self.who = label("", "SectionTitle")
        inner.addWidget(self.who)
        self.detail = label("", "Hint")
        inner.addWidget(self.detail)
        self.notice = label("", "Reason")
        self.notice.setVisible(False)
        inner.addWidget(self.notice)
        buttons = QHBoxLayout()
        self.sign_in = QPushButton("Sign in...")
        self.sign_in.setAccessibleName("Sign in")
        self.sign_in.setProperty("primary", True)
        self.sign_in.clicked.connect(self.sign_in_requested.emit)
        self.sign_out = QPushButton("Sign out")
        self.sign_out.setAccessibleName("Sign out")
        self.sign_out.clicked.connect(self.sign_out_requested.emit)
        buttons.addWidget(self.sign_in)
        buttons.addWidget(self.sign_out)
        buttons.addStretch(1)
        inner.addLayout(buttons)
        layout.addWidget(box)
        layout.addWidget(self._provider_card())
        layout.addStretch(1)
        link.session_changed.connect(lambda _s: self.refresh())
        link.settings_changed.connect(lambda _s: self.refresh_fields())
        link.connection_changed.connect(lambda *_a: self.refresh_fields())
        self.refresh()
        self.refresh_fields(force=True)

    def _provider_card(self) -> QWidget:
        box, inner = card()
        inner.addWidget(label("Sign-in provider", "SectionTitle", wrap=False))
        inner.addWidget(
            label("Used by the next sign-in. Signing out and in again applies a change.", "Hint")
        )
        link = self.link
        self.provider = SettingField(link, PROVIDER, "Sign in with", choices=PROVIDER_TITLES)
        self.registry = SettingField(
            link, "DockerRegistry", "Registry", "The registry that checks a Docker account."
        )
        self.issuer = SettingField(link, "OidcIssuer", "Issuer URL", "Your OpenID Connect issuer.")
        self.client_id = SettingField(
            link, "OidcClientId", "Client ID", "The client ID registered for hostnet."
        )
        self.fields = FieldGroup([self.provider, self.registry, self.issuer, self.client_id])
        for field in self.fields.fields:
            inner.addWidget(field)
            field.edited.connect(self._edited)
        return box

    def _edited(self) -> None:
        self._show_provider_fields()
        self.staged_changed.emit()

    def _show_provider_fields(self) -> None:
        try:
            oidc = self.provider.typed() == "oidc"
        except SettingValueError:
            oidc = False
        self.registry.setVisible(not oidc)
        self.issuer.setVisible(oidc)
        self.client_id.setVisible(oidc)

    def changes(self) -> dict[str, Any]:
        return self.fields.changes()

    def is_valid(self) -> bool:
        return self.fields.is_valid()

    def discard(self) -> None:
        self.refresh_fields(force=True)
        self.staged_changed.emit()

    def applied(self) -> None:
        self.refresh_fields(force=True)

    def refresh_fields(self, force: bool = False) -> None:
        self.fields.refresh(force)
        self._show_provider_fields()

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def refresh(self) -> None:
        session = self.link.session
        if session is None:
            self.who.setText("Not signed in")
            self.detail.setText(
                "Sign in with your Docker account or your organisation's sign-in to turn on "
                "host networking. Signing out turns it off."
            )
        else:
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.expires_at))
            self.who.setText(f"Signed in as {user_text(session)}")
            remembered = "" if session.remembered else " Not remembered after a restart."
            self.detail.setText(f"{provider_text(session)}, until {until}.{remembered}")
        self.sign_in.setVisible(session is None)
        self.sign_out.setVisible(session is not None)
