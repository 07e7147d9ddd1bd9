"""General: what the daemon is doing right now, and where its files are."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.engine.status_text import engine_summary
from app.gui.daemon_link import DaemonLink
from app.gui.widgets import card, label, page_header

STATE_WORDS = {
    "on": "Host networking is on",
    "off": "Host networking is off",
    "refused": "Host networking is refused",
    "error": "Host networking has a problem",
    "lost": "The hostnet daemon is not running",
}


class GeneralPage(QWidget):
    restart_requested = Signal()

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
        layout.addStretch(1)
        link.status_changed.connect(lambda _s: self.refresh())
        link.connection_changed.connect(lambda *_a: self.refresh())
        link.settings_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        link = self.link
        status = link.status if link.connected else {}
        self.headline.setText(STATE_WORDS.get(link.state, link.state))
        self.message.setText(
            str(status.get("message", "")) if link.connected else link.lost_message
        )
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
