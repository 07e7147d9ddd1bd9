"""Resources > Network: the host networking toggle, its options and the forwarded ports.

Changes are staged here until "Apply & restart" (in the window's footer) sends them.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.gui.daemon_link import DaemonLink
from app.gui.ports_model import PortsModel
from app.gui.setting_field import FieldGroup, SettingField, lock_badge
from app.gui.setting_lock import lock_reason
from app.gui.toggle_gate import ENABLED, ToggleGate, toggle_gate
from app.gui.widgets import card, label, link_label, page_header
from app.settings.ports import port_range_error

EXPOSE = "HostNetworkingExposeAllInterfaces"
EXCLUDED = "HostNetworkingExcludedPorts"
UDP_IDLE = "HostNetworkingUdpIdleTimeoutSeconds"
ENGINE = "ContainerEngineEnabled"
DATA_PATH = "HostNetworkingDataPath"
DATA_PATHS = (
    ("auto", "Automatic: kernel NAT where it can, the proxy elsewhere"),
    ("kernel", "Kernel NAT rules"),
    ("proxy", "User-space proxy"),
)


def parse_ports(text: str) -> tuple[list[int | str], str]:
    """The excluded-ports list typed as "22, 8000-8010", and an error ("" when valid)."""
    items: list[int | str] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        item: int | str = int(part) if part.isdigit() else part
        error = port_range_error(item)
        if error is not None:
            return items, f"{error}. Write ports and ranges like: 22, 8000-8010"
        items.append(item)
    return items, ""


def ports_text(items: Any) -> str:
    return ", ".join(str(item) for item in items or [])


class NetworkPage(QWidget):
    staged_changed = Signal()
    sign_in_requested = Signal()

    def __init__(self, link: DaemonLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.link = link
        self.staged: dict[str, Any] = {}
        self.gate = ToggleGate(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 22, 28, 16)
        layout.setSpacing(10)
        page_header(
            layout,
            "Network",
            "Host networking makes programs listening in the VM reachable on this computer's "
            "localhost at the same port, and lets the VM reach servers on this computer's "
            "localhost. TCP and UDP, IPv4 and IPv6.",
        )

        box, inner = card()
        self.toggle = QCheckBox("Enable host networking")
        self.toggle.setObjectName("Toggle")
        self.toggle.setAccessibleName("Enable host networking")
        self.toggle.toggled.connect(lambda on: self._stage(ENABLED, on))
        inner.addWidget(self.toggle)
        self.toggle_reason = link_label("", "Reason")
        self.toggle_reason.setAccessibleName("Why host networking cannot be changed")
        self.toggle_reason.linkActivated.connect(lambda _href: self.sign_in_requested.emit())
        self.toggle_reason.setVisible(False)
        inner.addWidget(self.toggle_reason)

        inner.addSpacing(8)
        expose_row = QHBoxLayout()
        self.expose = QCheckBox("Expose forwarded ports on all host interfaces")
        self.expose.setAccessibleName("Expose forwarded ports on all host interfaces")
        self.expose.toggled.connect(lambda on: self._stage(EXPOSE, on))
        expose_row.addWidget(self.expose)
        self.expose_lock = lock_badge()
        expose_row.addWidget(self.expose_lock)
        expose_row.addStretch(1)
        inner.addLayout(expose_row)
        inner.addWidget(
            label(
                "Off: VM ports appear on 127.0.0.1 and ::1 only. On: on every interface, "
                "reachable from other machines on your network.",
                "Hint",
            )
        )

        inner.addSpacing(8)
        excluded_title = QHBoxLayout()
        excluded_label = label("Excluded ports", "SectionTitle", wrap=False)
        excluded_title.addWidget(excluded_label)
        self.excluded_lock = lock_badge()
        excluded_title.addWidget(self.excluded_lock)
        excluded_title.addStretch(1)
        inner.addLayout(excluded_title)
        self.excluded = QLineEdit()
        self.excluded.setPlaceholderText("e.g. 22, 8000-8010")
        self.excluded.setAccessibleName("Excluded ports")
        self.excluded.setAccessibleDescription("Ports never forwarded, in either direction")
        excluded_label.setBuddy(self.excluded)
        self.excluded.textEdited.connect(self._excluded_edited)
        inner.addWidget(self.excluded)
        self.excluded_error = label("", "FieldError")
        self.excluded_error.setVisible(False)
        inner.addWidget(self.excluded_error)
        inner.addWidget(
            label(
                "Never forwarded in either direction. Numbers or ranges, comma separated.", "Hint"
            )
        )
        layout.addWidget(box)

        # More network settings, each a SettingField in self.fields.
        more, self.more_layout = card()
        more.setAccessibleName("More network settings")
        self.more_layout.addWidget(label("Forwarding", "SectionTitle", wrap=False))
        self.fields = FieldGroup()
        self.add_setting(
            SettingField(
                link,
                UDP_IDLE,
                "UDP idle timeout (seconds)",
                "A UDP flow with no datagram for this long is closed.",
            )
        )
        self.add_setting(
            SettingField(
                link,
                ENGINE,
                "Run a Docker Engine in the VM",
                "Reached through the docker context 'hostnet' or `hostnet docker-env`; "
                "its containers' ports are forwarded like any VM port.",
            )
        )
        self.add_setting(
            SettingField(
                link,
                DATA_PATH,
                "Data path",
                "How forwarded IPv4 ports are carried. Kernel NAT needs the namespace VM and "
                "the daemon as root; the proxy carries ::1 and every other setup. The status "
                "says which is in use and why.",
                choices=DATA_PATHS,
            )
        )
        layout.addWidget(more)

        heading = QHBoxLayout()
        ports_title = label("Forwarded ports", "SectionTitle", wrap=False)
        heading.addWidget(ports_title)
        heading.addStretch(1)
        self.ports_count = label("", "Hint", wrap=False)
        heading.addWidget(self.ports_count)
        layout.addLayout(heading)
        self.model = PortsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Forwarded ports")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(30)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.setMinimumHeight(200)
        layout.addWidget(self.table, 1)
        self.ports_empty = label("", "Hint")
        self.ports_empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.ports_empty)

        link.settings_changed.connect(lambda _data: self.refresh())
        link.status_changed.connect(lambda _data: self.refresh())
        link.connection_changed.connect(lambda *_args: self.refresh())
        link.ports_changed.connect(self.set_ports)
        self.refresh()
        self.set_ports([])

    def add_setting(self, field: SettingField) -> SettingField:
        """Put FIELD in "More network settings": shown, locked, checked and staged like the
        rest of the page, and sent with "Apply & restart"."""
        self.fields.add(field)
        self.more_layout.addWidget(field)
        field.edited.connect(self.staged_changed.emit)
        field.refresh(force=True)
        return field

    def changes(self) -> dict[str, Any]:
        return {**self.staged, **self.fields.changes()}

    # -- staging ------------------------------------------------------------------------------

    def current(self, key: str) -> Any:
        return self.link.value(key)

    def shown(self, key: str) -> Any:
        return self.staged.get(key, self.current(key))

    def _stage(self, key: str, value: Any) -> None:
        if self._refreshing:
            return
        if value == self.current(key):
            self.staged.pop(key, None)
        else:
            self.staged[key] = value
        self.staged_changed.emit()

    def _excluded_edited(self, text: str) -> None:
        items, error = parse_ports(text)
        self.excluded_error.setText(error)
        self.excluded_error.setVisible(bool(error))
        self.excluded.setProperty("invalid", bool(error))
        self.excluded.style().unpolish(self.excluded)
        self.excluded.style().polish(self.excluded)
        if error:
            self._invalid = True
            self.staged_changed.emit()
            return
        self._invalid = False
        if items == list(self.current(EXCLUDED) or []):
            self.staged.pop(EXCLUDED, None)
        else:
            self.staged[EXCLUDED] = items
        self.staged_changed.emit()

    _invalid = False
    _refreshing = False

    def is_valid(self) -> bool:
        return not self._invalid and self.fields.is_valid()

    def discard(self) -> None:
        self.staged.clear()
        self._invalid = False
        self.excluded_error.setVisible(False)
        self.excluded.setProperty("invalid", False)
        self.excluded.style().unpolish(self.excluded)
        self.excluded.style().polish(self.excluded)
        self.refresh(force_text=True)
        self.staged_changed.emit()

    def applied(self) -> None:
        self.staged.clear()
        self.refresh(force_text=True)

    # -- showing the daemon's state -------------------------------------------------------------

    def refresh(self, force_text: bool = False) -> None:
        link = self.link
        known = bool(link.settings) and link.connected
        self.gate = toggle_gate(
            connected=link.connected, status=link.status, enabled_setting=link.setting(ENABLED)
        )
        if not self.gate.enabled:
            self.staged.pop(ENABLED, None)
        self._refreshing = True
        try:
            self.toggle.setChecked(bool(self.shown(ENABLED)))
            self.toggle.setEnabled(known and self.gate.enabled)
            self.expose.setChecked(bool(self.shown(EXPOSE)))
            self.expose.setEnabled(known and not link.locked(EXPOSE))
            user_typing = self.excluded.hasFocus() and (EXCLUDED in self.staged or self._invalid)
            if force_text or not user_typing:
                self.excluded.setText(ports_text(self.shown(EXCLUDED)))
            self.excluded.setEnabled(known and not link.locked(EXCLUDED))
        finally:
            self._refreshing = False
        for key, badge in ((EXPOSE, self.expose_lock), (EXCLUDED, self.excluded_lock)):
            reason = lock_reason(link.setting(key))
            badge.setVisible(bool(reason))
            badge.setToolTip(reason)
            badge.setAccessibleName(reason or "Locked by your administrator")
        self.fields.refresh(force_text)
        self._show_reason()

    def _show_reason(self) -> None:
        gate = self.gate
        if gate.enabled:
            self.toggle_reason.setVisible(False)
            self.toggle.setAccessibleDescription("")
            return
        text = gate.reason_text
        html = _escape(text)
        if gate.needs_sign_in:
            html += ' <a href="sign-in">Sign in to enable</a>'
            text += " Sign in to enable."
        self.toggle_reason.setText(html)
        self.toggle_reason.setAccessibleDescription(text)
        self.toggle_reason.setVisible(True)
        self.toggle.setAccessibleDescription(text)
        self.toggle.setToolTip(text)

    def set_ports(self, entries: list[dict[str, Any]]) -> None:
        self.model.set_entries(entries)
        active = sum(1 for e in entries if e.get("state") == "active")
        self.ports_count.setText(f"{active} active of {len(entries)}" if entries else "")
        if entries:
            self.ports_empty.setVisible(False)
            return
        state = self.link.state
        if state == "on":
            text = "No ports yet. Start a server in the VM and it appears here."
        elif state == "lost":
            text = "Not connected to the hostnet daemon."
        else:
            text = "Host networking is off: no ports are forwarded."
        self.ports_empty.setText(text)
        self.ports_empty.setVisible(True)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
