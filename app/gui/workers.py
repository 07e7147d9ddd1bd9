"""Run blocking work (control API calls, sign-in) on a thread pool; results come back on the
UI thread through queued signals, so the UI never waits on the daemon or the network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot


class _Relay(QObject):
    """Lives in the UI thread; the pool thread emits, the UI thread receives."""

    done = Signal(object)
    failed = Signal(object)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn = fn
        self.relay = relay
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # handed to the caller's on_error, shown to the person
            self.relay.failed.emit(exc)
        else:
            self.relay.done.emit(result)


class Workers(QObject):
    """A small pool for blocking calls; ``pending()`` counts jobs not yet reported back."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 4) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._relays: set[_Relay] = set()

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        relay = _Relay(self)
        self._relays.add(relay)

        @Slot(object)
        def finished(result: Any) -> None:
            self._relays.discard(relay)
            relay.deleteLater()
            if on_done is not None:
                on_done(result)

        @Slot(object)
        def failed(exc: Exception) -> None:
            self._relays.discard(relay)
            relay.deleteLater()
            if on_error is not None:
                on_error(exc)

        relay.done.connect(finished)
        relay.failed.connect(failed)
        self.pool.start(_Job(fn, relay))

    def pending(self) -> int:
        return len(self._relays)

    def wait(self, msecs: int = 5000) -> bool:
        return bool(self.pool.waitForDone(msecs))
