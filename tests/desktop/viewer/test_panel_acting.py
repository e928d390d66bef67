"""Acting on mail in the viewer: flags shared with IMAP clients both ways, live arrivals, moving by drag,
deleting to Trash and then for good, folders, search, threads, keyboard, and the send-test button."""

from __future__ import annotations

import imaplib
from pathlib import Path
from typing import Any, cast

import pytest
import viewer_samples as samples
from conftest import VIEWER_LISTEN, MemoryKeyring
from desktop_support import PASSWORD, on_engine
from PySide6.QtCore import QModelIndex, Qt
from viewer_driver import ALICE, WAIT, deliver, make_panel, open_account, rows, select_subject, wait_rows

from desktop.bridge import EngineBridge
from desktop.models.messages import MessageListModel
from desktop.panels.mailbox_viewer import MailboxViewerPanel
from engine.interfaces import FLAGGED, SEEN
from engine.runtime import Engine, EngineThread


def message(subject: str, *, msgid: str = "", in_reply_to: str = "", body: str = "Hello.") -> bytes:
    headers = ["From: Carol <carol@remote.test>", f"To: {ALICE}", f"Subject: {subject}",
               "Date: Tue, 02 Jan 2024 09:00:00 +0000", f"Message-ID: <{msgid or subject.replace(' ', '.')}@r.test>"]
    if in_reply_to:
        headers += [f"In-Reply-To: <{in_reply_to}@r.test>", f"References: <{in_reply_to}@r.test>"]
    return ("\r\n".join(headers) + f"\r\n\r\n{body}\r\n").encode()


def opened(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path, backend: Any,
           *messages: bytes) -> MailboxViewerPanel:
    for data in messages:
        deliver(running, data)
    panel: MailboxViewerPanel = make_panel(qtbot, bridge, tmp_path, backend)
    open_account(qtbot, panel, PASSWORD)
    wait_rows(qtbot, panel, len(messages))
    return panel


def imap(engine: Engine) -> imaplib.IMAP4:
    host, port = engine.address_of("imap")
    client = imaplib.IMAP4(host, port, timeout=10)
    client.login(ALICE, PASSWORD)
    client.select("INBOX")
    return client


def imap_flags(client: imaplib.IMAP4, subject: str) -> str:
    _typ, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
    uid = data[0].split()[0]
    _typ, fetched = client.uid("FETCH", uid, "(FLAGS)")
    return cast(bytes, fetched[0]).decode()


def flag_cell(panel: MailboxViewerPanel, subject: str) -> str:
    return panel.list_model.index(rows(panel).index(subject), MessageListModel.FLAG).data() or ""


def test_reading_marks_seen_and_a_flag_set_here_is_seen_over_imap(qtbot: Any, bridge: EngineBridge,
                                                                  running: Engine, tmp_path: Path,
                                                                  keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("one"), message("two"))
    select_subject(qtbot, panel, "one")
    panel.toggle_flag()
    qtbot.waitUntil(lambda: flag_cell(panel, "one") == "★", timeout=WAIT)
    client = imap(running)
    try:
        flags = imap_flags(client, "one")
        assert "\\Flagged" in flags and "\\Seen" in flags
        assert "\\Seen" not in imap_flags(client, "two")
    finally:
        client.logout()


def test_a_flag_set_over_imap_shows_up_without_a_refresh(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                         tmp_path: Path,
                                                         keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("from imap"))
    assert flag_cell(panel, "from imap") == ""
    client = imap(running)
    try:
        _t, data = client.uid("SEARCH", "ALL")
        client.uid("STORE", data[0].split()[0], "+FLAGS", "(\\Flagged \\Seen)")
    finally:
        client.logout()
    qtbot.waitUntil(lambda: flag_cell(panel, "from imap") == "★", timeout=WAIT)
    index = panel.list_model.index(0, MessageListModel.SUBJECT)
    assert index.data(Qt.ItemDataRole.FontRole) is None            # no longer bold: read elsewhere


def test_new_mail_appears_and_folder_counts_follow(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                   tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("first"))
    deliver(running, message("second"))
    qtbot.waitUntil(lambda: sorted(rows(panel)) == ["first", "second"], timeout=WAIT)
    inbox = panel.folder_model.index_of("INBOX")
    qtbot.waitUntil(lambda: inbox.data() == "Inbox (2)", timeout=WAIT)


