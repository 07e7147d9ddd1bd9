"""Banners at the top of the window: what is wrong, and the fix, with an optional action."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.gui.icons import icon


class Banner(QFrame):
    def __init__(
        self,
        kind: str,
        title: str,
        body: str = "",
        fix: str = "",
        action: tuple[str, Callable[[], None]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setProperty("kind", kind)
        self.kind, self.title, self.body, self.fix = kind, title, body, fix
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(10)
        badge = QLabel()
        badge.setPixmap(icon(f"banner-{kind}").pixmap(20, 20))
        badge.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(badge)
        text = QVBoxLayout()
        text.setSpacing(2)
        heading = QLabel(title)
        heading.setObjectName("BannerTitle")
        heading.setWordWrap(True)
        text.addWidget(heading)
        for line in (body, f"Fix: {fix}" if fix else ""):
            if line:
                label = QLabel(line)
                label.setWordWrap(True)
                label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                text.addWidget(label)
        layout.addLayout(text, 1)
        self.button: QPushButton | None = None
        if action is not None:
            self.button = QPushButton(action[0])
            self.button.setAccessibleName(action[0])
            self.button.clicked.connect(action[1])
            layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.setAccessibleName(f"{title}. {body} {('Fix: ' + fix) if fix else ''}".strip())
        self.setAccessibleDescription(fix)

    def text(self) -> str:
        fix = f"Fix: {self.fix}" if self.fix else ""
        return " ".join(part for part in (self.title, self.body, fix) if part)


class BannerArea(QWidget):
    """A column of banners replaced as a whole each time the state changes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(8)
        self.banners: list[Banner] = []
        self.setVisible(False)

    def show_banners(self, banners: list[Banner]) -> None:
        key = [(b.kind, b.text()) for b in banners]
        if key == [(b.kind, b.text()) for b in self.banners]:
            for banner in banners:
                banner.deleteLater()
            return
        for old in self.banners:
            self._layout.removeWidget(old)
            old.deleteLater()
        self.banners = banners
        for banner in banners:
            self._layout.addWidget(banner)
        self.setVisible(bool(banners))
