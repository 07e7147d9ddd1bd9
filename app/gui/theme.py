"""The look: Fusion with a light palette and one stylesheet, close to Docker Desktop's."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from app.gui.icons import icon_path

ACCENT = "#1d63ed"
TEXT = "#1f2430"
MUTED = "#5c6577"
BORDER = "#dfe3ea"
WINDOW = "#f5f6f8"
SURFACE = "#ffffff"


def _url(name: str) -> str:
    return icon_path(name).as_posix()


def stylesheet() -> str:
    return f"""
QWidget {{ color: {TEXT}; }}
QMainWindow, QDialog {{ background: {WINDOW}; }}
#Sidebar {{ background: {WINDOW}; border: none; padding: 8px 6px; outline: 0; }}
#Sidebar::item {{ padding: 7px 8px; border-radius: 6px; margin: 1px 0; }}
#Sidebar::item:selected {{ background: #e3ebfd; color: {ACCENT}; }}
#Sidebar::item:hover:!selected {{ background: #eceef2; }}
#Sidebar::branch, #Sidebar::branch:selected {{ background: transparent; border: none; }}
#Sidebar {{ show-decoration-selected: 0; }}
#PageScroll, #PageScroll > QWidget > QWidget {{ background: {SURFACE}; }}
#MenuButton {{ border: 1px solid transparent; border-radius: 6px; padding: 4px; }}
#MenuButton:hover {{ background: #eceef2; }}
#MenuButton:focus {{ border: 2px solid {ACCENT}; }}
#MenuButton::menu-indicator {{ image: none; width: 0; }}
#Content {{ background: {SURFACE}; border-left: 1px solid {BORDER}; }}
#PageTitle {{ font-size: 17pt; font-weight: 600; }}
#PageIntro, .Muted, #Muted {{ color: {MUTED}; }}
#SectionTitle {{ font-size: 11pt; font-weight: 600; }}
#Card {{ background: {SURFACE}; border: 1px solid {BORDER}; border-radius: 8px; }}
#Hint {{ color: {MUTED}; }}
#Reason {{ color: #9a5b00; }}
#FieldError {{ color: #c62828; }}
#Footer {{ background: {WINDOW}; border-top: 1px solid {BORDER}; }}
#StatusPill {{ border-radius: 10px; padding: 2px 10px; font-weight: 600; }}
#StatusPill[state="on"] {{ background: #dcf3e6; color: #126b3b; }}
#StatusPill[state="off"] {{ background: #eceef2; color: #4a5263; }}
#StatusPill[state="refused"] {{ background: #fff1d6; color: #8a5200; }}
#StatusPill[state="error"], #StatusPill[state="lost"] {{ background: #fde3e3; color: #a32020; }}
#UserChip {{ color: {MUTED}; }}
QPushButton {{
  background: {SURFACE}; border: 1px solid #c5ccd8; border-radius: 6px;
  padding: 6px 14px; min-height: 18px;
}}
QPushButton:hover {{ background: #f0f3f8; }}
QPushButton:focus {{ border: 2px solid {ACCENT}; padding: 5px 13px; }}
QPushButton:disabled {{ color: #9aa3b2; background: #f3f4f7; border-color: #dde1e8; }}
QPushButton[primary="true"] {{ background: {ACCENT}; color: white; border-color: {ACCENT}; }}
QPushButton[primary="true"]:hover {{ background: #1651c4; }}
QPushButton[primary="true"]:focus {{ border: 2px solid #0b3a94; }}
QPushButton[primary="true"]:disabled {{
  background: #a9c1f2; border-color: #a9c1f2; color: #f4f6fa;
}}
QLineEdit {{
  border: 1px solid #c5ccd8; border-radius: 6px; padding: 6px 8px; background: {SURFACE};
  selection-background-color: {ACCENT};
}}
QLineEdit:focus {{ border: 2px solid {ACCENT}; padding: 5px 7px; }}
QLineEdit:disabled {{ background: #f3f4f7; color: #8790a0; }}
QLineEdit[invalid="true"] {{ border: 2px solid #d63a3a; padding: 5px 7px; }}
QCheckBox#Toggle {{ spacing: 12px; font-weight: 600; }}
QCheckBox#Toggle::indicator {{ width: 44px; height: 24px; }}
QCheckBox#Toggle::indicator:unchecked {{ image: url({_url("toggle-off")}); }}
QCheckBox#Toggle::indicator:checked {{ image: url({_url("toggle-on")}); }}
QCheckBox#Toggle::indicator:unchecked:disabled {{ image: url({_url("toggle-off-disabled")}); }}
QCheckBox#Toggle::indicator:checked:disabled {{ image: url({_url("toggle-on-disabled")}); }}
QCheckBox#Toggle:focus {{ color: {ACCENT}; }}
QCheckBox:disabled {{ color: #8790a0; }}
QTableView {{
  border: 1px solid {BORDER}; border-radius: 8px; gridline-color: transparent;
  background: {SURFACE}; alternate-background-color: #f8f9fb;
  selection-background-color: #e3ebfd; selection-color: {TEXT};
}}
QTableView:focus {{ border: 1px solid {ACCENT}; }}
QHeaderView::section {{
  background: {SURFACE}; border: none; border-bottom: 1px solid {BORDER};
  padding: 6px 8px; font-weight: 600; color: {MUTED};
}}
#Banner {{ border-radius: 8px; }}
QScrollBar:vertical {{ width: 10px; background: transparent; margin: 2px; }}
QScrollBar::handle:vertical {{ background: #c5ccd8; border-radius: 3px; min-height: 30px; }}
QScrollBar::handle:vertical:hover {{ background: #9aa3b2; }}
QScrollBar::add-line, QScrollBar::sub-line {{ height: 0; width: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
#Banner[kind="error"] {{ background: #fdecec; border: 1px solid #f3b9b9; }}
#Banner[kind="warning"] {{ background: #fff5e0; border: 1px solid #f2d18f; }}
#Banner[kind="info"] {{ background: #e8f0fe; border: 1px solid #b8cdf8; }}
#Banner[kind="success"] {{ background: #e3f6ec; border: 1px solid #a8dcbf; }}
#BannerTitle {{ font-weight: 600; }}
#DeviceCode {{ font-size: 20pt; font-weight: 700; letter-spacing: 4px; }}
QRadioButton {{ spacing: 8px; }}
QLabel a {{ color: {ACCENT}; }}
QToolTip {{ background: #1f2430; color: white; border: none; padding: 4px 6px; }}
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(WINDOW))
    palette.setColor(QPalette.ColorRole.Base, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f8f9fb"))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Button, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.Link, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor("#9aa3b2"))
    app.setPalette(palette)
    font = QFont(app.font())
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(stylesheet())