def test_delete_moves_to_trash_and_from_trash_deletes_for_good(qtbot: Any, bridge: EngineBridge,
                                                               running: Engine, tmp_path: Path,
                                                               keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("doomed"), message("kept"))
    select_subject(qtbot, panel, "doomed")
    panel.list_view.setFocus()
    qtbot.keyClick(panel.list_view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: rows(panel) == ["kept"], timeout=WAIT)
    trash = panel.folder_model.index_of("Trash")
    panel.folder_view.setCurrentIndex(trash)
    wait_rows(qtbot, panel, 1)
    assert rows(panel) == ["doomed"]
    select_subject(qtbot, panel, "doomed")
    panel.delete_selected()
    qtbot.waitUntil(lambda: panel.question is not None and panel.question.isVisible(), timeout=WAIT)
    assert panel.question is not None
    assert "for good" in panel.question.text()
    panel.question_yes.click()
    qtbot.waitUntil(lambda: panel.list_model.rowCount() == 0, timeout=WAIT)
    assert running.store.mailbox(ALICE).status("Trash").messages == 0


def test_dragging_messages_onto_a_folder_moves_them(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                    tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("to archive"), message("stays"))
    row = rows(panel).index("to archive")
    drag = panel.list_model.mimeData([panel.list_model.index(row, MessageListModel.SUBJECT)])
    archive = panel.folder_model.index_of("Archive")
    assert panel.folder_model.canDropMimeData(drag, Qt.DropAction.MoveAction, -1, -1, archive)
    assert not panel.folder_model.canDropMimeData(drag, Qt.DropAction.MoveAction, -1, -1,
                                                  panel.folder_model.index_of("INBOX"))
    assert panel.folder_model.dropMimeData(drag, Qt.DropAction.MoveAction, -1, -1, archive)
    qtbot.waitUntil(lambda: rows(panel) == ["stays"], timeout=WAIT)
    assert running.store.mailbox(ALICE).status("Archive").messages == 1


def test_folders_are_created_renamed_and_deleted(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                 tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("x"))

    def answer(text: str) -> None:
        qtbot.waitUntil(lambda: panel.input_dialog is not None and panel.input_dialog.isVisible(), timeout=WAIT)
        assert panel.input_dialog is not None
        panel.input_dialog.setTextValue(text)
        panel.input_dialog.accept()

    panel.ask_new_folder()
    answer("Projects/2024")
    qtbot.waitUntil(lambda: panel.folder_model.index_of("Projects/2024").isValid(), timeout=WAIT)
    assert panel.folder == "Projects/2024"
    panel.ask_rename_folder()
    answer("Projects/Done")
    qtbot.waitUntil(lambda: panel.folder_model.index_of("Projects/Done").isValid(), timeout=WAIT)
    assert not panel.folder_model.index_of("Projects/2024").isValid()
    panel.ask_delete_folder()
    qtbot.waitUntil(lambda: panel.question is not None and panel.question.isVisible(), timeout=WAIT)
    panel.question_yes.click()
    qtbot.waitUntil(lambda: not panel.folder_model.index_of("Projects/Done").isValid(), timeout=WAIT)
    assert panel.folder == "INBOX"
    names = {f.name for f in running.store.mailbox(ALICE).folders()}
    assert "Projects/Done" not in names and "Projects" in names


def test_search_finds_sender_subject_and_body(qtbot: Any, bridge: EngineBridge, running: Engine,
                                              tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("alpha"),
                   message("beta", body="the secret word is marmalade"), samples.latin1())
    qtbot.keySequence(panel, "Ctrl+F")
    assert panel.search_box.hasFocus()
    qtbot.keyClicks(panel.search_box, "marmalade")
    qtbot.waitUntil(lambda: rows(panel) == ["beta"], timeout=WAIT)
    assert panel.count_label.text() == "1 message found"
    panel.search_box.setText("CRÈME")
    qtbot.waitUntil(lambda: rows(panel) == ["Café crème"], timeout=WAIT)
    panel.search_box.setText("francois@remote")
    qtbot.waitUntil(lambda: rows(panel) == ["Café crème"], timeout=WAIT)
    panel.search_box.clear()
    qtbot.waitUntil(lambda: len(rows(panel)) == 3, timeout=WAIT)


def test_threads_indent_replies(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path,
                                keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("question", msgid="q"),
                   message("Re: question", msgid="a", in_reply_to="q"), message("other", msgid="o"))
    panel.threads_box.setChecked(True)
    qtbot.waitUntil(lambda: "↳ Re: question" in "".join(rows(panel)), timeout=WAIT)
    shown = rows(panel)
    assert shown.index("    ↳ Re: question") == shown.index("question") + 1


def test_keyboard_j_and_k_walk_the_list(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path,
                                        keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("a"), message("b"), message("c"))
    order = rows(panel)
    select_subject(qtbot, panel, order[0])
    panel.list_view.setFocus()
    qtbot.keyClick(panel.list_view, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: panel.reading.subject_label.text() == order[1], timeout=WAIT)
    qtbot.keyClick(panel.list_view, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: panel.reading.subject_label.text() == order[2], timeout=WAIT)
    qtbot.keyClick(panel.list_view, Qt.Key.Key_J)           # at the end: stays
    qtbot.keyClick(panel.list_view, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: panel.reading.subject_label.text() == order[1], timeout=WAIT)
    assert panel.list_view.currentIndex().row() == 1


