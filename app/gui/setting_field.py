"""One setting as a staged control: its editor, an admin lock badge with the lock's reason,
and the schema's own refusal (the words ``hostnet settings set`` prints) under it.

A page lists its fields in a ``FieldGroup``; the window sends every staged change in one
``PUT /v1/settings`` on "Apply & restart".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.gui.daemon_link import DaemonLink
from app.gui.icons import icon
from app.gui.setting_lock import lock_reason
from app.gui.widgets import label
from app.settings.errors import SettingValueError
from app.settings.parse import parse_value
from app.settings.schema import specs


def lock_badge() -> QLabel:
    badge = QLabel()
    badge.setPixmap(icon("lock").pixmap(14, 14))
    badge.setToolTip("Locked by your administrator")
    badge.setAccessibleName("Locked by your administrator")
    badge.setVisible(False)
    return badge


def set_invalid(widget: QWidget, invalid: bool) -> None:
    widget.setProperty("invalid", invalid)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def value_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


class SettingField(QWidget):
    """KEY's control: a check box (boolean), a list (enum) or a line of text (the rest)."""

    edited = Signal()

    def __init__(
        self,
        link: DaemonLink,
        key: str,
        title: str,
        hint: str = "",
        choices: Iterable[tuple[str, str]] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.link = link
        self.key = key
        self.spec = specs()[key]
        self.error = ""
        self.dirty = False  # the person edited it since the daemon's value was shown
        self._refreshing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        row = QHBoxLayout()
        self.editor: QCheckBox | QComboBox | QLineEdit
        if self.spec.json_type == "boolean":
            self.editor = QCheckBox(title)
            self.editor.toggled.connect(self._changed)
        else:
            row.addWidget(label(title, "FieldLabel", wrap=False))
            if self.spec.enum:
                self.editor = QComboBox()
                names = dict(choices)
                for option in self.spec.enum:
                    self.editor.addItem(names.get(option, option), option)
                self.editor.currentIndexChanged.connect(self._changed)
            else:
                self.editor = QLineEdit()
                self.editor.setPlaceholderText(value_text(self.spec.example))
                self.editor.textEdited.connect(self._changed)
        self.editor.setAccessibleName(title)
        self.editor.setAccessibleDescription(hint or self.spec.description)
        row.addWidget(self.editor, 1 if isinstance(self.editor, QLineEdit) else 0)
        self.lock = lock_badge()
        row.addWidget(self.lock)
        row.addStretch(0 if isinstance(self.editor, QLineEdit) else 1)
        layout.addLayout(row)
        self.error_label = label("", "FieldError")
        self.error_label.setAccessibleName(f"{title}: problem")
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        if hint:
            layout.addWidget(label(hint, "Hint"))

    # -- what the person typed ------------------------------------------------------------

    def typed(self) -> Any:
        """The value shown in the editor; SettingValueError when it is not acceptable."""
        editor = self.editor
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            return editor.currentData()
        return parse_value(self.spec, editor.text())

    def change(self) -> tuple[bool, Any]:
        """(True, value) when the person typed a valid value other than the daemon's."""
        if self.error or not self.dirty:
            return False, None
        try:
            value = self.typed()
        except SettingValueError:
            return False, None
        current = self.link.value(self.key)
        same = type(value) is type(current) and value == current
        return (not same), value

    def _changed(self, *_args: Any) -> None:
        if self._refreshing:
            return
        self.dirty = True
        try:
            self.typed()
        except SettingValueError as exc:
            self.error = exc.setting.message
        else:
            self.error = ""
        self.error_label.setText(self.error)
        self.error_label.setVisible(bool(self.error))
        set_invalid(self.editor, bool(self.error))
        self.edited.emit()

    # -- what the daemon says ---------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Show the daemon's value unless the person is editing this field."""
        entry = self.link.setting(self.key)
        editing = self.dirty and not force
        self._refreshing = True
        try:
            if not editing:
                self.dirty = False
                self._show(entry.get("value", self.spec.default))
                self.error = ""
                self.error_label.setVisible(False)
                set_invalid(self.editor, False)
        finally:
            self._refreshing = False
        locked = bool(entry.get("locked"))
        reason = lock_reason(entry)
        self.editor.setEnabled(self.link.connected and bool(entry) and not locked)
        self.editor.setToolTip(reason or self.spec.description)
        self.lock.setVisible(locked)
        self.lock.setToolTip(reason or "Locked by your administrator")
        self.lock.setAccessibleName(reason or "Locked by your administrator")

    def _show(self, value: Any) -> None:
        editor = self.editor
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            index = editor.findData(value)
            editor.setCurrentIndex(max(index, 0))
        else:
            editor.setText(value_text(value))


class FieldGroup:
    """The fields of one page: their staged changes, validity and refresh."""

    def __init__(self, fields: Iterable[SettingField] = ()) -> None:
        self.fields = list(fields)

    def add(self, field: SettingField) -> SettingField:
        self.fields.append(field)
        return field

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in self.fields:
            changed, value = field.change()
            if changed:
                out[field.key] = value
        return out

    def is_valid(self) -> bool:
        return not any(field.error for field in self.fields)

    def refresh(self, force: bool = False) -> None:
        for field in self.fields:
            field.refresh(force)
