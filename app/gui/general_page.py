"""General: what the daemon is doing right now, where its files are, and the two Docker
Desktop settings that refuse host networking (Enhanced Container Isolation, Windows
containers). Those two switches apply at once, so the refusal shows where they were turned on."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.status_text import engine_summary
from app.gui.daemon_link import DaemonLink
from app.gui.setting_field import lock_badge
from app.gui.setting_lock import lock_reason
from app.gui.setting_notices import LINUX_ONLY
from app.gui.widgets import card, label, page_header

STATE_WORDS = {
    "on": "Host networking is on",
    "off": "Host networking is off",
    "refused": "Host networking is refused",
    "error": "Host networking has a problem",
    "lost": "The hostnet daemon is not running",
}


STATE_DETAIL = {
    "off": "Turn it on in Resources > Network.",
    "refused": "The banner above says why, and how to fix it.",
    "error": "The banner above says what failed; restart forwarding to try again.",
}
ECI = "EnhancedContainerIsolation"
WINDOWS = "UseWindowsContainers"


def state_detail(state: str, message: str) -> str:
    """The line under the headline, never the headline again (the daemon's own message
    starts with the same words)."""
    if state in STATE_DETAIL:
        return STATE_DETAIL[state]
    headline = STATE_WORDS.get(state, "")
    if headline and message.startswith(headline):
        return message[len(headline) :].lstrip(" .:\n")
    return message


class GeneralPage(QWidget):
    restart_requested = Signal()
    setting_requested = Signal(str, object)

    def __init__(self, link: DaemonLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.link = link
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 22, 28, 16)
        layout.setSpacing(10)
        page_header(
            layout, "General", "The hostnet daemon keeps forwarding while this app is closed."
        )
        box, inner = card()
        self.headline = label("", "SectionTitle")
        inner.addWidget(self.headline)
        self.message = label("", "Hint")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        inner.addWidget(self.message)
        form = QFormLayout()
        form.setHorizontalSpacing(24)
        form.setVerticalSpacing(6)
        self.fields: dict[str, Any] = {}
        for key, title in (
            ("vm", "VM"),
            ("agent", "Guest agent"),
            ("engine", "Docker Engine"),
            ("daemon", "Daemon"),
            ("settings", "Settings file"),
            ("log", "Daemon log"),
        ):
            value = label("", wrap=True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setAccessibleName(title)
            form.addRow(label(title, "Hint", wrap=False), value)
            self.fields[key] = value
        inner.addLayout(form)
        buttons = QHBoxLayout()
        self.restart = QPushButton("Restart forwarding")
        self.restart.setAccessibleName("Restart forwarding")
        self.restart.clicked.connect(self.restart_requested.emit)
        buttons.addWidget(self.restart)
        buttons.addStretch(1)
        inner.addLayout(buttons)
        layout.addWidget(box)
        layout.addWidget(self._containers_card())
        layout.addStretch(1)
        link.status_changed.connect(lambda _s: self.refresh())
        link.connection_changed.connect(lambda *_a: self.refresh())
        link.settings_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def _containers_card(self) -> QWidget:
        box, inner = card()
        inner.addWidget(label("Containers", "SectionTitle", wrap=False))
        self.switches: dict[str, QCheckBox] = {}
        self.locks: dict[str, QLabel] = {}
        for key, title, hint in (
            (
                ECI,
                "Use Enhanced Container Isolation",
                "Keeps containers away from the host. Host networking is refused while it is on.",
            ),
            (
                WINDOWS,
                "Use Windows containers",
                "Docker Desktop's switch between Linux and Windows containers.",
            ),
        ):
            row = QHBoxLayout()
            switch = QCheckBox(title)
            switch.setAccessibleName(title)
            switch.setAccessibleDescription(hint)
            switch.toggled.connect(lambda on, k=key: self._switched(k, on))
            row.addWidget(switch)
            lock = lock_badge()
            row.addWidget(lock)
            row.addStretch(1)
            inner.addLayout(row)
            inner.addWidget(label(hint, "Hint"))
            self.switches[key] = switch
            self.locks[key] = lock
        self.linux_only = label(LINUX_ONLY, "Reason")
        self.linux_only.setAccessibleName("Linux containers only")
        self.linux_only.setVisible(False)
        inner.addWidget(self.linux_only)
        return box

    def _switched(self, key: str, on: bool) -> None:
        if self._refreshing:
            return
        self.setting_requested.emit(key, on)

    _refreshing = False

    def refresh(self) -> None:
        link = self.link
        status = link.status if link.connected else {}
        self.headline.setText(STATE_WORDS.get(link.state, link.state))
        self.message.setText(
            state_detail(link.state, str(status.get("message", "")))
            if link.connected
            else link.lost_message
        )
        self.message.setVisible(bool(self.message.text()))
        self._refreshing = True
        try:
            for key, switch in self.switches.items():
                entry = link.setting(key)
                reason = lock_reason(entry)
                switch.setChecked(bool(entry.get("value")))
                switch.setEnabled(link.connected and bool(entry) and not reason)
                switch.setToolTip(reason)
                self.locks[key].setVisible(bool(reason))
                self.locks[key].setToolTip(reason)
                self.locks[key].setAccessibleName(reason or "Locked by your administrator")
        finally:
            self._refreshing = False
        self.linux_only.setVisible(bool(link.value(WINDOWS)))
        vm = status.get("vm") or {}
        agent = status.get("agent") or {}
        self.fields["vm"].setText(
            " ".join(
                part
                for part in (
                    str(vm.get("backend") or "—"),
                    f"({vm.get('state')})" if vm.get("state") else "",
                    str(vm.get("detail") or ""),
                )
                if part
            )
        )
        self.fields["agent"].setText(
            f"{agent.get('state', '—')} {agent.get('detail', '')}".strip() if agent else "—"
        )
        self.fields["engine"].setText(engine_summary(status.get("engine")))
        self.fields["daemon"].setText(
            f"version {status['version']}, pid {status['pid']}" if status else "not running"
        )
        self.fields["settings"].setText(
            str(link.settings.get("user_file") or link.paths.settings_file)
        )
        self.fields["log"].setText(str(link.paths.daemon_log))
        self.restart.setEnabled(link.connected)
