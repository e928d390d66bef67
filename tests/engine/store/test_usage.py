"""Quota usage: the stored-octets total the index keeps always equals the sum over every message, whatever
changed it (delivery, copy, move, expunge, folder deletion, files added or removed by other programs),
and an index written before the total existed gets it when opened."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from engine.interfaces import QuotaExceeded
from engine.store import AccountMailbox, MailStore

from .conftest import ALICE, message


def _summed(box: AccountMailbox) -> int:
    return sum(m.size for f in box.folders() for m in box.messages(f.name))


async def test_the_total_follows_every_kind_of_change(store: MailStore, alice: AccountMailbox) -> None:
    for i in range(4):
        await store.deliver([ALICE], message(f"m{i}", body="x" * (100 * i) + "\r\n"))
    alice.append("Sent", message("sent"))
    assert alice.used_bytes() == _summed(alice) > 0
    uids = [m.uid for m in alice.messages("INBOX")]
    alice.copy("INBOX", uids[:2], "Archive")
    assert alice.used_bytes() == _summed(alice)
    alice.move("INBOX", uids[2:3], "Trash")
    assert alice.used_bytes() == _summed(alice)
    alice.set_flags("INBOX", uids[:1], ["\\Deleted"], "add")
    alice.expunge("INBOX")
    assert alice.used_bytes() == _summed(alice)
    alice.create_folder("Old")
    alice.append("Old", message("old", body="y" * 500 + "\r\n"))
    alice.delete_folder("Old")
    assert alice.used_bytes() == _summed(alice)


async def test_files_added_or_removed_by_other_programs_count_after_the_resync(
        store: MailStore, alice: AccountMailbox) -> None:
    await store.deliver([ALICE], message("ours"))
    inbox = store.account_path(ALICE)
    (inbox / "new" / "1700000000.M1P1.elsewhere").write_bytes(message("theirs", body="z" * 300 + "\r\n"))
    gone = next(p for p in (inbox / "new").iterdir() if "elsewhere" not in p.name)
    os.unlink(gone)
    alice.status("INBOX")                      # the resync notices both
    assert alice.used_bytes() == _summed(alice) == len(message("theirs", body="z" * 300 + "\r\n"))


def test_an_index_from_before_the_total_gets_it_when_opened(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    with MailStore(root, hostname="mx.example.test") as store:
        store.create_account(ALICE)
        box = store.mailbox(ALICE)
        for i in range(3):
            box.append("INBOX", message(f"m{i}"))
        expected = _summed(box)
    index = root / "example.test" / "alice" / "index.sqlite"
    with sqlite3.connect(index) as db:                 # what an older Postroom left behind
        db.executescript("DROP TRIGGER usage_insert; DROP TRIGGER usage_delete; DROP TRIGGER usage_resize; "
                         "DROP TABLE usage;")
    with MailStore(root, hostname="mx.example.test") as store:
        box = store.mailbox(ALICE)
        assert box.used_bytes() == expected
        box.append("INBOX", message("after"))
        assert box.used_bytes() == _summed(box)


async def test_quota_counts_what_an_expunge_freed(store: MailStore, alice: AccountMailbox) -> None:
    data = message("big", body="x" * 2000 + "\r\n")
    limit = 2 * len(data) + 10
    await store.deliver([ALICE], data, quota=limit)
    await store.deliver([ALICE], data, quota=limit)
    with pytest.raises(QuotaExceeded):
        await store.deliver([ALICE], data, quota=limit)
    first = alice.messages("INBOX")[0].uid
    alice.set_flags("INBOX", [first], ["\\Deleted"], "add")
    alice.expunge("INBOX")
    assert await store.deliver([ALICE], data, quota=limit) == {ALICE: 3}
