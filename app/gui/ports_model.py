"""The forwarded-ports table: one row per mirror, as the daemon reports it."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from app.engine.status_text import owner_text
from app.gui.daemon_link import port_key

COLUMNS = (
    "Direction",
    "Protocol",
    "Host address",
    "VM address",
    "State",
    "Connections",
    "Bytes in / out",
    "Owner",
)
DIRECTIONS = {"vm-to-host": "VM → host", "host-to-vm": "Host → VM"}
STATE_COLOURS = {"active": "#126b3b", "pending": "#5c6577"}
Index = QModelIndex | QPersistentModelIndex


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def state_text(entry: dict[str, Any]) -> str:
    state = str(entry.get("state", ""))
    reason = str(entry.get("reason", ""))
    return f"{state}: {reason}" if reason else state


class PortsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []

    def set_entries(self, entries: list[dict[str, Any]]) -> None:
        """Replace rows in place when the same ports are shown (keeps selection and focus)."""
        if [port_key(e) for e in entries] == [port_key(e) for e in self.entries]:
            self.entries = list(entries)
            if entries:
                self.dataChanged.emit(
                    self.index(0, 0), self.index(len(entries) - 1, len(COLUMNS) - 1)
                )
            return
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def cell(self, row: int, column: int) -> str:
        entry = self.entries[row]
        port = int(entry.get("port", 0))
        counters = entry.get("counters") or {}
        match column:
            case 0:
                return DIRECTIONS.get(str(entry.get("direction")), str(entry.get("direction")))
            case 1:
                return str(entry.get("proto", "")).upper()
            case 2:
                return address(str(entry.get("host_address", "")), port)
            case 3:
                return address(str(entry.get("vm_address", "")), port)
            case 4:
                return state_text(entry)
            case 5:
                if entry.get("proto") == "udp":
                    return f"{counters.get('udp_flows_open', 0)} flows"
                return str(counters.get("connections_open", 0))
            case 6:
                return (
                    f"{human_bytes(int(counters.get('bytes_in', 0)))} / "
                    f"{human_bytes(int(counters.get('bytes_out', 0)))}"
                )
            case _:
                return owner_text(entry.get("owner"))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return self.cell(row, column)
        entry = self.entries[row]
        if role == Qt.ItemDataRole.ToolTipRole:
            counters = entry.get("counters") or {}
            lines = [state_text(entry)]
            if counters.get("last_error"):
                lines.append(f"last error: {counters['last_error']}")
            lines.append(f"connections total: {counters.get('connections_total', 0)}")
            return "\n".join(lines)
        if role == Qt.ItemDataRole.ForegroundRole and column == 4:
            state = str(entry.get("state", ""))
            return QColor(STATE_COLOURS.get(state, "#a35a00"))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def local_port(self, row: int) -> int:
        return int(self.entries[row].get("port", 0))
