"""The sign-in dialog's OpenID Connect flows against the real oidc-provider: the browser flow
(the system browser is a person filling in the provider's pages, reached through Qt's own URL
handler hook) and the device code shown in the dialog and approved on "another device"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from app.gui.signin_dialog import SignInDialog
from app.gui.workers import Workers
from app.paths import Paths
from app.signin.config import SignInConfig
from app.signin.state import current_session
from tests.signin_peers.browser import Person
from tests.ui.app_harness import pump_until

CLIENT = "hostnet-desktop"


class PersonAtBrowser(QObject):
    """Receives what QDesktopServices.openUrl would give the system browser."""

    def __init__(self, person: Person) -> None:
        super().__init__()
        self.person = person
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        text = url.toString()
        self.urls.append(text)
        loopback = parse_qs(urlsplit(text).query)["redirect_uri"][0]
        threading.Thread(target=self.person.authorize, args=(text, loopback), daemon=True).start()


@pytest.fixture
def dialog(
    qapp: Any, home: Paths, oidc_issuer: str, real_keyring: object
) -> Iterator[SignInDialog]:
    workers = Workers()
    config = SignInConfig("oidc", "https://registry.invalid", oidc_issuer, CLIENT, frozenset())
    window = SignInDialog(home, config, workers)
    window.show()
    yield window
    window.reject()
    workers.wait(5000)


def test_continue_in_browser_signs_in(dialog: SignInDialog, home: Paths) -> None:
    assert dialog.oidc_choice.isChecked() and dialog.submit.text() == "Continue in browser"
    browser = PersonAtBrowser(Person("carol"))
    QDesktopServices.setUrlHandler("http", browser, "open")
    try:
        dialog.submit.click()
        pump_until(lambda: not dialog.isVisible(), 20, "the browser sign-in")
    finally:
        QDesktopServices.unsetUrlHandler("http")
    assert browser.urls and "code_challenge" in browser.urls[0]
    assert dialog.error.text() == ""
    session = current_session(home)
    assert session is not None and session.user == "carol" and session.provider == "oidc"


def test_device_code_is_shown_and_approved_elsewhere(dialog: SignInDialog, home: Paths) -> None:
    dialog.device_link.linkActivated.emit("device")
    pump_until(lambda: dialog.device_code is not None, 10, "the device code")
    code = dialog.device_code
    assert code is not None and dialog.code.text() == code.user_code
    assert dialog.code_box.isVisibleTo(dialog)
    threading.Thread(
        target=Person("erin").approve_device,
        args=(code.verification_uri, code.user_code),
        daemon=True,
    ).start()
    pump_until(lambda: not dialog.isVisible(), 20, "the device approval")
    session = current_session(home)
    assert session is not None and session.user == "erin"


def test_missing_issuer_is_an_inline_error(qapp: Any, home: Paths) -> None:
    workers = Workers()
    config = SignInConfig("oidc", "https://registry.invalid", "", "", frozenset({"SignInProvider"}))
    window = SignInDialog(home, config, workers)
    window.show()
    window.submit.click()
    assert "OidcIssuer" in window.error.text() and window.isVisible()
    assert not window.docker_choice.isEnabled()  # the administrator chose the provider
    window.reject()
