"""Message operations IMAP, POP3 and the viewer build on: flags, copy/move, expunge, changes, caches, search."""

from __future__ import annotations

import pytest

from engine.events import Event, MessageStored
from engine.interfaces import DELETED, FLAGGED, SEEN, NoSuchFolder, StoreError
from engine.store import AccountMailbox, NoSuchMessage

from .conftest import ALICE, message


def _fill(box: AccountMailbox, n: int, folder: str = "INBOX") -> list[int]:
    return [box.append(folder, message(f"m{i}"))[1] for i in range(n)]


def test_set_flags_modes_and_modseq(alice: AccountMailbox) -> None:
    _fill(alice, 2)
    base = alice.status("INBOX").highestmodseq
    changed, failed = alice.set_flags("INBOX", [1, 2], [SEEN, "$a"], "add")
    assert [m.uid for m in changed] == [1, 2] and failed == []
    assert all(m.modseq == base + 1 and m.flags == {SEEN, "$a"} for m in changed)
    changed, _ = alice.set_flags("INBOX", [1, 2], [SEEN], "add")
    assert changed == []                                  # nothing changed, no new MODSEQ
    assert alice.status("INBOX").highestmodseq == base + 1
    changed, _ = alice.set_flags("INBOX", [1], [FLAGGED], "set")
    assert changed[0].flags == {FLAGGED}
    changed, _ = alice.set_flags("INBOX", [2], ["$a"], "remove")
    assert changed[0].flags == {SEEN}
    assert alice.status("INBOX").unseen == 1


def test_set_flags_rejects_bad_flags_and_ignores_recent(alice: AccountMailbox) -> None:
    _fill(alice, 1)
    with pytest.raises(StoreError):
        alice.set_flags("INBOX", [1], ["\\Bogus"], "add")
    with pytest.raises(StoreError):
        alice.set_flags("INBOX", [1], ["bad keyword"], "add")
    changed, _ = alice.set_flags("INBOX", [1], ["\\seen", "\\Recent"], "add")
    assert changed[0].flags == {SEEN}


def test_unchangedsince_refuses_messages_modified_later(alice: AccountMailbox) -> None:
    """RFC 7162 §3.1.3: a conditional STORE leaves messages with a higher MODSEQ alone."""
    _fill(alice, 2)
    since = alice.status("INBOX").highestmodseq
    alice.set_flags("INBOX", [2], [FLAGGED], "add")
    changed, failed = alice.set_flags("INBOX", [1, 2], [SEEN], "add", unchanged_since=since)
    assert [m.uid for m in changed] == [1] and failed == [2]


def test_changes_since_reports_new_changed_and_expunged(alice: AccountMailbox) -> None:
    _fill(alice, 3)
    mark = alice.status("INBOX").highestmodseq
    alice.set_flags("INBOX", [1], [SEEN], "add")
    alice.set_flags("INBOX", [2], [DELETED], "add")
    alice.expunge("INBOX")
    alice.append("INBOX", message("late"))
    changes = alice.changes_since("INBOX", mark)
    assert [m.uid for m in changes.changed] == [1, 4]
    assert list(changes.expunged) == [2]
    assert changes.highestmodseq == alice.status("INBOX").highestmodseq
    assert alice.changes_since("INBOX", changes.highestmodseq).changed == []


def test_expunge_only_removes_deleted_messages_among_the_given_uids(alice: AccountMailbox) -> None:
    _fill(alice, 4)
    alice.set_flags("INBOX", [1, 2, 3], [DELETED], "add")
    assert alice.expunge("INBOX", [2, 3, 4]) == [2, 3]
    assert [m.uid for m in alice.messages("INBOX")] == [1, 4]
    assert alice.expunge("INBOX") == [1]
    assert len(list((alice.path / "cur").iterdir())) + len(list((alice.path / "new").iterdir())) == 1


