"""Small building blocks shared by the pages."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget


def label(text: str, name: str = "", wrap: bool = True, parent: QWidget | None = None) -> QLabel:
    widget = QLabel(text, parent)
    if name:
        widget.setObjectName(name)
    widget.setWordWrap(wrap)
    return widget


def page_header(layout: QVBoxLayout, title: str, intro: str) -> None:
    layout.addWidget(label(title, "PageTitle"))
    if intro:
        layout.addWidget(label(intro, "PageIntro"))
    layout.addSpacing(6)


def card(parent: QWidget | None = None) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame(parent)
    frame.setObjectName("Card")
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(16, 14, 16, 14)
    layout.setSpacing(6)
    return frame, layout


def link_label(html: str, name: str = "") -> QLabel:
    """A label whose links are activated by mouse and by keyboard (Tab, then Enter)."""
    widget = label(html, name)
    widget.setTextFormat(Qt.TextFormat.RichText)
    widget.setTextInteractionFlags(
        Qt.TextInteractionFlag.LinksAccessibleByMouse
        | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
    )
    return widget


def scrolling(page: QWidget) -> QScrollArea:
    """PAGE in a frameless scroll area, so a small window scrolls instead of squeezing."""
    area = QScrollArea()
    area.setObjectName("PageScroll")
    area.setWidget(page)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return area
