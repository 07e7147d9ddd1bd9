"""``hostnet`` with no arguments: start the daemon if none runs, then the desktop app."""

from __future__ import annotations

import signal
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """The GUI has no subcommand; app.cli calls ``run_gui`` when no command is given."""


def run_gui() -> int:
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:
        print(
            f"hostnet: the desktop app needs PySide6 ({exc}). Install it with "
            "`pip install PySide6-Essentials`, or use the CLI: `hostnet --help`.",
            file=sys.stderr,
        )
        return 1
    from app.gui.controller import Controller
    from app.gui.daemon_start import ensure_daemon
    from app.gui.theme import apply_theme
    from app.paths import user_paths

    paths = user_paths()
    try:
        proc = ensure_daemon(paths)
    except OSError as exc:
        print(f"hostnet: cannot start the daemon: {exc}. Try `hostnet daemon`.", file=sys.stderr)
        proc = None
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if not isinstance(app, QApplication):
        return 1
    app.setApplicationName("hostnet")
    app.setApplicationDisplayName("hostnet")
    app.setDesktopFileName("hostnet")
    app.setQuitOnLastWindowClosed(False)
    apply_theme(app)
    controller = Controller(paths, daemon_proc=proc)
    controller.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_a: controller.quit())
    # Python handles signals only when it runs; a timer lets Ctrl+C in the terminal work.
    from PySide6.QtCore import QTimer

    tick = QTimer()
    tick.start(300)
    tick.timeout.connect(lambda: None)
    status = app.exec()
    controller.shutdown()
    return int(status)
