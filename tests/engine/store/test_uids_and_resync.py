"""UIDs only grow, are never reused, and the index follows changes other programs make to the Maildir."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.events import Event, MailboxChanged, MessageStored
from engine.interfaces import SEEN
from engine.store import AccountMailbox, MailStore

from .conftest import ALICE, message


def _reopen(store_root: Path, events: list[Event] | None = None) -> MailStore:
    return MailStore(store_root, notify=events.append if events is not None else None, hostname="mx.example.test")


def _bump_mtime(directory: Path) -> None:
    """Some file systems keep coarse directory mtimes; make a hand edit visible regardless."""
    st = directory.stat()
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_uids_are_ascending_and_not_reused_after_expunge(alice: AccountMailbox) -> None:
    uids = [alice.append("INBOX", message(f"m{i}"))[1] for i in range(3)]
    assert uids == [1, 2, 3]
    alice.set_flags("INBOX", [3], ["\\Deleted"], "add")
    assert alice.expunge("INBOX") == [3]
    assert alice.append("INBOX", message("after"))[1] == 4
    assert alice.status("INBOX").uidnext == 5


def test_uids_survive_reopening_the_store(store: MailStore, tmp_path: Path) -> None:
    box = store.mailbox(ALICE)
    uidvalidity, _ = box.append("INBOX", message("a"))
    box.append("INBOX", message("b"), [SEEN, "$label"])
    store.close()
    with _reopen(store.root) as again:
        box = again.mailbox(ALICE)
        status = box.status("INBOX")
        assert (status.uidvalidity, status.uidnext, status.messages, status.unseen) == (uidvalidity, 3, 2, 1)
        assert box.messages("INBOX")[1].flags == {SEEN, "$label"}


def test_deleting_the_index_rebuilds_it_with_a_new_uidvalidity_and_no_lost_mail(store: MailStore) -> None:
    box = store.mailbox(ALICE)
    before = box.status("INBOX").uidvalidity
    for i in range(3):
        box.append("INBOX", message(f"m{i}"), [SEEN] if i == 1 else [])
    box.append("Sent", message("sent"))
    store.close()
    for suffix in ("", "-wal", "-shm"):
        p = store.account_path(ALICE) / f"index.sqlite{suffix}"
        if p.exists():
            p.unlink()
    with _reopen(store.root) as again:
        box = again.mailbox(ALICE)
        status = box.status("INBOX")
        assert status.uidvalidity != before
        assert status.messages == 3 and status.unseen == 2
        assert [m.uid for m in box.messages("INBOX")] == [1, 2, 3]
        assert {s.subject for s in box.summaries("INBOX")} == {"m0", "m1", "m2"}
        assert box.status("Sent").messages == 1
        specials = {f.name: f.special_use for f in box.folders()}
        assert specials["Sent"] == "\\Sent"


def test_a_file_dropped_into_new_by_hand_gets_the_next_uid(alice: AccountMailbox, events: list[Event]) -> None:
    alice.append("INBOX", message("first"))
    alice.set_flags("INBOX", [1], ["\\Deleted"], "add")
    alice.expunge("INBOX")
    new = alice.path / "new"
    (new / f"{int(time.time())}.handmade.host").write_bytes(b"Subject: by hand\n\nhello\n")
    _bump_mtime(new)
    events.clear()
    status = alice.status("INBOX")
    assert status.messages == 1 and status.uidnext == 3
    (meta,) = alice.messages("INBOX")
    assert meta.uid == 2 and meta.size == len(b"Subject: by hand\r\n\r\nhello\r\n")
    assert alice.read("INBOX", 2) == b"Subject: by hand\r\n\r\nhello\r\n"
    assert MessageStored(ALICE, "INBOX", 2) in events


def test_files_removed_or_reflagged_by_hand_become_expunges_and_flag_changes(alice: AccountMailbox) -> None:
    for i in range(3):
        alice.append("INBOX", message(f"m{i}"))
    alice.claim_recent("INBOX")
    modseq = alice.status("INBOX").highestmodseq
    cur = alice.path / "cur"
    alice.path_of("INBOX", 2).unlink()
    p3 = alice.path_of("INBOX", 3)
    p3.rename(p3.with_name(p3.name + "FS"))   # ":2," + "FS": what mutt does when flagging and reading
    _bump_mtime(cur)
    changes = alice.changes_since("INBOX", modseq)
    assert list(changes.expunged) == [2]
    assert [(m.uid, m.flags) for m in changes.changed] == [(3, frozenset({"\\Flagged", SEEN}))]
    assert changes.highestmodseq > modseq


def test_index_is_repaired_on_open_after_a_crash_between_rename_and_commit(store: MailStore) -> None:
    box = store.mailbox(ALICE)
    box.append("INBOX", message("indexed"))
    store.close()
    # What a crash after the rename into new/ but before the index commit leaves behind:
    new = store.account_path(ALICE) / "new"
    (new / f"{int(time.time())}.M1P1Q1.mx.example.test,S=21,W=23").write_bytes(b"Subject: orphan\n\nbody\n")
    _bump_mtime(new)
    with _reopen(store.root) as again:
        box = again.mailbox(ALICE)
        assert [s.subject for s in box.summaries("INBOX", sort="arrival", descending=False)] == ["indexed", "orphan"]
        assert box.append("INBOX", message("next"))[1] == 3


def test_mailbox_changed_is_published_for_flag_changes_and_expunges(alice: AccountMailbox,
                                                                    events: list[Event]) -> None:
    alice.append("INBOX", message())
    events.clear()
    alice.set_flags("INBOX", [1], ["\\Deleted"], "add")
    assert events == [MailboxChanged(ALICE, "INBOX")]
    events.clear()
    alice.expunge("INBOX")
    assert events == [MailboxChanged(ALICE, "INBOX")]


def test_a_hand_drop_masked_by_our_own_change_is_found_by_the_later_verification(
    alice: AccountMailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice.append("INBOX", message("first"))
    # Another program drops a file, and before anyone looks, a delivery records the new mtime.
    (alice.path / "new" / f"{int(time.time())}.dropped.host").write_bytes(b"Subject: dropped\n\nx\n")
    alice.append("INBOX", message("second"))
    assert alice.status("INBOX").messages == 2           # masked: the mtime matches what we recorded
    monkeypatch.setattr(AccountMailbox, "verify_after", 0.0)
    assert alice.status("INBOX").messages == 3
    assert {s.subject for s in alice.summaries("INBOX")} == {"first", "second", "dropped"}


def test_a_flag_change_racing_a_delivery_from_another_process_gets_a_modseq_of_its_own(
        store: MailStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The delivery agent commits from its own process: here a second MailStore on the same files commits
    # a delivery at the worst moment, after set_flags() has looked at the folder and before it writes.
    alice = store.mailbox(ALICE)
    alice.append("INBOX", message("old"))
    agent_side = _reopen(store.root)
    read_rows = alice._rows

    def rows_then_a_delivery(*args: object, **kwargs: object) -> object:
        out = read_rows(*args, **kwargs)     # type: ignore[arg-type]
        if not delivered:
            delivered.append(agent_side.deliver_sync([ALICE], message("new")))
        return out

    delivered: list[object] = []
    monkeypatch.setattr(alice, "_rows", rows_then_a_delivery)
    changed, _ = alice.set_flags("INBOX", [1], [SEEN], "add")
    agent_side.close()
    modseqs = {m.uid: m.modseq for m in alice.messages("INBOX")}
    # RFC 7162 §3.1: every change gets a MODSEQ higher than any before it, and HIGHESTMODSEQ is the top
    assert changed[0].modseq == modseqs[1] > modseqs[2]
    assert alice.status("INBOX").highestmodseq == max(modseqs.values())
