"""Read-ahead of messages over the real store: right bytes in any order, bounded memory, errors kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.interfaces import StoreError
from engine.pop3 import readahead
from engine.pop3.readahead import ReadAhead
from engine.store import MailStore

ADDRESS = "dora@example.test"


def body(i: int, size: int = 2000) -> bytes:
    head = f"Subject: message {i}\r\n\r\n".encode()
    return head + b".x" * ((size - len(head)) // 2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MailStore]:
    s = MailStore(tmp_path / "mail", hostname="test")
    s.create_account(ADDRESS)
    yield s
    s.close()


def fill(store: MailStore, count: int, size: int = 2000) -> ReadAhead:
    box = store.mailbox(ADDRESS)
    for i in range(1, count + 1):
        box.append("INBOX", body(i, size))
    return ReadAhead(box, box.messages("INBOX"), asyncio.to_thread)


def expected(i: int, size: int = 2000) -> bytes:
    return body(i, size)


async def test_in_order_out_of_order_and_repeated(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "BATCH_COUNT", 4)          # several batches from a few messages
    n = 13
    ahead = fill(store, n)
    for i in [*range(1, n + 1), 5, 2, n, 1, 1]:
        assert await ahead.message(i, set()) == expected(i)
    ahead.clear()


async def test_deleted_messages_are_not_read_ahead(store: MailStore) -> None:
    ahead = fill(store, 6)
    assert await ahead.message(1, {2, 3}) == expected(1)
    assert await ahead.message(4, {2, 3}) == expected(4)
    ahead.clear()


async def test_big_messages_are_read_only_when_asked_for(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "BATCH_BYTES", 5000)
    ahead = fill(store, 4, size=6000)
    for i in range(1, 5):
        assert await ahead.message(i, set()) == expected(i, 6000)
    ahead.clear()


async def test_a_message_removed_by_someone_else_is_an_error_for_it_alone(store: MailStore) -> None:
    ahead = fill(store, 4)
    box = store.mailbox(ADDRESS)
    uids = [m.uid for m in box.messages("INBOX")]
    box.remove("INBOX", [uids[2]])
    assert await ahead.message(1, set()) == expected(1)
    assert await ahead.message(2, set()) == expected(2)
    with pytest.raises(StoreError):
        await ahead.message(3, set())
    assert await ahead.message(4, set()) == expected(4)
    ahead.clear()
