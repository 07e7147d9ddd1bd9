"""Resources > Advanced: the VM backend and its options.

The backends, their titles and their options come from the backend registry (through
``app.settings.vm_options``), so a new backend shows up here with no change. Options are
checked with the registry's schema, the same check the CLI and the daemon's API make. A change
is staged and needs "Apply & restart" (the daemon moves to the new VM when it restarts).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.gui.daemon_link import DaemonLink
from app.gui.setting_field import lock_badge, set_invalid, value_text
from app.gui.setting_lock import lock_reason
from app.gui.widgets import card, label, page_header
from app.settings.vm_options import (
    BACKEND,
    OPTIONS,
    backend_specs,
    option_error,
    options_schema,
    vm_options_error,
)

RESTART_NEEDED = "Restart needed: these changes take effect after Apply & restart."


def parse_option(prop: dict[str, Any], text: str) -> Any:
    """TEXT as the option's JSON type; left as text when it is not one (the check says why)."""
    kind = prop.get("type")
    word = text.strip()
    if kind == "integer":
        try:
            return int(word)
        except ValueError:
            return word
    if kind == "number":
        for convert in (int, float):
            try:
                return convert(word)
            except ValueError:
                pass
        return word
    return text


class OptionEditor:
    """One option of the chosen backend: a list for a fixed set, else a line of text. Empty
    (or "default") leaves the option out, so the backend's default applies."""

    def __init__(self, backend: str, name: str, prop: dict[str, Any]) -> None:
        self.backend, self.name, self.prop = backend, name, prop
        title = str(prop.get("title", name))  # the key users type in VmOptions
        self.widget: QComboBox | QLineEdit
        if prop.get("enum"):
            combo = QComboBox()
            combo.addItem("default", None)
            for option in prop["enum"]:
                combo.addItem(str(option), option)
            self.widget = combo
        else:
            line = QLineEdit()
            line.setPlaceholderText(str(prop.get("description") or "default"))
            self.widget = line
        self.description = str(prop.get("description", ""))
        self.widget.setAccessibleName(title)
        self.widget.setAccessibleDescription(self.description or f"VmOptions {name}")
        self.error_label = label("", "FieldError")
        self.error_label.setAccessibleName(f"{title}: problem")
        self.error_label.setVisible(False)
        self.error = ""

    def show(self, value: Any) -> None:
        if isinstance(self.widget, QComboBox):
            self.widget.setCurrentIndex(max(self.widget.findData(value), 0))
        else:
            self.widget.setText(value_text(value))

    def value(self) -> tuple[bool, Any]:
        """(set, value): False when left empty."""
        if isinstance(self.widget, QComboBox):
            data = self.widget.currentData()
            return data is not None, data
        text = self.widget.text()
        if not text.strip():
            return False, None
        return True, parse_option(self.prop, text)

    def check(self) -> None:
        is_set, value = self.value()
        self.error = (option_error(self.backend, self.name, value) or "") if is_set else ""
        self.error_label.setText(self.error)
        self.error_label.setVisible(bool(self.error))
        set_invalid(self.widget, bool(self.error))


