"""The delivery-log table model: newest first, loaded a page at a time as the view scrolls down.

Pages come from `DeliveryLog.query` through the bridge (never on the GUI thread); new rows arrive when the
engine publishes DeliveryLogged and are fetched with `after_id`, then inserted at the top.  A generation
counter discards answers to a filter the person has already replaced.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from desktop.bridge import EngineBridge
from desktop.widgets.common import format_size, format_time
from engine.log import LogEntry, LogFilter

Index = QModelIndex | QPersistentModelIndex

PAGE = 500

EVENT_WORDS = {
    "received": "Received", "delivered": "Delivered", "relayed": "Relayed", "deferred": "Deferred",
    "bounced": "Bounced", "rejected": "Rejected", "deleted": "Deleted", "expired": "Expired",
    "delayed": "Delayed",
}


class LogModel(QAbstractTableModel):
    TIME, EVENT, DIRECTION, SENDER, RECIPIENT, SIZE, REMOTE, DETAIL = range(8)
    HEADERS = ("Time", "Status", "Dir.", "Sender", "Recipient", "Size", "Remote host", "Details")

    loadingChanged = Signal(bool)
    totalChanged = Signal(int)
    failed = Signal(str)

    def __init__(self, bridge: EngineBridge, parent: Any = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.filter = LogFilter()
        self._rows: list[LogEntry] = []
        self._ids: set[int] = set()
        self._generation = 0
        self._loading = False
        self._exhausted = False
        self._newer_pending = False
        self._newer_again = False
        self.total = 0

    # --- what the view asks ------------------------------------------------------------------------

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
        entry = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.TIME:
                return format_time(entry.time)
            if col == self.EVENT:
                return EVENT_WORDS.get(entry.event, entry.event)
            if col == self.DIRECTION:
                return "in" if entry.direction == "in" else "out"
            if col == self.SENDER:
                return entry.sender or "<>"
            if col == self.RECIPIENT:
                return entry.recipient
            if col == self.SIZE:
                return format_size(entry.size)
            if col == self.REMOTE:
                return entry.remote_host or entry.client_ip
            if col == self.DETAIL:
                return (entry.detail or entry.remote_reply).replace("\n", " ")
        elif role == Qt.ItemDataRole.ToolTipRole and col in (self.DETAIL, self.REMOTE):
            return entry.remote_reply or entry.detail or None
        elif role == Qt.ItemDataRole.TextAlignmentRole and col == self.SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        elif role == Qt.ItemDataRole.UserRole:
            return entry
        return None

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if parent.isValid() or self._loading or self._exhausted:
            return
        log = self.bridge.engine.log
        if log is None:
            self._exhausted = True
            if self.bridge.engine.running:
                self.failed.emit("The delivery log is not available in this version.")
            return                  # not opened yet: the panel reloads when the engine starts
        self._set_loading(True)
        generation = self._generation
        query = functools.partial(log.query, self.filter, offset=len(self._rows), limit=PAGE)
        self.bridge.call(query, on_result=lambda rows: self._older_arrived(generation, rows),
                         on_error=lambda text: self._fetch_failed(generation, text), owner=self)

    # --- answers -----------------------------------------------------------------------------------

    def _set_loading(self, value: bool) -> None:
        if self._loading != value:
            self._loading = value
            self.loadingChanged.emit(value)

    def _fetch_failed(self, generation: int, text: str) -> None:
        if generation == self._generation:
            self._set_loading(False)
            self._exhausted = True
            self.failed.emit(text)

    def _older_arrived(self, generation: int, rows: list[LogEntry]) -> None:
        if generation != self._generation:
            return
        if len(rows) < PAGE:
            self._exhausted = True
        # Rows inserted at the top meanwhile shift the offset: an overlap, removed here by id.
        fresh = [r for r in rows if r.id not in self._ids]
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            self._ids.update(r.id for r in fresh)
            self.endInsertRows()
        self._set_loading(False)

    def fetch_newer(self) -> None:
        """New rows were logged: fetch those above the newest shown (one request in flight at a time)."""
        log = self.bridge.engine.log
        if log is None:
            return
        if self._newer_pending:
            self._newer_again = True
            return
        if not self._rows and not self._exhausted:
            return                  # the first page is still coming and will include them
        self._newer_pending = True
        generation = self._generation
        newest = max(self._ids, default=0)
        flt = replace(self.filter, after_id=newest)
        query = functools.partial(log.query, flt, limit=None)
        self.bridge.call(query, on_result=lambda rows: self._newer_arrived(generation, rows),
                         on_error=lambda text: self._newer_failed(generation, text), owner=self)
        self.refresh_total()

    def _newer_failed(self, generation: int, text: str) -> None:
        self._newer_pending = False
        if generation == self._generation:
            self.failed.emit(text)

    def _newer_arrived(self, generation: int, rows: list[LogEntry]) -> None:
        self._newer_pending = False
        if generation == self._generation:
            fresh = [r for r in rows if r.id not in self._ids]
            if fresh:
                self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
                self._rows[0:0] = fresh
                self._ids.update(r.id for r in fresh)
                self.endInsertRows()
        if self._newer_again:
            self._newer_again = False
            self.fetch_newer()

    def refresh_total(self) -> None:
        log = self.bridge.engine.log
        if log is None:
            return
        generation = self._generation
        self.bridge.call(log.count, self.filter, on_result=lambda n: self._total_arrived(generation, n),
                         on_error=self.failed.emit, owner=self)

    def _total_arrived(self, generation: int, total: int) -> None:
        if generation == self._generation:
            self.total = total
            self.totalChanged.emit(total)

    # --- what the panel does -----------------------------------------------------------------------

    def set_filter(self, flt: LogFilter) -> None:
        """Shows rows matching `flt` from the newest down; earlier answers are ignored from now on."""
        self._generation += 1
        self.beginResetModel()
        self.filter = flt
        self._rows = []
        self._ids = set()
        self._exhausted = False
        self._newer_pending = False
        self._newer_again = False
        self._set_loading(False)
        self.endResetModel()
        self.fetchMore()
        self.refresh_total()

    def entry(self, row: int) -> LogEntry | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def exhausted(self) -> bool:
        return self._exhausted
