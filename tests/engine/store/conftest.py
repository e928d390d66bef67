"""Fixtures for the mail store: a MailStore in a temporary mail root, and the events it published."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.events import Event
from engine.store import AccountMailbox, MailStore

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(subject: str = "Hello", body: str = "Hi there.\r\n", *, sender: str = "Carol <carol@remote.test>",
            extra: str = "") -> bytes:
    """A small RFC 5322 message with CRLF line ends, as SMTP hands it to the store."""
    return (
        f"Received: from remote.test by mx.example.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject))}@remote.test>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def store(tmp_path: Path, events: list[Event]) -> Iterator[MailStore]:
    with MailStore(tmp_path / "mail", notify=events.append, hostname="mx.example.test") as s:
        s.create_account(ALICE)
        s.create_account(BOB)
        yield s


@pytest.fixture
def alice(store: MailStore) -> AccountMailbox:
    return store.mailbox(ALICE)
