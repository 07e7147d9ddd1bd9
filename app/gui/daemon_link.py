"""The GUI's view of the daemon: status, ports and settings kept current from the event
stream, and control API calls made on the worker pool. Only the UI thread touches it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.control_client import ControlClient
from app.gui.event_stream import EventStream
from app.gui.workers import Workers
from app.paths import Paths
from app.signin.session import Session
from app.signin.state import current_session

PortKey = tuple[str, str, int, str, str]


def port_key(entry: dict[str, Any]) -> PortKey:
    return (
        str(entry.get("direction", "")),
        str(entry.get("proto", "")),
        int(entry.get("port", 0)),
        str(entry.get("host_address", "")),
        str(entry.get("vm_address", "")),
    )


def _port_order(key: PortKey) -> tuple[int, int, str, str, str]:
    """VM ports on the host first (the feature people look for), then by port."""
    direction, proto, port, host, vm = key
    return (0 if direction == "vm-to-host" else 1, port, proto, host, vm)


class DaemonLink(QObject):
    """Signals: ``status_changed``, ``ports_changed``, ``settings_changed``,
    ``connection_changed(connected, message)`` and ``session_changed``."""

    status_changed = Signal(dict)
    ports_changed = Signal(list)
    settings_changed = Signal(dict)
    connection_changed = Signal(bool, str)
    session_changed = Signal(object)

    def __init__(self, paths: Paths, workers: Workers, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.workers = workers
        self.client = ControlClient(paths.control_socket, timeout=30.0)
        self.connected = False
        self.lost_message = "connecting to the hostnet daemon..."
        self.status: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
        self.session: Session | None = None
        self._ports: dict[PortKey, dict[str, Any]] = {}
        self._stream: EventStream | None = None
        # Values asked for and not yet answered: key -> (the asking PUT's number, value).
        self._asked: dict[str, tuple[int, Any]] = {}
        self._puts = 0

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh_session()
        stream = EventStream(self.paths.control_socket)
        stream.event.connect(self._on_event)
        stream.connected.connect(self._on_connected)
        stream.lost.connect(self._on_lost)
        self._stream = stream
        stream.start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.wait(3000)
            self._stream = None

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """on, off, refused, error; "lost" while no daemon answers."""
        if not self.connected:
            return "lost"
        return str(self.status.get("state", "off"))

    def ports(self) -> list[dict[str, Any]]:
        return [self._ports[key] for key in sorted(self._ports, key=_port_order)]

    def setting(self, key: str) -> dict[str, Any]:
        """KEY's entry as the daemon last said, with the value asked for while a change of
        it is on its way: a status event that comes meanwhile must not put a switch back."""
        entry = self.settings.get("settings", {}).get(key)
        entry = entry if isinstance(entry, dict) else {}
        if key in self._asked and entry:
            return {**entry, "value": self._asked[key][1]}
        return entry

    def value(self, key: str, default: Any = None) -> Any:
        return self.setting(key).get("value", default)

    def locked(self, key: str) -> bool:
        return bool(self.setting(key).get("locked", False))

    # -- calls ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """One control API call on the worker pool; the callbacks run on the UI thread."""
        client = self.client
        self.workers.run(lambda: client.call(method, path, body), on_done, on_error)

    def put_settings(
        self,
        changes: dict[str, Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Send CHANGES at once; the link shows them until the daemon answers. A refusal
        (or a lost daemon) asks the daemon again, so every control shows its truth."""
        self._puts += 1
        number = self._puts
        for key, value in changes.items():
            self._asked[key] = (number, value)
        self.settings_changed.emit(self.settings)

        def answered() -> None:
            for key in changes:
                if key in self._asked and self._asked[key][0] == number:  # not a later ask's
                    del self._asked[key]

        def done(result: Any) -> None:
            answered()
            self._take_answer(result)
            on_done(result)

        def failed(exc: Exception) -> None:
            answered()
            self.settings_changed.emit(self.settings)
            self.refresh_settings()
            on_error(exc)

        self.call("PUT", "/v1/settings", changes, on_done=done, on_error=failed)

    def refresh_settings(self) -> None:
        self.call("GET", "/v1/settings", on_done=self._set_settings, on_error=lambda exc: None)

    def _take_answer(self, put_result: Any) -> None:
        """A settings PUT answers with the settings now in effect; without them, ask again."""
        if isinstance(put_result, dict) and isinstance(put_result.get("settings"), dict):
            self._set_settings(put_result["settings"])
        else:
            self.refresh_settings()

    def refresh_session(self) -> None:
        paths = self.paths
        self.workers.run(lambda: current_session(paths), self._set_session, lambda exc: None)

    # -- events -----------------------------------------------------------------------------

    def _on_connected(self) -> None:
        self.refresh_settings()

    def _on_lost(self, message: str) -> None:
        was = self.connected
        self.connected = False
        self.lost_message = message
        self.settings.pop("revision", None)  # a new daemon counts its revisions from 1 again
        if was or not self.status:
            self._ports.clear()
            self.ports_changed.emit([])
        self.connection_changed.emit(False, message)

    def _on_event(self, kind: str, data: Any) -> None:
        if kind == "status" and isinstance(data, dict):
            if not self.connected:
                self.connected = True
                self.connection_changed.emit(True, "")
            before = self.status.get("signed_in")
            self.status = data
            if before is not None and before != data.get("signed_in"):
                self.refresh_session()
            self.status_changed.emit(data)
        elif kind == "ports" and isinstance(data, list):
            self._replace_ports(data)
        elif kind == "port" and isinstance(data, dict):
            key = port_key(data)
            if data.get("state") == "removed":
                self._ports.pop(key, None)
            else:
                self._ports[key] = data
            self.ports_changed.emit(self.ports())
        elif kind == "settings" and isinstance(data, dict):
            self._set_settings(data)
        elif kind == "resync":
            self.call("GET", "/v1/status", on_done=lambda s: self._on_event("status", s))
            self.call("GET", "/v1/ports", on_done=lambda p: self._on_event("ports", p))
            self.refresh_settings()

    def _replace_ports(self, entries: list[Any]) -> None:
        self._ports = {port_key(e): e for e in entries if isinstance(e, dict)}
        self.ports_changed.emit(self.ports())

    def _set_settings(self, data: Any) -> None:
        """Settings from an event, a GET or a PUT's answer: they travel on different
        connections, so one older than what the link holds (by the daemon's revision) is
        dropped."""
        if not isinstance(data, dict):
            return
        revision, held = data.get("revision"), self.settings.get("revision")
        if isinstance(revision, int) and isinstance(held, int) and revision < held:
            return
        self.settings = data
        self.settings_changed.emit(data)

    def _set_session(self, session: Any) -> None:
        self.session = session if isinstance(session, Session) else None
        self.session_changed.emit(self.session)
