"""Delivery log: every received, delivered, relayed, deferred, bounced and rejected message, newest first.

Filters (time range, direction, status, address) are applied by the engine's query, so 100,000 rows cost
a page at a time.  New rows appear at the top while the view is at the top ("following"); once the person
scrolls down to read, the rows they are looking at stay put.  Export writes the filtered rows to CSV or
JSON in a worker thread with a progress bar.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QItemSelection, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.log import EVENT_WORDS, LogModel
from desktop.widgets.common import Debouncer, MessageLine, PlainTextDelegate, format_size, format_time
from engine.log import EVENTS, LogEntry, LogFilter

TIME_RANGES: tuple[tuple[str, float | None], ...] = (
    ("Last hour", 3600.0),
    ("Today", -1.0),               # since local midnight
    ("Last 24 hours", 86400.0),
    ("Last 7 days", 7 * 86400.0),
    ("Last 30 days", 30 * 86400.0),
    ("All time", None),
)


def describe_entry(entry: LogEntry) -> str:
    """Every field of one row, for the detail pane (the remote's reply in full)."""
    lines = [
        f"Time:        {format_time(entry.time)}",
        f"Status:      {EVENT_WORDS.get(entry.event, entry.event)} ({'inbound' if entry.direction == 'in' else 'outbound'})",
        f"Sender:      {entry.sender or '<> (null sender)'}",
        f"Recipient:   {entry.recipient}",
    ]
    for label, value in (("Queue id", entry.queue_id), ("Message-ID", entry.message_id),
                         ("Size", format_size(entry.size)), ("Remote host", entry.remote_host),
                         ("Client IP", entry.client_ip), ("TLS", entry.tls), ("Details", entry.detail)):
        if value:
            lines.append(f"{label + ':':<13}{value}")
    if entry.remote_reply:
        lines.append("")
        lines.append("Remote server's reply:")
        lines.append(entry.remote_reply)
    extra = entry.extra
    if extra:
        lines.append("")
        lines.extend(f"{k}: {v}" for k, v in sorted(extra.items()))
    return "\n".join(lines)


class _ExportProgress(QObject):
    """Carries progress from the export's worker thread to the GUI thread (a queued signal)."""

    progressed = Signal(int, int)


class DeliveryLogPanel(QWidget):
    title = "Delivery log"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.model = LogModel(bridge, self)

        # --- filters
        self.range_box = QComboBox()
        self.range_box.setObjectName("time_range")
        for words, seconds in TIME_RANGES:
            self.range_box.addItem(words, seconds)
        self.range_box.setCurrentIndex(len(TIME_RANGES) - 1)
        self.direction_box = QComboBox()
        self.direction_box.setObjectName("direction")
        for words, value in (("In and out", None), ("Inbound", "in"), ("Outbound", "out")):
            self.direction_box.addItem(words, value)
        self.status_box = QComboBox()
        self.status_box.setObjectName("status")
        self.status_box.addItem("Any status", None)
        for event in EVENTS:
            self.status_box.addItem(EVENT_WORDS.get(event, event), event)
        self.search = QLineEdit()
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search sender or recipient…  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.export_button = QPushButton("&Export…")
        self.export_button.setToolTip("Export the rows matching the filters to CSV or JSON (Ctrl+E)")
        self.export_button.clicked.connect(self.choose_export_file)
        filters = QHBoxLayout()
        filters.addWidget(self.range_box)
        filters.addWidget(self.direction_box)
        filters.addWidget(self.status_box)
        filters.addWidget(self.search, 1)
        filters.addWidget(self.export_button)

        # --- table and detail
        self.view = QTableView()
        self.view.setObjectName("log_table")
        self.view.setModel(self.model)
        self.view.setItemDelegate(PlainTextDelegate(self.model.text, LogModel.RIGHT_ALIGNED, self.view))
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().hide()
        # Fixed row heights: the view never measures 100,000 rows.
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        for column, width in ((LogModel.TIME, 150), (LogModel.EVENT, 80), (LogModel.DIRECTION, 40),
                              (LogModel.SENDER, 200), (LogModel.RECIPIENT, 200), (LogModel.SIZE, 70),
                              (LogModel.REMOTE, 150)):
            header.resizeSection(column, width)
        self.view.selectionModel().selectionChanged.connect(self._selected)
        self.detail = QPlainTextEdit()
        self.detail.setObjectName("detail")
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a row to see everything about it, including the remote "
                                       "server's full reply.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.view)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)

        self.count_label = QLabel("")
        self.count_label.setObjectName("count")
        self.follow_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setObjectName("export_progress")
        self.progress.hide()
        self.message = MessageLine()
        footer = QHBoxLayout()
        footer.addWidget(self.count_label)
        footer.addStretch(1)
        footer.addWidget(self.follow_label)
        footer.addWidget(self.progress)

        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)
        layout.addLayout(footer)

        self.file_dialog: QFileDialog | None = None
        self.last_export: tuple[Path, int] | None = None
        self._export_progress = _ExportProgress(self)
        self._export_progress.progressed.connect(self._progressed)

        self._apply_soon = Debouncer(self.apply_filters, 250, self)
        self._newer_soon = Debouncer(self.model.fetch_newer, 100, self)
        for box in (self.range_box, self.direction_box, self.status_box):
            box.currentIndexChanged.connect(lambda _i: self.apply_filters())
        self.search.textChanged.connect(lambda _t: self._apply_soon.trigger())
        self.model.totalChanged.connect(self._show_count)
        self.model.rowsInserted.connect(self._rows_inserted)
        self.model.failed.connect(self.message.show_error)
        bridge.deliveryLogged.connect(lambda _e: self._newer_soon.trigger())
        bridge.engineStateChanged.connect(self._engine_state)
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self._show_follow())
        QShortcut(QKeySequence.StandardKey.Find, self, self.search.setFocus)
        QShortcut(QKeySequence("Ctrl+E"), self, self.choose_export_file)
        self.apply_filters()
        self._show_follow()

    # --- filters -----------------------------------------------------------------------------------

    def current_filter(self) -> LogFilter:
        seconds = self.range_box.currentData()
        since: float | None = None
        if seconds == -1.0:
            since = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        elif seconds is not None:
            since = time.time() - float(seconds)
        status = self.status_box.currentData()
        return LogFilter.build(since=since, direction=self.direction_box.currentData(),
                               status=[status] if status else None, address=self.search.text().strip() or None)

    def apply_filters(self) -> None:
        self.message.clear_message()
        self.detail.clear()
        self.model.set_filter(self.current_filter())

    def refresh(self) -> None:
        self.apply_filters()

    def _engine_state(self, state: str) -> None:
        if state == "running" and self.model.rowCount() == 0:
            self.apply_filters()       # the log may not have been open when this panel was built

    def _show_count(self, total: int) -> None:
        shown = self.model.rowCount()
        self.count_label.setText(f"{total:,} matching rows" + (f" ({shown:,} loaded)" if shown < total else ""))

    # --- following new rows ------------------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self.view.verticalScrollBar().value() == 0

    def _show_follow(self) -> None:
        self.follow_label.setText("Following new entries" if self.following
                                  else "Paused: scroll to the top to follow new entries")

    def _rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        if first != 0 or self.model.rowCount() == last + 1:
            self._show_count(max(self.model.total, self.model.rowCount()))
            return
        bar = self.view.verticalScrollBar()
        if bar.value() > 0:
            # The person is reading further down: keep the rows they look at where they are.
            per_pixel = self.view.verticalScrollMode() == QAbstractItemView.ScrollMode.ScrollPerPixel
            step = self.view.verticalHeader().defaultSectionSize() if per_pixel else 1
            bar.setValue(bar.value() + (last - first + 1) * step)
        self._show_count(max(self.model.total, self.model.rowCount()))

    # --- detail ------------------------------------------------------------------------------------

    def _selected(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        rows = {i.row() for i in selected.indexes()}
        entry = self.model.entry(min(rows)) if rows else None
        self.detail.setPlainText(describe_entry(entry) if entry else "")

    # --- export ------------------------------------------------------------------------------------

    def choose_export_file(self) -> None:
        dialog = QFileDialog(self, "Export the delivery log")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setNameFilters(["CSV (*.csv)", "JSON (*.json)"])
        dialog.setDefaultSuffix("csv")
        dialog.selectFile(f"postroom-log-{time.strftime('%Y%m%d-%H%M')}.csv")
        dialog.filterSelected.connect(lambda f: dialog.setDefaultSuffix("json" if "json" in f else "csv"))
        dialog.fileSelected.connect(self.export_to)
        self.file_dialog = dialog
        dialog.open()          # no exec(): no nested event loop under qasync

    def export_to(self, path: str) -> None:
        target = Path(path)
        fmt = "json" if target.suffix.lower() == ".json" else "csv"
        log = self.bridge.engine.log
        if log is None:
            self.message.show_error("The delivery log is not available in this version.")
            return
        self.export_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.message.show_info(f"Exporting to {target}…")
        signal = self._export_progress.progressed
        flt = self.current_filter()

        async def run() -> int:
            return await asyncio.to_thread(log.export, flt, target, fmt, lambda done, total: signal.emit(done, total))

        def done(count: int) -> None:
            self.export_button.setEnabled(True)
            self.progress.hide()
            self.last_export = (target, count)
            self.message.show_info(f"Exported {count:,} rows to {target}.")

        def failed(text: str) -> None:
            self.export_button.setEnabled(True)
            self.progress.hide()
            self.message.show_error(f"The export failed: {text}")

        self.bridge.submit(run(), done, failed, owner=self)

    def _progressed(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
