"""Folders: IMAP names mapped to Maildir++ directories safely, and the RFC 3501 folder operations."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.interfaces import FolderExists, NoSuchFolder, StoreError
from engine.store import AccountMailbox, InvalidName, MailStore, decode_mutf7, encode_mutf7
from engine.store.mailbox import INDEX_FILE
from engine.store.names import folder_dirname, folder_from_dirname, normalize_folder

from .conftest import ALICE, message

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)   # typed: mypy infers tuple[str] inline, hypothesis wants a Literal


@pytest.mark.parametrize(
    ("name", "dirname"),
    [
        ("Work/2024", ".Work.2024"),
        ("a.b", ".a%2Eb"),
        ("100%", ".100%25"),
        ("Entwürfe", ".Entw&APw-rfe"),
        ("Tom & Jerry", ".Tom &- Jerry"),
        ("日本語", ".&ZeVnLIqe-"),
        ("inbox/child", ".INBOX.child"),
        ("iNbOx", ""),
    ],
)
def test_imap_names_map_to_maildir_plus_plus_directories(name: str, dirname: str) -> None:
    assert folder_dirname(name) == dirname
    assert folder_from_dirname(dirname) == normalize_folder(name)


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "a//b", "a/", "..", "a/../b", "a/./b", "nul\0", "line\nbreak", "tab\there", "del\x7f"],
)
def test_names_that_are_empty_or_could_escape_the_account_are_refused(alice: AccountMailbox, name: str) -> None:
    with pytest.raises(InvalidName):
        normalize_folder(name)
    with pytest.raises(StoreError):
        alice.status(name)
    if name not in ("a/",):
        with pytest.raises(StoreError):
            alice.create_folder(name)


def test_dots_cannot_climb_out_of_the_account(alice: AccountMailbox) -> None:
    alice.create_folder("..x")
    alice.create_folder("x/..y")
    created = {p.name for p in alice.path.iterdir() if p.is_dir()}
    assert {".%2E%2Ex", ".x.%2E%2Ey"} <= created
    assert not any(p.name.startswith("x") for p in alice.path.parent.iterdir())


component = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@given(st.lists(component, min_size=1, max_size=4))
def test_folder_name_encoding_round_trips(parts: list[str]) -> None:
    name = "/".join(parts)
    try:
        canonical = normalize_folder(name)
    except InvalidName as exc:
        assert "too long" in str(exc)
        return
    dirname = folder_dirname(canonical)
    assert ("/" not in dirname and dirname.startswith(".")) or canonical == "INBOX"
    assert all(0x20 <= ord(ch) <= 0x7E for ch in dirname)
    assert folder_from_dirname(dirname) == canonical
    assert dirname.count(".") == len(parts) or canonical == "INBOX"


@given(st.text(alphabet=st.characters(blacklist_categories=SURROGATES), max_size=20))
def test_modified_utf7_round_trips(text: str) -> None:
    encoded = encode_mutf7(text)
    assert all(0x20 <= ord(ch) <= 0x7E for ch in encoded)
    assert decode_mutf7(encoded) == text


def test_create_makes_a_maildir_folder_with_parents(alice: AccountMailbox) -> None:
    alice.create_folder("Projects/2024/Q1", special_use=None)
    names = [f.name for f in alice.folders()]
    assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= set(names)
    d = alice.path / ".Projects.2024.Q1"
    assert (d / "maildirfolder").exists() and (d / "cur").is_dir()
    with pytest.raises(FolderExists):
        alice.create_folder("Projects/2024")
    with pytest.raises(FolderExists):
        alice.create_folder("inbox")


def test_folders_lists_inbox_first_then_by_name(alice: AccountMailbox) -> None:
    alice.create_folder("Zeta")
    alice.create_folder("Alpha", special_use="\\Flagged")
    infos = alice.folders()
    assert infos[0].name == "INBOX"
    assert [f.name for f in infos[1:]] == sorted(f.name for f in infos[1:])
    assert next(f for f in infos if f.name == "Alpha").special_use == "\\Flagged"


def test_delete_refuses_inbox_and_removes_the_directory(alice: AccountMailbox) -> None:
    with pytest.raises(StoreError):
        alice.delete_folder("inbox")
    alice.create_folder("Old")
    alice.append("Old", message())
    old_validity = alice.status("Old").uidvalidity
    alice.delete_folder("Old")
    assert not (alice.path / ".Old").exists()
    assert "Old" not in [f.name for f in alice.folders()]
    with pytest.raises(NoSuchFolder):
        alice.status("Old")
    alice.create_folder("Old")
    status = alice.status("Old")
    assert status.messages == 0 and status.uidvalidity > old_validity


def test_rename_moves_children_and_keeps_uids(alice: AccountMailbox) -> None:
    alice.create_folder("Work/2024")
    alice.append("Work/2024", message("kept"))
    validity = alice.status("Work/2024").uidvalidity
    alice.rename_folder("Work", "Job")
    names = {f.name for f in alice.folders()}
    assert {"Job", "Job/2024"} <= names and not {"Work", "Work/2024"} & names
    assert (alice.path / ".Job.2024").is_dir() and not (alice.path / ".Work.2024").exists()
    status = alice.status("Job/2024")
    assert status.uidvalidity == validity and status.messages == 1
    assert b"Subject: kept" in alice.read("Job/2024", 1)
    with pytest.raises(FolderExists):
        alice.rename_folder("Job", "Sent")
    with pytest.raises(NoSuchFolder):
        alice.rename_folder("Nope", "Other")
    with pytest.raises(StoreError):
        alice.rename_folder("Job", "Job/inner")


def test_renaming_inbox_moves_its_messages_and_leaves_it_empty(alice: AccountMailbox) -> None:
    """RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox; INBOX stays."""
    alice.create_folder("INBOX/child")
    for i in range(3):
        alice.append("INBOX", message(f"m{i}"), ["\\Seen", "$kw"] if i == 0 else [])
    inbox_before = alice.status("INBOX")
    alice.rename_folder("INBOX", "Old mail")
    inbox = alice.status("INBOX")
    assert inbox.messages == 0 and inbox.uidvalidity == inbox_before.uidvalidity
    assert inbox.uidnext == inbox_before.uidnext
    moved = alice.messages("Old mail")
    assert [m.uid for m in moved] == [1, 2, 3]
    assert moved[0].flags == {"\\Seen", "$kw"}
    assert {s.subject for s in alice.summaries("Old mail")} == {"m0", "m1", "m2"}
    assert list((alice.path / "new").iterdir()) == [] and list((alice.path / "cur").iterdir()) == []
    assert "INBOX/child" in {f.name for f in alice.folders()}
    assert alice.append("INBOX", message("new"))[1] == inbox_before.uidnext


def test_subscriptions_are_remembered(alice: AccountMailbox) -> None:
    alice.set_subscribed("Junk", False)
    assert {f.name: f.subscribed for f in alice.folders()}["Junk"] is False


def test_a_subscription_outlives_its_folder_and_moves_with_a_rename(alice: AccountMailbox) -> None:
    alice.create_folder("Projects/Old")
    alice.delete_folder("Projects/Old")
    assert "Projects/Old" in alice.subscriptions()        # RFC 3501 §6.3.6
    alice.rename_folder("Projects", "Work")
    assert "Work" in alice.subscriptions() and "Projects" not in alice.subscriptions()
    alice.set_subscribed("Not/Yet", True)                 # a valid name need not exist yet
    assert "Not/Yet" in alice.subscriptions()
    alice.set_subscribed("Not/Yet", False)
    with pytest.raises(NoSuchFolder):
        alice.set_subscribed("Not/Yet", False)


def test_subscriptions_of_an_index_from_before_the_subscriptions_table_carry_over(tmp_path: Path) -> None:
    with MailStore(tmp_path / "mail", hostname="mx.example.test") as store:
        store.create_account(ALICE)
        index = store.mailbox(ALICE).path / INDEX_FILE
    db = sqlite3.connect(index)
    with db:      # what an older Postroom left: the flag on the folder row, no table
        db.execute("UPDATE folders SET subscribed = 0 WHERE name = 'Junk'")
        db.execute("DROP TABLE subscriptions")
        db.execute("DELETE FROM meta WHERE key = 'subscriptions'")
    db.close()
    with MailStore(tmp_path / "mail", hostname="mx.example.test") as store:
        subscribed = {f.name: f.subscribed for f in store.mailbox(ALICE).folders()}
    assert subscribed["Junk"] is False
    assert subscribed["INBOX"] and subscribed["Sent"] and subscribed["Archive"]


def test_a_folder_made_by_another_tool_is_adopted(alice: AccountMailbox, tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (alice.path / ".FromMutt" / sub).mkdir(parents=True)
    (alice.path / ".FromMutt" / "new" / "1.2.host").write_bytes(b"Subject: x\n\ny\n")
    assert "FromMutt" in [f.name for f in alice.folders()]
    assert alice.status("FromMutt").messages == 1
