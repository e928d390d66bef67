"""The message list of one folder: a lazy table over `Mailbox.summaries` pages, smooth at 100,000 rows.

The model knows the folder's message count at once and fetches pages of PAGE_SIZE summaries only when the
view asks for rows it has not seen (sorted by SQLite, on the engine side, never here); pages far from
where the person is looking are forgotten again.  Searching and threading need the whole folder, so they
switch the model to a list computed off the GUI thread.  All engine calls go through the bridge and their
answers are dropped when the folder, sort or mode changed in the meantime (the generation counter).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import QApplication, QStyle

from desktop.bridge import EngineBridge
from desktop.viewer.text import one_line, tooltip
from desktop.viewer.threads import thread_order
from desktop.widgets.common import format_size
from engine.interfaces import FLAGGED, SEEN, Mailbox, MessageSummary

Index = QModelIndex | QPersistentModelIndex

PAGE_SIZE = 200
MAX_CACHED_PAGES = 40          # 8,000 summaries at most in memory in paged mode
PAGES_PER_FETCH = 3            # the most recently asked-for pages go first; older asks are dropped
REFRESH_PAGES = 6              # pages re-read on a live change (what is on screen and just around it)
MIME_TYPE = "application/x-postroom-messages"


@dataclass(frozen=True)
class Loaded:
    """One answer from the engine side."""

    total: int                                   # -1: not counted (a page fetch while scrolling)
    pages: dict[int, list[MessageSummary]]


@dataclass(frozen=True)
class Listed:
    rows: list[tuple[MessageSummary, int]]     # (summary, thread depth)


def _load_pages(mailbox: Mailbox, folder: str, pages: Sequence[int], sort: str, descending: bool,
                count: bool) -> Loaded:
    """The pages asked for; with `count`, the folder's size first (OFFSET paging costs grow with the
    offset in SQLite, so scrolling does not pay for a count as well: live changes arrive as events)."""
    total = mailbox.status(folder).messages if count else -1
    return Loaded(total, {p: mailbox.summaries(folder, p * PAGE_SIZE, PAGE_SIZE, sort, descending)
                          for p in pages if not count or p * PAGE_SIZE < max(total, 1)})


def _load_list(mailbox: Mailbox, folder: str, sort: str, descending: bool, search: str,
               threaded: bool) -> Listed:
    summaries = mailbox.summaries(folder, 0, None, sort, descending)
    if search:
        wanted = set(mailbox.search_text(folder, search))
        summaries = [s for s in summaries if s.uid in wanted]
    if threaded:
        return Listed(thread_order(summaries, newest_first=descending))
    return Listed([(s, 0) for s in summaries])


async def load_pages(mailbox: Mailbox, folder: str, pages: Sequence[int], sort: str, descending: bool,
                     count: bool = True) -> Loaded:
    return await asyncio.to_thread(_load_pages, mailbox, folder, list(pages), sort, descending, count)


async def load_list(mailbox: Mailbox, folder: str, sort: str, descending: bool, search: str,
                    threaded: bool) -> Listed:
    return await asyncio.to_thread(_load_list, mailbox, folder, sort, descending, search, threaded)


@functools.cache
def attachment_icon() -> QIcon:
    """A paper clip where the theme has one, else the style's file icon (no emoji font needed)."""
    fallback = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)
    return QIcon.fromTheme("mail-attachment", fallback)


def format_date(moment: float | None, now: float | None = None) -> str:
    """Today's mail by time of day, older mail by date."""
    if moment is None:
        return ""
    now = time.time() if now is None else now
    local, today = time.localtime(moment), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