def test_remove_deletes_whatever_the_flags(alice: AccountMailbox) -> None:
    _fill(alice, 3)
    assert alice.remove("INBOX", [1, 3, 99]) == [1, 3]
    assert [m.uid for m in alice.messages("INBOX")] == [2]
    with pytest.raises(NoSuchMessage):
        alice.read("INBOX", 1)


def test_copy_gives_new_uids_and_keeps_flags_and_bytes(alice: AccountMailbox, events: list[Event]) -> None:
    _fill(alice, 3)
    alice.set_flags("INBOX", [2], [SEEN, "$kw"], "add")
    alice.set_cached("INBOX", 2, "ENVELOPE", "(cached)")
    alice.append("Archive", message("already"))
    events.clear()
    validity, pairs = alice.copy("INBOX", [2, 3, 42], "Archive")
    assert validity == alice.status("Archive").uidvalidity
    assert pairs == [(2, 2), (3, 3)]
    assert alice.read("Archive", 2) == alice.read("INBOX", 2)
    assert alice.messages("Archive")[1].flags == {SEEN, "$kw"}
    assert alice.get_cached("Archive", 2, "ENVELOPE") == "(cached)"
    assert alice.status("INBOX").messages == 3
    assert MessageStored(ALICE, "Archive", 3) in events
    with pytest.raises(NoSuchFolder):
        alice.copy("INBOX", [1], "Nowhere")


def test_move_expunges_the_source_and_indexes_the_target(alice: AccountMailbox) -> None:
    _fill(alice, 3)
    mark = alice.status("INBOX").highestmodseq
    _, pairs = alice.move("INBOX", [1, 3], "Trash")
    assert pairs == [(1, 1), (3, 2)]
    assert [m.uid for m in alice.messages("INBOX")] == [2]
    assert list(alice.changes_since("INBOX", mark).expunged) == [1, 3]
    assert {s.subject for s in alice.summaries("Trash")} == {"m0", "m2"}
    assert b"Subject: m2" in alice.read("Trash", 2)


def test_move_within_one_folder_renumbers(alice: AccountMailbox) -> None:
    _fill(alice, 2)
    _, pairs = alice.move("INBOX", [1], "INBOX")
    assert pairs == [(1, 3)]
    assert [m.uid for m in alice.messages("INBOX")] == [2, 3]
    assert b"Subject: m0" in alice.read("INBOX", 3)


def test_claim_recent_hands_each_new_message_to_one_caller(alice: AccountMailbox) -> None:
    _fill(alice, 2)
    assert alice.status("INBOX").recent == 2
    assert alice.claim_recent("INBOX") == {1, 2}
    assert alice.claim_recent("INBOX") == set()
    assert alice.status("INBOX").recent == 0
    assert alice.path_of("INBOX", 1).parent.name == "cur"
    assert b"Subject: m0" in alice.read("INBOX", 1)


def test_claim_recent_takes_only_what_the_caller_already_knows_of(alice: AccountMailbox) -> None:
    # A session that saw UIDs up to 1 must not take UID 2, which arrived after it looked: it would drop
    # it as unknown and nobody would ever see it \Recent (RFC 3501 §2.3.2).
    _fill(alice, 2)
    assert alice.recent_uids("INBOX") == {1, 2}          # a read-only look takes nothing
    assert alice.claim_recent("INBOX", upto=1) == {1}
    assert alice.recent_uids("INBOX") == {2}
    assert alice.claim_recent("INBOX") == {2}


def test_copies_and_moves_land_in_cur_where_only_the_imap_ledger_hands_out_recent(alice: AccountMailbox) -> None:
    _fill(alice, 2)
    alice.create_folder("Dest")
    _, copied = alice.copy("INBOX", [1], "Dest")
    _, moved = alice.move("INBOX", [2], "Dest")
    for _, uid in (*copied, *moved):
        assert alice.path_of("Dest", uid).parent.name == "cur"
    assert alice.recent_uids("Dest") == set()


