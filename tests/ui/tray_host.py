"""A real system tray host for tests: Xvfb, a window manager (openbox) and tint2's panel
with its system tray, on a display of their own. tint2 waits for an EWMH window manager
before it shows its panel, hence openbox. Real clicks come from xdotool (XTEST)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TOOLS = ("Xvfb", "openbox", "tint2", "xdotool", "xprop")
TINT2_CONFIG = """\
panel_items = S
panel_size = 100% 32
panel_position = bottom center horizontal
systray_padding = 4 4 4
systray_icon_size = 24
"""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _free_display() -> int:
    number = 120
    while Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
        number += 1
    return number


def _wait(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    said = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"tray host: {what} did not come up within {timeout} s. Its log: {said}")


def _has_window(env: dict[str, str], wm_class: str) -> bool:
    found = subprocess.run(
        ["xdotool", "search", "--class", wm_class],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return found.returncode == 0 and bool(found.stdout.strip())


@contextlib.contextmanager
def tray_host() -> Iterator[dict[str, str]]:
    """An environment (DISPLAY set, Qt on xcb) whose desktop has a system tray."""
    number = _free_display()
    env = {**os.environ, "DISPLAY": f":{number}", "QT_QPA_PLATFORM": "xcb"}
    folder = Path(tempfile.mkdtemp(prefix="hostnet-tray-host-"))
    config = folder / "tint2rc"
    config.write_text(TINT2_CONFIG)
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (folder / log).open("wb")
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        procs.append(proc)
        return proc

    try:
        screen = ["-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset"]
        xvfb = start(["Xvfb", f":{number}", *screen], "x.log")
        _wait(lambda: xvfb.poll() is None and _answers(env), 20, "Xvfb", folder / "x.log")
        start(["openbox", "--sm-disable"], "openbox.log")
        _wait(lambda: _wm_check(env), 30, "openbox", folder / "openbox.log")
        start(["tint2", "-c", str(config)], "tint2.log")
        _wait(lambda: _has_window(env, "tint2"), 30, "tint2's panel", folder / "tint2.log")
        yield env
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


def _answers(env: dict[str, str]) -> bool:
    """The X server accepts clients (its socket file alone may be a stale one). Xvfb runs
    with -noreset: without it, this probe leaving would reset the server under the next
    client."""
    probe = subprocess.run(["xprop", "-root", "-len", "0"], env=env, capture_output=True)
    return probe.returncode == 0


def _wm_check(env: dict[str, str]) -> bool:
    """An EWMH window manager has announced itself on the root window."""
    found = subprocess.run(
        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return "window id" in found.stdout


def click(env: dict[str, str], x: int, y: int, button: int = 1) -> None:
    """A real pointer click at screen position X, Y (XTEST, through the X server)."""
    subprocess.run(
        ["xdotool", "mousemove", "--sync", str(x), str(y), "click", str(button)],
        env=env,
        check=True,
        timeout=10,
    )