def test_send_test_message_through_submission_arrives(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                      tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("already here"))
    panel.open_send_test()
    dialog = panel.send_dialog
    assert dialog is not None and dialog.recipient.text() == ALICE
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=WAIT)
    assert "Sent from" in dialog.message.text(), dialog.message.text()
    assert "submission service" in dialog.message.text()
    qtbot.waitUntil(lambda: "Postroom test message" in rows(panel), timeout=WAIT)


@pytest.mark.parametrize("engine_thread", [{k: v for k, v in VIEWER_LISTEN.items() if k != "submission"}],
                         indirect=True)
def test_send_test_message_without_submission_uses_the_engine(qtbot: Any, bridge: EngineBridge,
                                                              running: Engine, engine_thread: EngineThread,
                                                              tmp_path: Path,
                                                              keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("already here"))
    panel.open_send_test()
    dialog = panel.send_dialog
    assert dialog is not None
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=WAIT)
    assert "submission service is off" in dialog.message.text() and ALICE in dialog.message.text()
    qtbot.waitUntil(lambda: "Postroom test message" in rows(panel), timeout=WAIT)

    dialog.recipient.setText("bob@unreachable.test")
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=WAIT)
    assert "queued for bob@unreachable.test" in dialog.message.text()
    queued = on_engine(engine_thread, running.queue.list)
    assert [r.address for item in queued for r in item.recipients] == ["bob@unreachable.test"]

    dialog.recipient.setText("nobody@example.test")
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=WAIT)
    assert dialog.message.text().startswith("Not sent:") and "no account or alias" in dialog.message.text()


def test_models_pass_the_model_tester(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path,
                                      keyring_backend: MemoryKeyring, qtmodeltester: Any) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("m1"), samples.with_attachments())
    qtmodeltester.check(panel.list_model)
    qtmodeltester.check(panel.folder_model)
    assert panel.list_model.index(0, 0).parent() == QModelIndex()
    flags = {rows(panel)[r]: panel.list_model.index(r, 0).data(MessageListModel.SummaryRole).flags
             for r in range(2)}
    assert all(SEEN not in f and FLAGGED not in f for f in flags.values())


def test_reply_is_sent_filed_in_sent_and_marks_the_original_answered(qtbot: Any, bridge: EngineBridge,
                                                                     running: Engine, tmp_path: Path,
                                                                     keyring_backend: MemoryKeyring) -> None:
    note = (f"From: Alice <{ALICE}>\r\nTo: {ALICE}\r\nSubject: note to self\r\n"
            "Date: Tue, 02 Jan 2024 09:00:00 +0000\r\nMessage-ID: <self@example.test>\r\n\r\nremember the milk\r\n")
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, note.encode())
    select_subject(qtbot, panel, "note to self")
    assert panel.reply_button.isEnabled()
    qtbot.keySequence(panel, "Ctrl+R")
    qtbot.waitUntil(lambda: len(panel.compose_dialogs) == 1, timeout=WAIT)
    dialog = panel.compose_dialogs[0]
    assert dialog.to.text() == ALICE and dialog.subject.text() == "Re: note to self"
    assert "> remember the milk" in dialog.body.toPlainText()
    dialog.body.setPlainText("Done.\n\n" + dialog.body.toPlainText())
    dialog.send_button.click()
    qtbot.waitUntil(lambda: panel.compose_dialogs == [], timeout=WAIT)      # closed once sent
    qtbot.waitUntil(lambda: "Re: note to self" in rows(panel), timeout=WAIT)
    box = running.store.mailbox(ALICE)
    assert box.status("Sent").messages == 1
    original = next(s for s in box.summaries("INBOX") if s.subject == "note to self")
    assert "\\Answered" in original.flags
    reply = next(s for s in box.summaries("INBOX") if s.subject == "Re: note to self")
    assert reply.in_reply_to == "<self@example.test>"


def test_compose_refuses_a_bad_address_and_stays_open(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                      tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("x"))
    dialog = panel.compose_new()
    assert dialog is not None
    dialog.to.setText("not an address")
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=WAIT)
    assert dialog.isVisible() and "not an email address" in dialog.message.text()


def test_sorting_by_subject_and_unsortable_columns(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                   tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, message("banana"), message("apple"),
                   message("cherry"))
    header = panel.list_view.header()
    header.setSortIndicator(MessageListModel.SUBJECT, Qt.SortOrder.AscendingOrder)
    qtbot.waitUntil(lambda: rows(panel) == ["apple", "banana", "cherry"], timeout=WAIT)
    header.setSortIndicator(MessageListModel.FLAG, Qt.SortOrder.AscendingOrder)
    assert header.sortIndicatorSection() == MessageListModel.SUBJECT
    assert rows(panel) == ["apple", "banana", "cherry"]
