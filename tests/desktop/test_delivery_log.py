"""The delivery log panel: live rows, filters, row detail, export, and a model that survives qtmodeltester."""

from __future__ import annotations

import csv
import json
import smtplib
import sqlite3
import time
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyleOptionViewItem

from desktop.bridge import EngineBridge
from desktop.models.log import PAGE, LogModel
from desktop.panels.delivery_log import DeliveryLogPanel
from desktop.widgets.common import PlainTextDelegate
from engine.runtime import Engine


def column(panel: DeliveryLogPanel, col: int) -> list[str]:
    model = panel.model
    return [model.index(r, col).data() for r in range(model.rowCount())]


def send(engine: Engine, recipient: str = "alice@example.test", sender: str = "bob@elsewhere.test") -> None:
    host, port = engine.address_of("smtp")
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.sendmail(sender, [recipient], b"Subject: log test\r\n\r\nhello\r\n")


def test_a_received_message_appears_within_a_second(qtbot: Any, bridge: EngineBridge,
                                                    running: Engine) -> None:
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.exhausted, timeout=5000)
    started = time.monotonic()
    send(running)
    qtbot.waitUntil(lambda: "bob@elsewhere.test" in column(panel, LogModel.SENDER), timeout=1000)
    assert time.monotonic() - started < 2.0
    assert panel.following
    assert "alice@example.test" in column(panel, LogModel.RECIPIENT)


def test_row_detail_and_filters(qtbot: Any, bridge: EngineBridge, running: Engine) -> None:
    log = running.log
    log.record("relayed", sender="alice@example.test", recipient="carol@remote.test", remote_host="mx.remote.test",
               remote_reply="250 2.0.0 Ok: queued as ABC123\nwith a second line", queue_id="Q1")
    log.record("rejected", sender="spam@bad.test", recipient="alice@example.test", detail="550 5.7.1 relay denied")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=5000)

    panel.view.selectRow(column(panel, LogModel.SENDER).index("alice@example.test"))
    assert "250 2.0.0 Ok: queued as ABC123\nwith a second line" in panel.detail.toPlainText()

    panel.direction_box.setCurrentIndex(panel.direction_box.findData("out"))
    qtbot.waitUntil(lambda: column(panel, LogModel.SENDER) == ["alice@example.test"], timeout=5000)
    panel.direction_box.setCurrentIndex(0)
    panel.status_box.setCurrentIndex(panel.status_box.findData("rejected"))
    qtbot.waitUntil(lambda: column(panel, LogModel.SENDER) == ["spam@bad.test"], timeout=5000)
    panel.status_box.setCurrentIndex(0)
    qtbot.keyClicks(panel.search, "carol")
    qtbot.waitUntil(lambda: column(panel, LogModel.RECIPIENT) == ["carol@remote.test"], timeout=5000)
    qtbot.waitUntil(lambda: panel.count_label.text().startswith("1 matching"), timeout=5000)


def test_lazy_loading_fetches_pages_as_the_view_scrolls(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                        qtmodeltester: Any) -> None:
    for i in range(1200):
        running.log.record("received", sender=f"s{i}@elsewhere.test", recipient="alice@example.test")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 500 and not panel.model.loading, timeout=5000)
    assert column(panel, LogModel.SENDER)[0] == "s1199@elsewhere.test", "newest first"
    panel.view.scrollToBottom()
    qtbot.waitUntil(lambda: panel.model.rowCount() >= 1000, timeout=5000)
    qtmodeltester.check(panel.model)


def test_the_table_paints_exactly_what_the_model_says(qtbot: Any, bridge: EngineBridge,
                                                      running: Engine) -> None:
    """The table's delegate paints from LogModel.text (one call into Python per cell, not seven):
    every cell must read as data() says, with sizes right-aligned."""
    running.log.record("bounced", sender="", recipient="gone@remote.test", size=4096,
                       remote_host="mx.remote.test", remote_reply="550 5.1.1 no such user\nsecond line")
    running.log.record("received", sender="bob@elsewhere.test", recipient="alice@example.test", client_ip="192.0.2.7")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=5000)
    delegate = cast(PlainTextDelegate, panel.view.itemDelegate())
    for row in range(2):
        for col in range(panel.model.columnCount()):
            index = panel.model.index(row, col)
            option = QStyleOptionViewItem()
            delegate.initStyleOption(option, index)
            assert option.text == index.data(), (row, col)
            right = bool(option.displayAlignment & Qt.AlignmentFlag.AlignRight)
            assert right == (col == LogModel.SIZE), (row, col)
    assert column(panel, LogModel.SENDER) == ["bob@elsewhere.test", "<>"]
    assert column(panel, LogModel.DETAIL)[1] == "550 5.1.1 no such user second line"
    assert column(panel, LogModel.REMOTE) == ["192.0.2.7", "mx.remote.test"]


