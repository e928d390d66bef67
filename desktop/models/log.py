"""The delivery-log table model: newest first, loaded a page at a time as the view scrolls down.

Pages come from `DeliveryLog.query` through the bridge (never on the GUI thread); new rows arrive when the
engine publishes DeliveryLogged and are fetched with `after_id`, oldest first a page at a time, and
inserted at the top.  A generation counter discards answers to a filter the person has already replaced.

Rows are kept as plain tuples of the entry's fields, packed in the worker thread that read them: a tuple
of strings and numbers is untracked by Python's cyclic garbage collector, while 100,000 LogEntry objects
made every full collection walk them (stalls of 200-500 ms on the GUI thread, measured with gc.callbacks
in bench/gui_stall.py).  `entry(row)` rebuilds the LogEntry when someone needs it.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from desktop.bridge import EngineBridge
from desktop.widgets.common import format_size, format_time
from engine.log import LogEntry, LogFilter

Index = QModelIndex | QPersistentModelIndex

PAGE = 500

Row = tuple[Any, ...]          # LogEntry's fields in declaration order
_ID, _TIME, _EVENT, _DIRECTION = 0, 1, 2, 3
_SLOT = {f.name: i for i, f in enumerate(fields(LogEntry))}
_SENDER, _RECIPIENT, _SIZE = _SLOT["sender"], _SLOT["recipient"], _SLOT["size"]
_REMOTE_HOST, _CLIENT_IP = _SLOT["remote_host"], _SLOT["client_ip"]
_REMOTE_REPLY, _DETAIL = _SLOT["remote_reply"], _SLOT["detail"]
_NAMES = tuple(_SLOT)


def pack(entries: list[LogEntry]) -> list[Row]:
    """LogEntry objects as GC-untracked tuples (run in the worker thread, not on the GUI's)."""
    names = _NAMES
    return [tuple([getattr(e, n) for n in names]) for e in entries]


def read_page(log: Any, flt: LogFilter, offset: int, limit: int, oldest_first: bool = False) -> list[Row]:
    """One page of rows, packed; blocking (the bridge runs it in a worker thread)."""
    return pack(log.query(flt, offset=offset, limit=limit, oldest_first=oldest_first))

EVENT_WORDS = {
    "received": "Received", "delivered": "Delivered", "relayed": "Relayed", "deferred": "Deferred",
    "bounced": "Bounced", "rejected": "Rejected", "deleted": "Deleted", "expired": "Expired",
    "delayed": "Delayed",
}


class LogModel(QAbstractTableModel):
    TIME, EVENT, DIRECTION, SENDER, RECIPIENT, SIZE, REMOTE, DETAIL = range(8)
    HEADERS = ("Time", "Status", "Dir.", "Sender", "Recipient", "Size", "Remote host", "Details")
    RIGHT_ALIGNED = frozenset({SIZE})

    loadingChanged = Signal(bool)
    totalChanged = Signal(int)
    failed = Signal(str)

    def __init__(self, bridge: EngineBridge, parent: Any = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.filter = LogFilter()
        self._rows: list[Row] = []
        self._ids: set[int] = set()
        self._newest = 0                    # the largest id shown: where fetch_newer starts
        self._offset = 0                    # rows of the query's order read by older pages so far
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

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        # Qt's own index() asks rowCount() and columnCount(): two calls into Python per cell painted,
        # each taking the GIL back from the engine's threads.  This is one.
        if 0 <= row < len(self._rows) and 0 <= column < len(self.HEADERS) and not parent.isValid():
            return self.createIndex(row, column)
        return QModelIndex()

    def text(self, row_no: int, col: int) -> str:
        """What a cell shows; pure Python, so the view's delegate can ask without a round trip through Qt."""
        if not 0 <= row_no < len(self._rows):
            return ""
        row = self._rows[row_no]
        if col == self.TIME:
            return format_time(row[_TIME])
        if col == self.EVENT:
            return str(EVENT_WORDS.get(row[_EVENT], row[_EVENT]))
        if col == self.DIRECTION:
            return "in" if row[_DIRECTION] == "in" else "out"
        if col == self.SENDER:
            return str(row[_SENDER] or "<>")
        if col == self.RECIPIENT:
            return str(row[_RECIPIENT])
        if col == self.SIZE:
            return format_size(row[_SIZE])
        if col == self.REMOTE:
            return str(row[_REMOTE_HOST] or row[_CLIENT_IP])
        if col == self.DETAIL:
            return str(row[_DETAIL] or row[_REMOTE_REPLY]).replace("\n", " ")
        return ""

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row_no = index.row()
        if not 0 <= row_no < len(self._rows):
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(row_no, col)
        if role == Qt.ItemDataRole.ToolTipRole and col in (self.DETAIL, self.REMOTE):
            row = self._rows[row_no]
            return row[_REMOTE_REPLY] or row[_DETAIL] or None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in self.RIGHT_ALIGNED:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return LogEntry(*self._rows[row_no])
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
        self.bridge.call(read_page, log, self.filter, self._offset, PAGE,
                         on_result=lambda rows: self._older_arrived(generation, rows),
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

    def _older_arrived(self, generation: int, rows: list[Row]) -> None:
        if generation != self._generation:
            return
        if len(rows) < PAGE:
            self._exhausted = True
        # The next page starts where this one ended in the query's order, whatever fetch_newer put on
        # top meanwhile (rows from another process can be newer by id yet older by time: counting the
        # table's own rows as the offset would skip rows).  Rows logged meanwhile shift the order down:
        # an overlap, removed here by id.
        self._offset += len(rows)
        ids = self._ids
        fresh = [r for r in rows if r[_ID] not in ids]
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            ids.update(r[_ID] for r in fresh)
            self._newest = max(self._newest, max(r[_ID] for r in fresh))
            self.endInsertRows()
        self._set_loading(False)
        if not fresh and not self._exhausted:
            self.fetchMore()        # nothing new to show, so the view will not ask again: go on

    def fetch_newer(self) -> None:
        """New rows were logged: fetch those above the newest shown (one request in flight at a time).

        At most PAGE rows per request, oldest first; a full page asks again at once, so 100,000 rows
        written by another process arrive as 200 bounded inserts with the event loop running in between.
        """
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
        flt = replace(self.filter, after_id=self._newest)
        self.bridge.call(read_page, log, flt, 0, PAGE, True,
                         on_result=lambda rows: self._newer_arrived(generation, rows),
                         on_error=lambda text: self._newer_failed(generation, text), owner=self)

    def _newer_failed(self, generation: int, text: str) -> None:
        self._newer_pending = False
        if generation == self._generation:
            self.failed.emit(text)

    def _newer_arrived(self, generation: int, rows: list[Row]) -> None:
        self._newer_pending = False
        if generation == self._generation:
            ids = self._ids
            fresh = [r for r in reversed(rows) if r[_ID] not in ids]      # newest first, like the table
            if fresh:
                self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
                self._rows[0:0] = fresh
                ids.update(r[_ID] for r in fresh)
                self._newest = max(self._newest, max(r[_ID] for r in fresh))
                self.endInsertRows()
            if len(rows) == PAGE:
                self._newer_again = True            # more are waiting: the next page at once
            else:
                self.refresh_total()
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
        self._newest = 0
        self._offset = 0
        self._exhausted = False
        self._newer_pending = False
        self._newer_again = False
        self._set_loading(False)
        self.endResetModel()
        self.fetchMore()
        self.refresh_total()

    def entry(self, row: int) -> LogEntry | None:
        return LogEntry(*self._rows[row]) if 0 <= row < len(self._rows) else None

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def exhausted(self) -> bool:
        return self._exhausted