class MessageListModel(QAbstractTableModel):
    """Rows are messages; see the module docstring for how they are fetched."""

    FLAG, ATTACHMENT, SENDER, SUBJECT, DATE, SIZE = range(6)
    HEADERS = ("★", "", "From", "Subject", "Date", "Size")
    SORT_KEYS: ClassVar[dict[int, str]] = {SENDER: "sender", SUBJECT: "subject", DATE: "date", SIZE: "size"}
    UidRole = Qt.ItemDataRole.UserRole + 1
    SummaryRole = Qt.ItemDataRole.UserRole + 2
    DepthRole = Qt.ItemDataRole.UserRole + 3

    loaded = Signal()            # a folder, sort or list finished loading (the view may restore selection)
    failed = Signal(str)         # an engine call failed, in words
    fetches = Signal(int)        # test hook: the number of pages asked of the engine so far

    def __init__(self, bridge: EngineBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.mailbox: Mailbox | None = None
        self.folder = ""
        self.sort_key = "date"
        self.descending = True
        self.search = ""
        self.threaded = False
        self._generation = 0
        self._total = 0
        self._pages: OrderedDict[int, list[MessageSummary]] = OrderedDict()
        self._list: list[tuple[MessageSummary, int]] | None = None
        self._wanted: OrderedDict[int, None] = OrderedDict()
        self._inflight: set[int] = set()
        self._refreshing = False
        self._refresh_again = False
        self.pages_fetched = 0
        self._bold = QFont()
        self._bold.setBold(True)
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush_wanted)

    # --- what is shown -------------------------------------------------------------------------------

    @property
    def listing(self) -> bool:
        """True when rows come from a computed list (search or threads) rather than SQL pages."""
        return bool(self.search) or self.threaded

    def open(self, mailbox: Mailbox | None, folder: str) -> None:
        """Shows `folder` of `mailbox` (None: shows nothing)."""
        self.mailbox = mailbox
        self.folder = folder
        self.search = ""
        self._reload()

    def set_search(self, text: str) -> None:
        text = text.strip()
        if text != self.search:
            self.search = text
            self._reload()

    def set_threaded(self, threaded: bool) -> None:
        if threaded != self.threaded:
            self.threaded = threaded
            self._reload()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        key = self.SORT_KEYS.get(column)
        if key is None:
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if (key, descending) != (self.sort_key, self.descending):
            self.sort_key, self.descending = key, descending
            self._reload()

    def _reset_to(self, total: int, pages: dict[int, list[MessageSummary]],
                  listed: list[tuple[MessageSummary, int]] | None) -> None:
        self.beginResetModel()
        self._total = total
        self._pages = OrderedDict(sorted(pages.items()))
        self._list = listed
        self._wanted.clear()
        self.endResetModel()

    def _reload(self) -> None:
        """Starts over: a new generation, so answers to older requests are ignored."""
        self._generation += 1
        self._inflight.clear()
        self._refreshing = self._refresh_again = False
        self._reset_to(0, {}, None)
        if self.mailbox is None or not self.folder:
            return
        generation = self._generation
        if self.listing:
            coro = load_list(self.mailbox, self.folder, self.sort_key, self.descending, self.search, self.threaded)
            self.bridge.submit(coro, lambda r: self._got_list(generation, r), self._failed, owner=self)
        else:
            self.pages_fetched += 1
            self.bridge.submit(load_pages(self.mailbox, self.folder, [0], self.sort_key, self.descending),
                               lambda r: self._got_first(generation, r), self._failed, owner=self)

    def _failed(self, text: str) -> None:
        self.failed.emit(text)

    def _got_first(self, generation: int, result: Loaded) -> None:
        if generation != self._generation:
            return
        self._reset_to(result.total, result.pages, None)
        self.loaded.emit()

    def _got_list(self, generation: int, result: Listed) -> None:
        if generation != self._generation:
            return
        self._reset_to(len(result.rows), {}, result.rows)
        self.loaded.emit()

    # --- lazy pages ----------------------------------------------------------------------------------

    def _summary(self, row: int) -> MessageSummary | None:
        if self._list is not None:
            return self._list[row][0] if 0 <= row < len(self._list) else None
        page_no, offset = divmod(row, PAGE_SIZE)
        page = self._pages.get(page_no)
        if page is None:
            self._want(page_no)
            return None
        self._pages.move_to_end(page_no)
        return page[offset] if offset < len(page) else None

    def _want(self, page_no: int) -> None:
        if page_no in self._inflight:
            return
        self._wanted[page_no] = None
        self._wanted.move_to_end(page_no)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _flush_wanted(self) -> None:
        """Asks for the pages most recently wanted (those on screen now), at most two requests at once."""
        if self.mailbox is None or not self._wanted or len(self._inflight) >= 2 * PAGES_PER_FETCH:
            return
        pages = list(self._wanted)[-PAGES_PER_FETCH:]
        self._wanted.clear()
        pages = [p for p in pages if p not in self._pages and p not in self._inflight]
        if not pages:
            return
        self._inflight.update(pages)
        self.pages_fetched += len(pages)
        self.fetches.emit(self.pages_fetched)
        generation = self._generation
        self.bridge.submit(load_pages(self.mailbox, self.folder, pages, self.sort_key, self.descending, False),
                           lambda r: self._got_pages(generation, pages, r), self._failed, owner=self)

    def _got_pages(self, generation: int, asked: list[int], result: Loaded) -> None:
        if generation != self._generation:
            return
        self._inflight.difference_update(asked)
        for page_no, rows in result.pages.items():
            first = page_no * PAGE_SIZE
            last = min(first + PAGE_SIZE, self._total) - 1
            if last < first:
                continue        # the folder shrank meanwhile; the refresh its event triggers sorts it out
            self._pages[page_no] = rows
            self._pages.move_to_end(page_no)
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.HEADERS) - 1))
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)
        if self._wanted:
            self._flush_timer.start()

    # --- live changes --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-reads what is on screen after a change (new mail, flags, expunges), keeping rows steady
        when nothing moved and resetting (the view restores its selection) when something did."""
        if self.mailbox is None or not self.folder:
            return
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        generation = self._generation
        if self.listing:
            coro = load_list(self.mailbox, self.folder, self.sort_key, self.descending, self.search, self.threaded)
            self.bridge.submit(coro, lambda r: self._refreshed_list(generation, r), self._refresh_failed, owner=self)
            return
        pages = list(self._pages)[-REFRESH_PAGES:] or [0]
        self.bridge.submit(load_pages(self.mailbox, self.folder, pages, self.sort_key, self.descending),
                           lambda r: self._refreshed_pages(generation, r), self._refresh_failed, owner=self)

    def _refresh_done(self) -> None:
        self._refreshing = False
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()

    def _refresh_failed(self, text: str) -> None:
        self._refresh_done()
        self.failed.emit(text)

    def _refreshed_pages(self, generation: int, result: Loaded) -> None:
        if generation != self._generation:
            return
        same_shape = result.total == self._total and all(
            [s.uid for s in rows] == [s.uid for s in self._pages.get(p, [])] for p, rows in result.pages.items())
        if same_shape:
            for page_no, rows in result.pages.items():
                old = self._pages.get(page_no, [])
                self._pages[page_no] = rows
                for i, (a, b) in enumerate(zip(old, rows, strict=False)):
                    if a != b:
                        row = page_no * PAGE_SIZE + i
                        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.HEADERS) - 1))
            # Pages not re-read may be stale: drop them, they are fetched again when looked at.
            for page_no in [p for p in self._pages if p not in result.pages]:
                del self._pages[page_no]
        else:
            self._inflight.clear()
            self._reset_to(result.total, result.pages, None)
            self.loaded.emit()
        self._refresh_done()

    def _refreshed_list(self, generation: int, result: Listed) -> None:
        if generation != self._generation:
            return
        if self._list is not None and [s for s, _ in result.rows] == [s for s, _ in self._list] \
                and [d for _, d in result.rows] == [d for _, d in self._list]:
            self._refresh_done()
            return
        if self._list is not None and [s.uid for s, _ in result.rows] == [s.uid for s, _ in self._list]:
            changed = [i for i, (a, b) in enumerate(zip(self._list, result.rows, strict=True)) if a != b]
            self._list = result.rows
            for row in changed:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.HEADERS) - 1))
        else:
            self._reset_to(len(result.rows), {}, result.rows)
            self.loaded.emit()
        self._refresh_done()

    # --- lookups for the panel -------------------------------------------------------------------------

    def uid_at(self, row: int) -> int | None:
        s = self._summary_no_fetch(row)
        return None if s is None else s.uid

    def summary_at(self, row: int) -> MessageSummary | None:
        return self._summary_no_fetch(row)

    def _summary_no_fetch(self, row: int) -> MessageSummary | None:
        if self._list is not None:
            return self._list[row][0] if 0 <= row < len(self._list) else None
        page = self._pages.get(row // PAGE_SIZE)
        return page[row % PAGE_SIZE] if page is not None and row % PAGE_SIZE < len(page) else None

    def row_of(self, uid: int) -> int | None:
        """The row showing `uid`, if it is among the rows loaded."""
        if self._list is not None:
            return next((i for i, (s, _) in enumerate(self._list) if s.uid == uid), None)
        for page_no, rows in self._pages.items():
            for i, s in enumerate(rows):
                if s.uid == uid:
                    return page_no * PAGE_SIZE + i
        return None

    @property
    def cached_rows(self) -> int:
        return sum(len(p) for p in self._pages.values()) if self._list is None else len(self._list)

    # --- Qt model API -----------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid():
            return 0
        return len(self._list) if self._list is not None else self._total

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        if role == Qt.ItemDataRole.DecorationRole and section == self.ATTACHMENT:
            return attachment_icon()
        if role == Qt.ItemDataRole.ToolTipRole:
            return {self.FLAG: "Flagged", self.ATTACHMENT: "Has attachments"}.get(section)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid():
            base |= Qt.ItemFlag.ItemIsDragEnabled
        return base

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self.rowCount():
            return None
        summary = self._summary(index.row())
        col = index.column()
        if summary is None:
            if role == Qt.ItemDataRole.DisplayRole and col == self.SUBJECT:
                return "…"
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(summary, col, index.row())
        if role == Qt.ItemDataRole.FontRole and SEEN not in summary.flags:
            return self._bold
        if role == Qt.ItemDataRole.DecorationRole and col == self.ATTACHMENT and summary.has_attachments:
            return attachment_icon()
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.ATTACHMENT and summary.has_attachments:
                return "Has attachments"
            if col == self.FLAG and FLAGGED in summary.flags:
                return "Flagged"
            if col == self.SUBJECT:
                return tooltip(one_line(summary.subject) or "(no subject)")
            if col == self.SENDER:
                return tooltip(one_line(summary.sender))
            if col == self.DATE and summary.date is not None:
                return time.strftime("%a %d %b %Y %H:%M:%S", time.localtime(summary.date))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == self.SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == self.UidRole:
            return summary.uid
        if role == self.SummaryRole:
            return summary
        if role == self.DepthRole:
            return self._list[index.row()][1] if self._list is not None else 0
        return None

    def _display(self, s: MessageSummary, col: int, row: int) -> str:
        if col == self.FLAG:
            return "★" if FLAGGED in s.flags else ""
        if col == self.ATTACHMENT:
            return ""
        if col == self.SENDER:
            return one_line(s.sender) or "(unknown sender)"
        if col == self.SUBJECT:
            subject = one_line(s.subject) or "(no subject)"
            depth = self._list[row][1] if self._list is not None else 0
            return ("    " * min(depth, 12) + "↳ " + subject) if depth else subject
        if col == self.DATE:
            return format_date(s.date if s.date is not None else s.internaldate)
        if col == self.SIZE:
            return format_size(s.size)
        return ""

    # --- drag and drop: rows onto a folder ------------------------------------------------------------

    def mimeTypes(self) -> list[str]:
        return [MIME_TYPE]

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        uids = sorted({uid for i in indexes if (uid := self.uid_at(i.row())) is not None})
        data = QMimeData()
        account = getattr(self.mailbox, "address", "")
        data.setData(MIME_TYPE, json.dumps({"account": account, "folder": self.folder, "uids": uids}).encode())
        return data


def decode_drag(data: QMimeData) -> tuple[str, str, list[int]] | None:
    """(account, source folder, uids) from a drag of message rows, or None for anything else."""
    if not data.hasFormat(MIME_TYPE):
        return None
    try:
        payload = json.loads(bytes(data.data(MIME_TYPE).data()).decode())
        uids = [int(u) for u in payload["uids"]]
        return str(payload["account"]), str(payload["folder"]), uids
    except (ValueError, KeyError, TypeError):
        return None