def test_rows_stay_put_while_the_person_reads_further_down(qtbot: Any, bridge: EngineBridge,
                                                           running: Engine) -> None:
    for i in range(300):
        running.log.record("received", sender=f"s{i}@elsewhere.test", recipient="alice@example.test")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 300, timeout=5000)
    panel.view.scrollTo(panel.model.index(150, 0))
    top_row = panel.view.rowAt(0)
    top_sender = panel.model.index(top_row, LogModel.SENDER).data()
    assert not panel.following
    running.log.record("received", sender="late@elsewhere.test", recipient="alice@example.test")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 301, timeout=5000)
    assert panel.model.index(panel.view.rowAt(0), LogModel.SENDER).data() == top_sender


def test_rows_another_process_writes_in_bulk_arrive_on_top_in_bounded_inserts(qtbot: Any,
                                                                              bridge: EngineBridge,
                                                                              running: Engine) -> None:
    running.log.record("received", sender="first@elsewhere.test", recipient="alice@example.test")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1 and panel.model.exhausted, timeout=5000)
    inserts: list[int] = []
    panel.model.rowsInserted.connect(lambda _parent, first, last: inserts.append(last - first + 1))

    bulk = 2 * PAGE + 100
    db = sqlite3.connect(running.config.state_db)          # as the CLI would, from another process
    with db:
        db.executemany("INSERT INTO log_entries (time, event, direction, sender, recipient) VALUES (?,?,?,?,?)",
                       ((time.time(), "received", "in", f"bulk{i}@elsewhere.test", "alice@example.test")
                        for i in range(bulk)))
    db.close()
    # The engine notices within a second (its queue watcher catches the log up) and the rows follow.
    qtbot.waitUntil(lambda: panel.model.rowCount() == bulk + 1, timeout=10000)
    senders = column(panel, LogModel.SENDER)
    assert senders[0] == f"bulk{bulk - 1}@elsewhere.test" and senders[-1] == "first@elsewhere.test"
    assert senders[1:-1] == [f"bulk{i}@elsewhere.test" for i in range(bulk - 2, -1, -1)], "newest first"
    assert max(inserts) <= PAGE, f"inserts of {inserts} rows: the GUI inserts a page at a time"
    entry = panel.model.entry(0)
    assert entry is not None
    assert entry.sender == f"bulk{bulk - 1}@elsewhere.test"
    qtbot.waitUntil(lambda: panel.count_label.text().startswith(f"{bulk + 1:,} matching"), timeout=5000)


def test_rows_newer_by_id_but_older_by_time_still_page_in_once_each(qtbot: Any, bridge: EngineBridge,
                                                                     running: Engine) -> None:
    """Another process may write rows stamped in the past (an import; a clock behind).  They arrive on
    top as new rows, and scrolling down still reaches every other row exactly once, then stops."""
    for i in range(PAGE + 100):
        running.log.record("received", sender=f"now{i}@elsewhere.test", recipient="alice@example.test")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    qtbot.waitUntil(lambda: panel.model.rowCount() == PAGE and not panel.model.loading, timeout=5000)
    earlier = 2 * PAGE + 200
    db = sqlite3.connect(running.config.state_db)
    with db:
        db.executemany("INSERT INTO log_entries (time, event, direction, sender, recipient) VALUES (?,?,?,?,?)",
                       ((time.time() - 86400 + i, "received", "in", f"old{i}@elsewhere.test", "alice@example.test")
                        for i in range(earlier)))
    db.close()
    qtbot.waitUntil(lambda: panel.model.rowCount() == PAGE + earlier, timeout=10000)

    def scrolled_to_the_end() -> bool:
        panel.view.scrollToBottom()
        return panel.model.exhausted and not panel.model.loading

    qtbot.waitUntil(scrolled_to_the_end, timeout=10000)
    senders = column(panel, LogModel.SENDER)
    assert len(senders) == len(set(senders)), "no row twice"
    assert set(senders) == {f"now{i}@elsewhere.test" for i in range(PAGE + 100)} | \
        {f"old{i}@elsewhere.test" for i in range(earlier)}


def test_export_filtered_rows_to_csv_and_json(qtbot: Any, bridge: EngineBridge, running: Engine,
                                              tmp_path: Path) -> None:
    for i in range(30):
        running.log.record("received", sender=f"s{i}@elsewhere.test", recipient="alice@example.test")
    running.log.record("bounced", sender="alice@example.test", recipient="gone@remote.test", detail="550 no such user")
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.keyClicks(panel.search, "gone@")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=5000)

    target = tmp_path / "log.csv"
    panel.export_to(str(target))
    qtbot.waitUntil(lambda: panel.last_export is not None, timeout=5000)
    with target.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["recipient"] for r in rows] == ["gone@remote.test"]
    assert "Exported 1 rows" in panel.message.text()

    panel.search.clear()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 31, timeout=5000)
    target = tmp_path / "log.json"
    panel.last_export = None
    panel.export_to(str(target))
    qtbot.waitUntil(lambda: panel.last_export is not None, timeout=5000)
    assert len(json.loads(target.read_text())) == 31


def test_export_dialog_is_opened_without_a_nested_loop(qtbot: Any, bridge: EngineBridge,
                                                       running: Engine) -> None:
    panel = DeliveryLogPanel(bridge)
    qtbot.addWidget(panel)
    panel.choose_export_file()
    assert panel.file_dialog is not None and panel.file_dialog.isVisible()
    panel.file_dialog.reject()
