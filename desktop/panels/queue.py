"""Outbound queue: what is waiting to go out, why, and the admin's levers (retry, delete, bounce, headers).

The table follows the engine: a QueueChanged event schedules one `Queue.list()` through the bridge, never
a database read on the GUI thread.  Deleting and bouncing ask first, without a nested event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.queue import QueueModel
from desktop.widgets.common import Debouncer, MessageLine


async def each(func: Any, ids: list[str]) -> list[str]:
    """Applies an admin call to several messages; returns the sentences of those that failed."""
    problems: list[str] = []
    for queue_id in ids:
        try:
            await asyncio.to_thread(func, queue_id)
        except Exception as exc:     # QueueError and friends carry a sentence
            problems.append(f"{queue_id}: {exc}")
    return problems


class HeadersDialog(QDialog):
    """A queued message's header section, read-only, shown without blocking anything."""

    def __init__(self, queue_id: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Headers of {queue_id}")
        self.resize(760, 480)
        self.text = QPlainTextEdit(text)
        self.text.setObjectName("headers")
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)


class QueuePanel(QWidget):
    title = "Queue"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.model = QueueModel(self)
        self.confirm_box: QMessageBox | None = None
        self.headers_dialog: HeadersDialog | None = None

        self.retry_button = QPushButton("&Retry now")
        self.retry_button.setToolTip("Try the selected messages again now (Ctrl+R)")
        self.retry_all_button = QPushButton("Retry &all")
        self.retry_all_button.setToolTip("Try every waiting message again now (Ctrl+Shift+R)")
        self.headers_button = QPushButton("View &headers")
        self.headers_button.setToolTip("Show the selected message's headers (Enter)")
        self.bounce_button = QPushButton("&Bounce now")
        self.bounce_button.setToolTip("Give up and tell the sender (Ctrl+B)")
        self.delete_button = QPushButton("&Delete")
        self.delete_button.setToolTip("Remove without telling the sender (Delete)")
        self.retry_button.clicked.connect(self.retry_selected)
        self.retry_all_button.clicked.connect(self.retry_all)
        self.headers_button.clicked.connect(self.view_headers)
        self.bounce_button.clicked.connect(self.bounce_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.count_label = QLabel("")
        self.count_label.setObjectName("count")
        actions = QHBoxLayout()
        actions.addWidget(self.count_label, 1)
        for button in (self.retry_button, self.retry_all_button, self.headers_button, self.bounce_button,
                       self.delete_button):
            actions.addWidget(button)

        self.view = QTableView()
        self.view.setObjectName("queue_table")
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        for column, width in ((QueueModel.ID, 150), (QueueModel.SENDER, 190), (QueueModel.RECIPIENTS, 220),
                              (QueueModel.SIZE, 70), (QueueModel.ATTEMPTS, 70), (QueueModel.NEXT, 100),
                              (QueueModel.STATUS, 120)):
            header.resizeSection(column, width)
        self.view.doubleClicked.connect(lambda _i: self.view_headers())
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.empty_label = QLabel("The queue is empty: everything has been delivered.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = MessageLine()

        layout = QVBoxLayout(self)
        layout.addLayout(actions)
        layout.addWidget(self.message)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.empty_label)

        QShortcut(QKeySequence("Ctrl+R"), self, self.retry_selected)
        QShortcut(QKeySequence("Ctrl+Shift+R"), self, self.retry_all)
        QShortcut(QKeySequence("Ctrl+B"), self, self.bounce_selected)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.view, self.delete_selected)
        QShortcut(QKeySequence(Qt.Key.Key_Return), self.view, self.view_headers)

        self._refresh_soon = Debouncer(self.refresh, 150, self)
        bridge.queueChanged.connect(lambda _id: self._refresh_soon.trigger())
        bridge.engineStateChanged.connect(lambda _state: self._refresh_soon.trigger())
        self._clock = QTimer(self)              # "in 4 min" must count down even when nothing happens
        self._clock.setInterval(30_000)
        self._clock.timeout.connect(self._tick)
        self._clock.start()
        self.loaded = False
        self._update_buttons()
        self.refresh()

    # --- data --------------------------------------------------------------------------------------

    def refresh(self) -> None:
        queue = self.bridge.engine.queue
        if queue is None:
            if self.bridge.engine.running:
                self.message.show_error("The outbound queue is not available in this version.")
            return                  # not opened yet: engineStateChanged brings us back
        self.bridge.call(queue.list, on_result=self._listed, on_error=self.message.show_error, owner=self)

    def _listed(self, items: list[Any]) -> None:
        if self.message.property("kind") == "error" and not self.loaded:
            self.message.clear_message()
        self.model.set_items(items)
        self.loaded = True
        total = self.model.total()
        self.count_label.setText(f"{total} message{'s' if total != 1 else ''} in the queue")
        self.empty_label.setVisible(total == 0)
        self.view.setVisible(total > 0)
        self._update_buttons()

    def _tick(self) -> None:
        if self.model.rowCount():
            self.model.dataChanged.emit(self.model.index(0, QueueModel.NEXT),
                                        self.model.index(self.model.rowCount() - 1, QueueModel.NEXT))

    def selected_ids(self) -> list[str]:
        rows = sorted({index.row() for index in self.view.selectionModel().selectedRows()})
        return [self.model.index(row, QueueModel.ID).data() for row in rows]

    def select_id(self, queue_id: str) -> None:
        """Selects one message by id (keyboard users and tests)."""
        for row in range(self.model.rowCount()):
            if self.model.index(row, QueueModel.ID).data() == queue_id:
                self.view.selectRow(row)
                return

    def _update_buttons(self) -> None:
        chosen = bool(self.view.selectionModel().selectedRows())
        for button in (self.retry_button, self.bounce_button, self.delete_button):
            button.setEnabled(chosen)
        self.headers_button.setEnabled(len(self.view.selectionModel().selectedRows()) == 1)
        self.retry_all_button.setEnabled(self.model.total() > 0)

    # --- actions -----------------------------------------------------------------------------------

    def _queue(self) -> Any:
        queue = self.bridge.engine.queue
        if queue is None:
            self.message.show_error("The outbound queue is not available in this version.")
        return queue

    def _after(self, done_words: str) -> Any:
        def finished(problems: list[str]) -> None:
            if problems:
                self.message.show_error("; ".join(problems))
            else:
                self.message.show_info(done_words)
            self.refresh()
        return finished

    def retry_selected(self) -> None:
        ids = self.selected_ids()
        queue = self._queue()
        if not ids or queue is None:
            return
        self.bridge.submit(each(queue.retry, ids), self._after(f"Retrying {len(ids)} message(s) now."),
                           self.message.show_error, owner=self)

    def retry_all(self) -> None:
        queue = self._queue()
        if queue is None:
            return
        def retried(count: int) -> None:
            self.message.show_info(f"Retrying {count} waiting recipient(s) now.")
            self.refresh()

        self.bridge.call(queue.retry_all, on_result=retried, on_error=self.message.show_error, owner=self)

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self._confirm(f"Delete {len(ids)} message(s) from the queue?",
                          "The senders are not told. This cannot be undone.", "Delete",
                          lambda: self._do(ids, "delete", f"Deleted {len(ids)} message(s)."))

    def bounce_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self._confirm(f"Bounce {len(ids)} message(s) now?",
                          "Delivery stops and each sender gets a bounce explaining why.", "Bounce",
                          lambda: self._do(ids, "bounce", f"Bounced {len(ids)} message(s) to their senders."))

    def _do(self, ids: list[str], action: str, done_words: str) -> None:
        queue = self._queue()
        if queue is None:
            return
        self.bridge.submit(each(getattr(queue, action), ids), self._after(done_words),
                           self.message.show_error, owner=self)

    def _confirm(self, question: str, detail: str, verb: str, then: Any) -> None:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(verb)
        box.setText(question)
        box.setInformativeText(detail)
        yes = box.addButton(verb, QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        self.confirm_box = box

        def answered(_result: int) -> None:
            chosen = box.clickedButton() is yes
            self.confirm_box = None
            box.deleteLater()
            if chosen:
                then()

        box.finished.connect(answered)
        box.open()
        self.confirm_yes = yes

    def view_headers(self) -> None:
        ids = self.selected_ids()
        queue = self._queue()
        if len(ids) != 1 or queue is None:
            return
        queue_id = ids[0]

        def show(text: str) -> None:
            dialog = HeadersDialog(queue_id, text, self)
            self.headers_dialog = dialog
            dialog.destroyed.connect(lambda *_: setattr(self, "headers_dialog", None))
            dialog.show()

        self.bridge.call(queue.headers, queue_id, on_result=show, on_error=self.message.show_error, owner=self)

    def index_of(self, queue_id: str) -> QModelIndex:
        for row in range(self.model.rowCount()):
            if self.model.index(row, QueueModel.ID).data() == queue_id:
                return self.model.index(row, 0)
        return QModelIndex()
