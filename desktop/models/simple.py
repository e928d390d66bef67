"""A small table model for short lists (accounts, aliases, DNS records): rows of display strings.

Short lists are fetched whole through the bridge and replaced in one reset; anything that can grow to
thousands of rows has its own paged model instead (log, queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

Index = QModelIndex | QPersistentModelIndex

# Text colours for status words, readable on light and dark palettes alike.
STATUS_COLOURS = {"present": QColor(46, 160, 67), "missing": QColor(215, 58, 73),
                  "different": QColor(209, 134, 22), "error": QColor(215, 58, 73),
                  "disabled": QColor(140, 140, 140)}


class RowsModel(QAbstractTableModel):
    """Rows of strings; `keys` carries each row's identity (an address, a record) for actions."""

    def __init__(self, headers: Sequence[str], status_column: int | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.headers = tuple(headers)
        self.status_column = status_column
        self._rows: list[tuple[str, ...]] = []
        self._keys: list[Any] = []
        self._tips: list[str] = []

    def set_rows(self, rows: Sequence[Sequence[str]], keys: Sequence[Any] | None = None,
                 tips: Sequence[str] | None = None) -> None:
        self.beginResetModel()
        self._rows = [tuple(str(c) for c in r) for r in rows]
        self._keys = list(keys) if keys is not None else list(range(len(rows)))
        self._tips = list(tips) if tips is not None else [""] * len(rows)
        self.endResetModel()

    def key(self, row: int) -> Any:
        return self._keys[row] if 0 <= row < len(self._keys) else None

    def keys(self) -> list[Any]:
        return list(self._keys)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.headers):
            return self.headers[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows) \
                or not 0 <= index.column() < len(self.headers):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row[index.column()] if index.column() < len(row) else ""
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tips[index.row()] or None
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == self.status_column:
            return STATUS_COLOURS.get(row[index.column()].lower())
        return None