class AdvancedPage(QWidget):
    staged_changed = Signal()

    def __init__(self, link: DaemonLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.link = link
        self.editors: list[OptionEditor] = []
        self._daemon_view: tuple[str, str] = ("", "")
        self.dirty = False  # the person changed something since the daemon's view was shown
        self._refreshing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 22, 28, 16)
        layout.setSpacing(10)
        page_header(
            layout,
            "Advanced",
            "Where hostnet's Linux VM runs. Changes take effect after Apply & restart.",
        )
        box, inner = card()
        row = QHBoxLayout()
        row.addWidget(label("VM backend", "SectionTitle", wrap=False))
        self.backend = QComboBox()
        self.backend.setAccessibleName("VM backend")
        for spec in backend_specs():
            self.backend.addItem(spec.title, spec.name)
        self.backend.currentIndexChanged.connect(self._backend_chosen)
        row.addWidget(self.backend)
        self.backend_lock = lock_badge()
        row.addWidget(self.backend_lock)
        row.addStretch(1)
        inner.addLayout(row)
        self.summary = label("", "Hint")
        inner.addWidget(self.summary)
        options_row = QHBoxLayout()
        options_row.addWidget(label("Options", "SectionTitle", wrap=False))
        self.options_lock = lock_badge()
        options_row.addWidget(self.options_lock)
        options_row.addStretch(1)
        inner.addLayout(options_row)
        self.options_form = QFormLayout()
        self.options_form.setHorizontalSpacing(18)
        inner.addLayout(self.options_form)
        self.no_options = label("This backend has no options.", "Hint")
        inner.addWidget(self.no_options)
        self.options_error = label("", "FieldError")
        self.options_error.setAccessibleName("VM options: problem")
        self.options_error.setVisible(False)
        inner.addWidget(self.options_error)
        self.restart_marker = label(RESTART_NEEDED, "Reason")
        self.restart_marker.setAccessibleName("Restart needed")
        self.restart_marker.setVisible(False)
        inner.addWidget(self.restart_marker)
        layout.addWidget(box)
        layout.addStretch(1)
        for signal in (link.settings_changed, link.status_changed):
            signal.connect(lambda _data: self.refresh())
        link.connection_changed.connect(lambda *_args: self.refresh())
        self.refresh(force=True)

    # -- the chosen backend and its options ------------------------------------------------------

    def chosen(self) -> str:
        return str(self.backend.currentData() or "")

    def _backend_chosen(self, _index: int) -> None:
        if self._refreshing:
            return
        backend = self.chosen()
        self._build_options(backend, self._current_options_for(backend))
        self._edited()

    def _current_options_for(self, backend: str) -> dict[str, Any]:
        current = self.link.value(OPTIONS) or {}
        if backend == self.link.value(BACKEND) and isinstance(current, dict):
            return current
        return {}

    def _build_options(self, backend: str, values: dict[str, Any]) -> None:
        while self.options_form.rowCount():
            self.options_form.removeRow(0)
        self.editors = []
        spec = next((s for s in backend_specs() if s.name == backend), None)
        self.summary.setText(spec.summary if spec else "")
        props: dict[str, Any] = options_schema(backend).get("properties", {})
        for name, prop in props.items():
            editor = OptionEditor(backend, name, prop)
            editor.show(values.get(name))
            if isinstance(editor.widget, QComboBox):
                editor.widget.currentIndexChanged.connect(lambda _i: self._edited())
            else:
                editor.widget.textEdited.connect(lambda _t: self._edited())
            cell = QVBoxLayout()
            cell.setSpacing(2)
            cell.addWidget(editor.widget)
            cell.addWidget(editor.error_label)
            title = QLabel(str(prop.get("title", name)))
            title.setBuddy(editor.widget)
            self.options_form.addRow(title, cell)
            self.editors.append(editor)
        self.no_options.setVisible(not props)
        self._apply_locks()

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for editor in self.editors:
            is_set, value = editor.value()
            if is_set:
                out[editor.name] = value
        return out

    def _edited(self) -> None:
        self.dirty = True
        for editor in self.editors:
            editor.check()
        whole = "" if self._option_errors() else (vm_options_error(self.chosen(), self.options()))
        self.options_error.setText(whole or "")
        self.options_error.setVisible(bool(whole))
        self._show_marker()
        self.staged_changed.emit()

    def _option_errors(self) -> bool:
        return any(editor.error for editor in self.editors)

    # -- staging --------------------------------------------------------------------------------

    def changes(self) -> dict[str, Any]:
        """VmBackend and VmOptions together (they are checked together), when either differs."""
        if not self.dirty or not self.is_valid():
            return {}
        backend, options = self.chosen(), self.options()
        current = self.link.value(OPTIONS) or {}
        if backend == self.link.value(BACKEND) and options == current:
            return {}
        return {BACKEND: backend, OPTIONS: options}

    def is_valid(self) -> bool:
        return not self._option_errors() and not self.options_error.text()

    def discard(self) -> None:
        self.refresh(force=True)
        self.staged_changed.emit()

    def applied(self) -> None:
        self.refresh(force=True)

    # -- the daemon's view ------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        link = self.link
        editing = self.dirty and not force
        daemon_view = (str(link.value(BACKEND) or ""), repr(link.value(OPTIONS)))
        if not editing and (force or daemon_view != self._daemon_view):
            self._daemon_view = daemon_view
            self.dirty = False
            self._refreshing = True
            try:
                self.backend.setCurrentIndex(max(self.backend.findData(daemon_view[0]), 0))
            finally:
                self._refreshing = False
            self._build_options(self.chosen(), self._current_options_for(self.chosen()))
            self.options_error.setText("")
            self.options_error.setVisible(False)
        self._apply_locks()
        self._show_marker()

    def _apply_locks(self) -> None:
        link = self.link
        known = link.connected and bool(link.settings)
        for key, badge, widgets in (
            (BACKEND, self.backend_lock, [(self.backend, "")]),
            (OPTIONS, self.options_lock, [(e.widget, e.description) for e in self.editors]),
        ):
            reason = lock_reason(link.setting(key))
            badge.setVisible(bool(reason))
            badge.setToolTip(reason)
            badge.setAccessibleName(reason or "Locked by your administrator")
            for widget, description in widgets:
                widget.setEnabled(known and not reason)
                widget.setToolTip(reason or description)

    def _show_marker(self) -> None:
        pending = bool(self.changes()) or bool(self.link.status.get("restart_pending"))
        self.restart_marker.setVisible(pending and self.link.connected)
