"""The outbound-queue table model: one row per queued message, merged in place as the queue changes.

The whole list comes from `Queue.list()` through the bridge after a QueueChanged event; it is merged by
queue id (rows updated, removed and appended with the proper begin/end calls) so the selection and the
scroll position survive, and it is handed to the view a page at a time (canFetchMore/fetchMore).
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from desktop.widgets.common import format_relative, format_size

Index = QModelIndex | QPersistentModelIndex

PAGE = 200

STATUS_WORDS = {"sending": "Sending now", "deferred": "Waiting to retry", "queued": "Queued",
                "failed": "Failed", "done": "Done"}


class QueueModel(QAbstractTableModel):
    ID, SENDER, RECIPIENTS, SIZE, ATTEMPTS, NEXT, STATUS, ERROR = range(8)
    HEADERS = ("Queue id", "Sender", "Recipients", "Size", "Attempts", "Next attempt", "Status", "Last error")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[Any] = []        # engine.queue.QueueItem, in queue order
        self._shown = 0                    # rows handed to the view so far

    # --- what the view asks ------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._shown

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self._shown < len(self._items)

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if parent.isValid() or self._shown >= len(self._items):
            return
        more = min(PAGE, len(self._items) - self._shown)
        self.beginInsertRows(QModelIndex(), self._shown, self._shown + more - 1)
        self._shown += more
        self.endInsertRows()

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.HEADERS):
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self._shown:
            return None
        item = self._items[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.ID:
                return item.id
            if col == self.SENDER:
                return item.sender or "<> (bounce)"
            if col == self.RECIPIENTS:
                pending = item.pending or item.recipients
                first = ", ".join(r.address for r in pending[:2])
                return first + (f" and {len(pending) - 2} more" if len(pending) > 2 else "")
            if col == self.SIZE:
                return format_size(item.size)
            if col == self.ATTEMPTS:
                return str(item.attempts)
            if col == self.NEXT:
                if item.status == "sending":
                    return "now"
                return format_relative(item.next_attempt, time.time()) if item.next_attempt else ""
            if col == self.STATUS:
                return STATUS_WORDS.get(item.status, item.status)
            if col == self.ERROR:
                return item.last_error.replace("\n", " ")
        elif role == Qt.ItemDataRole.ToolTipRole:
            if col == self.ERROR and item.last_error:
                return item.last_error
            if col == self.RECIPIENTS:
                return "\n".join(f"{r.address}: {r.status}" + (f" — {r.last_error}" if r.last_error else "")
                                 for r in item.recipients)
        elif role == Qt.ItemDataRole.TextAlignmentRole and col in (self.SIZE, self.ATTEMPTS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        elif role == Qt.ItemDataRole.UserRole:
            return item.id
        return None

    # --- updates -----------------------------------------------------------------------------------

    def set_items(self, items: list[Any]) -> None:
        """Merges a fresh list: changed rows update, gone rows leave, new rows join at the end."""
        fresh = {item.id: item for item in items}
        # Remove rows that left the queue, from the bottom up so indexes stay valid.
        for row in range(len(self._items) - 1, -1, -1):
            if self._items[row].id not in fresh:
                if row < self._shown:
                    self.beginRemoveRows(QModelIndex(), row, row)
                    del self._items[row]
                    self._shown -= 1
                    self.endRemoveRows()
                else:
                    del self._items[row]
        # Update what stayed.
        for row, item in enumerate(self._items):
            new = fresh[item.id]
            if new != item:
                self._items[row] = new
                if row < self._shown:
                    self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))
        # New rows go to the end; the view fetches them as it needs them (the first page at once).
        known = {item.id for item in self._items}
        added = [item for item in items if item.id not in known]
        if added:
            self._items.extend(added)
        if self._shown < min(PAGE, len(self._items)):
            self.fetchMore()

    def item_ids(self) -> list[str]:
        return [item.id for item in self._items]

    def item(self, row: int) -> Any:
        return self._items[row] if 0 <= row < self._shown else None

    def total(self) -> int:
        return len(self._items)
