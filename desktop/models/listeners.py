"""The dashboard's listener table: one row per service, with its address and state in words."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from engine.runtime import ListenerState

Index = QModelIndex | QPersistentModelIndex

SERVICE_NAMES = {
    "smtp": "SMTP (incoming mail)",
    "submission": "Submission (STARTTLS)",
    "submissions": "Submission (TLS)",
    "imap": "IMAP",
    "imaps": "IMAP (TLS)",
    "pop3": "POP3",
    "pop3s": "POP3 (TLS)",
}

STATE_WORDS = {
    "running": "Running",
    "failed": "Failed",
    "off": "Off",
    "stopped": "Stopped",
    "unavailable": "Not available",
    "starting": "Starting",
}

STATE_COLOURS = {"running": QColor(46, 160, 67), "failed": QColor(215, 58, 73)}


class ListenersModel(QAbstractTableModel):
    SERVICE, ADDRESS, STATE, REASON = range(4)
    HEADERS = ("Service", "Address", "State", "Details")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[ListenerState] = []

    def set_states(self, states: list[ListenerState]) -> None:
        self.beginResetModel()
        self._rows = [s for s in states if s.state != "off"]
        self.endResetModel()

    def states(self) -> list[ListenerState]:
        return list(self._rows)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.HEADERS):
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.SERVICE:
                return SERVICE_NAMES.get(row.service, row.service)
            if col == self.ADDRESS:
                return row.address
            if col == self.STATE:
                return STATE_WORDS.get(row.state, row.state)
            if col == self.REASON:
                return row.reason
        if role == Qt.ItemDataRole.ToolTipRole and col == self.REASON and row.reason:
            return row.reason
        if role == Qt.ItemDataRole.ForegroundRole and col == self.STATE:
            return STATE_COLOURS.get(row.state)
        return None
