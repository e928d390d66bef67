"""What lands on disk: LF files served back as CRLF with exact sizes, Maildir names others can read."""

from __future__ import annotations

import re

import pytest

from engine.interfaces import DELETED, DRAFT, FLAGGED, SEEN
from engine.store import AccountMailbox, MailStore
from engine.store.maildir import split_name, to_disk, to_wire, wire_size

from .conftest import ALICE, message

NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.mx\.example\.test,S=(\d+),W=(\d+)(:2,[A-Za-z]*)?$")


def test_crlf_message_is_stored_with_lf_and_read_back_byte_exact(alice: AccountMailbox) -> None:
    data = message(body="one\r\ntwo\r\n\r\nthree\r\n")
    _, uid = alice.append("INBOX", data)
    path = alice.path_of("INBOX", uid)
    assert b"\r\n" not in path.read_bytes()
    assert alice.read("INBOX", uid) == data
    assert alice.messages("INBOX")[0].size == len(data)


@pytest.mark.parametrize(
    ("given", "served"),
    [
        (b"Subject: a\r\n\r\nbare\rCR stays\r\n", b"Subject: a\r\n\r\nbare\rCR stays\r\n"),
        (b"Subject: a\n\nbare LF\n", b"Subject: a\r\n\r\nbare LF\r\n"),
        (b"Subject: a\r\n\r\nno final newline", b"Subject: a\r\n\r\nno final newline"),
        (b"Subject: a\r\n\r\nends in CR\r", b"Subject: a\r\n\r\nends in CR\r"),
    ],
)
def test_read_serves_crlf_and_exactly_rfc822_size_octets(alice: AccountMailbox, given: bytes,
                                                         served: bytes) -> None:
    _, uid = alice.append("INBOX", given)
    assert alice.read("INBOX", uid) == served
    assert alice.messages("INBOX")[0].size == len(served)
    assert alice.status("INBOX").size == len(served)


def test_line_end_helpers_agree_on_sizes() -> None:
    for disk in (b"", b"a\nb\n", b"a\r\nb\n", b"\r\r\n\n", b"x\r"):
        assert wire_size(disk) == len(to_wire(disk))
    assert to_disk(b"a\r\nb\r\n") == b"a\nb\n"


def test_file_names_carry_unique_base_sizes_and_sorted_flag_letters(alice: AccountMailbox) -> None:
    data = message()
    _, uid = alice.append("INBOX", data, [SEEN, FLAGGED, DRAFT, "$Important"])
    path = alice.path_of("INBOX", uid)
    assert path.parent.name == "cur"
    m = NAME.match(path.name)
    assert m, path.name
    assert int(m.group(5)) == len(path.read_bytes())   # S= is the size on disk (LF)
    assert int(m.group(6)) == len(data)                 # W= is RFC822.SIZE (CRLF)
    assert m.group(7) == ":2,DFS"                       # Maildir info: sorted, keywords not on disk
    flags = alice.messages("INBOX")[0].flags
    assert flags == {SEEN, FLAGGED, DRAFT, "$Important"}


def test_flag_changes_rename_the_file_so_other_maildir_readers_see_them(alice: AccountMailbox) -> None:
    _, uid = alice.append("INBOX", message())
    assert alice.path_of("INBOX", uid).parent.name == "new"
    alice.set_flags("INBOX", [uid], [SEEN, DELETED], "add")
    path = alice.path_of("INBOX", uid)
    assert path.parent.name == "cur"
    assert split_name(path.name)[1] == "ST"
    alice.set_flags("INBOX", [uid], [DELETED], "remove")
    assert split_name(alice.path_of("INBOX", uid).name)[1] == "S"


def test_internaldate_is_the_file_mtime(alice: AccountMailbox) -> None:
    _, uid = alice.append("INBOX", message(), internaldate=1_600_000_000.0)
    assert alice.path_of("INBOX", uid).stat().st_mtime == 1_600_000_000.0
    assert alice.messages("INBOX")[0].internaldate == 1_600_000_000.0


def test_account_layout_is_maildir_plus_plus(store: MailStore) -> None:
    root = store.account_path(ALICE)
    assert root == store.root / "example.test" / "alice"
    for d in ("", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"):
        for sub in ("cur", "new", "tmp"):
            assert (root / d / sub).is_dir()
        assert (root / d / "maildirfolder").exists() == (d != "")
    assert (root / "index.sqlite").exists()
    specials = {f.name: f.special_use for f in store.mailbox(ALICE).folders()}
    assert specials == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                        "Junk": "\\Junk", "Archive": "\\Archive"}


def test_summary_columns_are_decoded_from_headers(alice: AccountMailbox) -> None:
    data = message(
        "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        sender="=?utf-8?q?J=C3=B6rg?= <joerg@remote.test>",
        extra="Content-Type: multipart/mixed; boundary=x\r\nIn-Reply-To: <a@b>\r\nReferences: <z@b> <a@b>\r\n",
    )
    _, uid = alice.append("INBOX", data)
    (s,) = alice.summaries("INBOX")
    assert s.uid == uid
    assert s.subject == "Grüße"
    assert s.sender == "Jörg <joerg@remote.test>"
    assert s.date == 1704103200.0
    assert s.in_reply_to == "<a@b>" and s.references == "<z@b> <a@b>"
    assert s.has_attachments