def test_cache_values_live_and_die_with_their_message(alice: AccountMailbox) -> None:
    _fill(alice, 1)
    assert alice.get_cached("INBOX", 1, "BODYSTRUCTURE") is None
    alice.set_cached("INBOX", 1, "BODYSTRUCTURE", "(x)")
    alice.set_cached("INBOX", 9, "BODYSTRUCTURE", "(no such message)")
    assert alice.get_cached("INBOX", 1, "BODYSTRUCTURE") == "(x)"
    assert alice.get_cached("INBOX", 9, "BODYSTRUCTURE") is None
    alice.remove("INBOX", [1])
    assert alice.get_cached("INBOX", 1, "BODYSTRUCTURE") is None


def test_search_text_finds_sender_subject_and_decoded_body(alice: AccountMailbox) -> None:
    alice.append("INBOX", message("Quarterly report"))
    alice.append("INBOX", message("other", sender="Zoë <zoe@remote.test>"))
    alice.append("INBOX", message(
        "encoded", body="SGVsbG8gUGluZWFwcGxlIHdvcmxk\r\n",
        extra="MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
    ))
    assert alice.search_text("INBOX", "QUARTERLY") == [1]
    assert alice.search_text("INBOX", "zoë") == [2]
    assert alice.search_text("INBOX", "pineapple") == [3]
    assert alice.search_text("INBOX", "absent") == []


def test_summaries_sort_and_page_in_sqlite(alice: AccountMailbox) -> None:
    for i, subject in enumerate(["b", "C", "a"]):
        alice.append("INBOX", message(subject, body="x" * (10 * (i + 1)) + "\r\n"))
    assert [s.subject for s in alice.summaries("INBOX", sort="subject", descending=False)] == ["a", "b", "C"]
    assert [s.uid for s in alice.summaries("INBOX", sort="arrival")] == [3, 2, 1]
    assert [s.uid for s in alice.summaries("INBOX", sort="size", descending=False)] == [1, 2, 3]
    assert [s.uid for s in alice.summaries("INBOX", sort="arrival", offset=1, limit=1)] == [2]
    with pytest.raises(StoreError):
        alice.summaries("INBOX", sort="bogus")


def test_read_of_a_file_renamed_by_another_program_still_works(alice: AccountMailbox) -> None:
    _fill(alice, 1)
    path = alice.path_of("INBOX", 1)
    path.rename(alice.path / "cur" / (path.name + ":2,S"))
    assert b"Subject: m0" in alice.read("INBOX", 1)
    assert alice.messages("INBOX")[0].flags == {SEEN}


def test_bulk_reads_and_caches_answer_in_the_order_asked(alice: AccountMailbox) -> None:
    _fill(alice, 3)
    alice.remove("INBOX", [2])
    got = list(alice.read_many("INBOX", [3, 2, 1]))
    assert [uid for uid, _ in got] == [3, 2, 1]
    assert got[1][1] is None
    assert got[0][1] == alice.read("INBOX", 3) and b"Subject: m0" in (got[2][1] or b"")
    alice.set_cached_many("INBOX", "ENVELOPE", [(1, "one"), (2, "gone"), (3, "three")])
    assert alice.get_cached_many("INBOX", [1, 2, 3], "ENVELOPE") == {1: "one", 3: "three"}


def test_status_messages_and_summaries_come_from_the_index_alone(
    alice: AccountMailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(alice, 5)
    alice.status("INBOX")
    opened: list[str] = []
    real_open = open

    def spy(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spy)
    monkeypatch.setattr("pathlib.Path.read_bytes", lambda self: pytest.fail(f"read {self}"))
    assert alice.status("INBOX").messages == 5
    assert len(alice.messages("INBOX")) == 5
    assert len(alice.summaries("INBOX", limit=2)) == 2
    assert alice.changes_since("INBOX", 0).highestmodseq > 0
    assert opened == []
