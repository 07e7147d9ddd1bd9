"""Account: who is signed in, with which provider; sign in and sign out."""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.gui.daemon_link import DaemonLink
from app.gui.widgets import card, label, page_header
from app.signin.session import Session


def provider_text(session: Session) -> str:
    if session.provider == "docker":
        return f"Docker account at {session.server}"
    return f"OpenID Connect at {session.server}"


def user_text(session: Session) -> str:
    if session.display_name and session.display_name != session.user:
        return f"{session.display_name} ({session.user})"
    return session.user


class AccountPage(QWidget):
    sign_in_requested = Signal()
    sign_out_requested = Signal()

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
        layout.addStretch(1)
        link.session_changed.connect(lambda _s: self.refresh())
        self.refresh()

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
