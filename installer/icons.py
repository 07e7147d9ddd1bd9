"""The app icon for the hicolor theme: the SVG as ``scalable``, and PNGs rendered from it."""

from __future__ import annotations

from pathlib import Path

PNG_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg: Path, size: int, target: Path) -> None:
    """Render ``svg`` to a ``size``x``size`` PNG with Qt's SVG renderer (no display needed)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG icon")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(target)):  # PNG, from the suffix
        raise OSError(f"cannot write the icon {target}")


def install_hicolor_icons(svg: Path, share_icons: Path, name: str = "hostnet") -> list[Path]:
    """Lay out ``share_icons/hicolor/{scalable,NxN}/apps/<name>.{svg,png}``; return the files."""
    written = []
    scalable = share_icons / "hicolor" / "scalable" / "apps" / f"{name}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    scalable.write_bytes(svg.read_bytes())
    written.append(scalable)
    for size in PNG_SIZES:
        png = share_icons / "hicolor" / f"{size}x{size}" / "apps" / f"{name}.png"
        render_png(svg, size, png)
        written.append(png)
    return written
