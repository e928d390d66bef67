"""A 100,000-message folder: the list model knows the count at once and fetches only the pages a person
looks at, sorted by SQLite.  The index is written straight into the store's own schema (one transaction)
because appending 100,000 messages through the store takes minutes (measured: 21 s just for files plus
a rescan); the model reads it through the real `Mailbox.summaries`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeView

from desktop.bridge import EngineBridge
from desktop.models.messages import MAX_CACHED_PAGES, PAGE_SIZE, MessageListModel
from engine.store import MailStore
from engine.store import index as store_index

N = 100_000
ADDRESS = "big@example.test"


def build_big_inbox(root: Path) -> None:
    with MailStore(root, hostname="mx.example.test") as store:
        store.create_account(ADDRESS)
    account = root / "example.test" / "big"
    db = store_index.connect(account / "index.sqlite")
    try:
        fid = db.execute("SELECT id FROM folders WHERE name = 'INBOX'").fetchone()[0]
        start = 1_700_000_000.0
        rows = ((fid, uid, f"{int(start) + uid}.M{uid}P1Q{uid}.mx,S=500,W=510", "cur", "S" if uid % 3 else "", "",
                 int(uid % 3 != 0), uid, 500 + uid % 4000, start + uid, start + uid, start + uid,
                 f"Sender {uid % 997:03d} <s{uid % 997}@remote.test>", f"Message number {uid}",
                 f"<{uid}@remote.test>", "", "", int(uid % 10 == 0))
                for uid in range(1, N + 1))
        with store_index.transaction(db):
            db.executemany("INSERT INTO messages (fid, uid, base, subdir, info, keywords, seen, modseq, size, "
                           "internaldate, date, sort_date, sender, subject, message_id, in_reply_to, refs, "
                           "has_attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # The directories are unchanged since: the store trusts the index and does not rescan.
            new_m, cur_m = os.stat(account / "new").st_mtime_ns, os.stat(account / "cur").st_mtime_ns
            db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ?, new_mtime = ?, cur_mtime = ? "
                       "WHERE id = ?", (N + 1, N + 1, new_m, cur_m, fid))
    finally:
        db.close()


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStore]:
    """Built once for this module (about 4 s on two cores); the tests only read it."""
    root = tmp_path_factory.mktemp("big") / "mail"
    build_big_inbox(root)
    with MailStore(root, hostname="mx.example.test") as store:
        yield store


def subject(model: MessageListModel, row: int) -> str:
    return cast(str, model.index(row, MessageListModel.SUBJECT).data())


def test_a_100000_message_folder_is_fetched_lazily(qtbot: Any, bridge: EngineBridge,
                                                   big_store: MailStore) -> None:
    mailbox = big_store.mailbox(ADDRESS)
    model = MessageListModel(bridge)
    view = QTreeView()
    qtbot.addWidget(view)
    view.setUniformRowHeights(True)
    view.setModel(model)
    view.resize(800, 400)
    view.show()

    began = time.monotonic()
    with qtbot.waitSignal(model.loaded, timeout=10000):
        model.open(mailbox, "INBOX")
    assert model.rowCount() == N
    qtbot.waitUntil(lambda: subject(model, 0) == f"Message number {N}", timeout=10000)   # newest first
    first_screen = time.monotonic() - began
    # Generous for a loaded two-core CI box; on an idle one the first screen takes a fraction of a second.
    assert first_screen < 8.0, f"first screen took {first_screen:.2f} s"
    assert model.pages_fetched <= 2
    assert model.cached_rows <= 2 * PAGE_SIZE

    # Jump to the end: only the pages there are fetched, not the 498 in between.
    view.scrollToBottom()
    qtbot.waitUntil(lambda: subject(model, N - 1) == "Message number 1", timeout=10000)
    assert model.pages_fetched <= 5
    assert model.cached_rows <= 5 * PAGE_SIZE

    # Scroll through the middle page by page: memory stays bounded.
    for row in range(0, N, N // 8):
        view.scrollTo(model.index(row, 0))
        qtbot.waitUntil(lambda r=row: subject(model, r) != "…", timeout=10000)
    assert model.cached_rows <= MAX_CACHED_PAGES * PAGE_SIZE

    # Sorting is SQLite's: by sender ascending, the first row is sender 000.
    with qtbot.waitSignal(model.loaded, timeout=10000):
        model.sort(MessageListModel.SENDER, Qt.SortOrder.AscendingOrder)
    view.scrollToTop()
    qtbot.waitUntil(lambda: (model.index(0, MessageListModel.SENDER).data() or "").startswith("Sender 000"),
                    timeout=10000)
    assert model.rowCount() == N


def test_unread_rows_are_bold_and_attachments_marked(qtbot: Any, bridge: EngineBridge,
                                                     big_store: MailStore) -> None:
    model = MessageListModel(bridge)
    with qtbot.waitSignal(model.loaded, timeout=10000):
        model.open(big_store.mailbox(ADDRESS), "INBOX")
    model.sort(MessageListModel.DATE, Qt.SortOrder.AscendingOrder)
    qtbot.waitUntil(lambda: subject(model, 2) == "Message number 3", timeout=10000)
    assert model.index(2, 0).data(Qt.ItemDataRole.FontRole).bold()          # uid 3: unread
    assert model.index(0, 0).data(Qt.ItemDataRole.FontRole) is None         # uid 1: read
    assert model.index(9, MessageListModel.ATTACHMENT).data(Qt.ItemDataRole.ToolTipRole) == "Has attachments"
