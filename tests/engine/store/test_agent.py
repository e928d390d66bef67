"""The delivery agent: local delivery from a child process, into the same Maildirs and indexes.

The parent's MailStore sends every deliver() on the agent's loop there; each test below
checks what a client of the parent's store sees, since that is what IMAP, POP3 and the viewer read."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events import Event, MessageStored
from engine.interfaces import QuotaExceeded, StoreError
from engine.store import MailStore
from engine.store.agent import DeliveryAgent, _frame, _Frames

from .conftest import ALICE, BOB, message


@pytest.fixture
async def agent(store: MailStore, events: list[Event]) -> AsyncIterator[DeliveryAgent]:
    agent = DeliveryAgent(store.root, "mx.example.test", events.append)
    await agent.start()
    store.attach_agent(agent)
    yield agent
    store.attach_agent(None)
    await agent.close()


async def test_a_delivery_sent_to_the_agent_is_durable_indexed_and_announced_in_the_parent(
        store: MailStore, agent: DeliveryAgent, events: list[Event]) -> None:
    uids = await agent.deliver([ALICE], message("By the agent"))
    assert set(uids) == {ALICE}
    mailbox = store.mailbox(ALICE)
    assert [m.uid for m in mailbox.messages("INBOX")] == [uids[ALICE]]
    assert b"Subject: By the agent" in mailbox.read("INBOX", uids[ALICE])
    assert MessageStored(ALICE, "INBOX", uids[ALICE]) in events
    new = list((store.account_path(ALICE) / "new").iterdir())
    assert len(new) == 1 and f"P{agent.pid}Q" in new[0].name     # written by the agent process


async def test_concurrent_deliveries_through_the_agent_get_unique_uids(store: MailStore, agent: DeliveryAgent) -> None:
    results = await asyncio.gather(*(store.deliver([ALICE, BOB], message(f"m{i}")) for i in range(60)))
    for account in (ALICE, BOB):
        uids = [r[account] for r in results]
        assert len(set(uids)) == 60
        assert sorted(m.uid for m in store.mailbox(account).messages("INBOX")) == sorted(uids)
    writers = {p.name.split("P", 1)[1].split("Q", 1)[0] for p in (store.account_path(ALICE) / "new").iterdir()}
    assert writers == {str(agent.pid)}       # deliver() on the agent's loop always goes there


async def test_the_agent_and_this_process_deliver_into_one_index_at_once(store: MailStore,
                                                                          agent: DeliveryAgent) -> None:
    """deliver_sync (DSNs, the queue's local copies) stays in this process while the agent commits into the
    same index.sqlite: SQLite serialises the two writers and no UID is handed out twice."""
    there = [store.deliver([ALICE], message(f"agent {i}")) for i in range(30)]
    here = [asyncio.to_thread(store.deliver_sync, [ALICE], message(f"here {i}")) for i in range(30)]
    results = await asyncio.gather(*there, *here)
    uids = [r[ALICE] for r in results]
    assert len(set(uids)) == 60
    assert sorted(m.uid for m in store.mailbox(ALICE).messages("INBOX")) == sorted(uids)
    writers = {p.name.split("P", 1)[1].split("Q", 1)[0] for p in (store.account_path(ALICE) / "new").iterdir()}
    assert writers == {str(os.getpid()), str(agent.pid)}


async def test_quota_and_store_errors_come_back_as_the_same_exceptions(
        store: MailStore, agent: DeliveryAgent) -> None:
    with pytest.raises(QuotaExceeded):
        await agent.deliver([ALICE], message("Too big", body="x" * 5000 + "\r\n"), quota=100)
    with pytest.raises(StoreError):
        await agent.deliver(["not an address"], message("Nobody"))
    assert store.mailbox(ALICE).messages("INBOX") == []


async def test_when_the_agent_dies_waiting_deliveries_fail_and_the_next_starts_a_new_agent(
        store: MailStore, agent: DeliveryAgent) -> None:
    first = agent.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(StoreError):
        await agent.deliver([ALICE], message("Into the void"))
    uids = await agent.deliver([ALICE], message("After the restart"))
    assert agent.pid not in (None, first)
    # Whatever the dead agent had placed is found by the parent's resync; nothing is indexed twice.
    mailbox = store.mailbox(ALICE)
    assert uids[ALICE] in [m.uid for m in mailbox.messages("INBOX")]
    files = list((store.account_path(ALICE) / "new").iterdir()) + list((store.account_path(ALICE) / "cur").iterdir())
    assert len(mailbox.messages("INBOX")) == len(files)


async def test_a_removed_account_is_forgotten_by_the_agent(store: MailStore, agent: DeliveryAgent) -> None:
    await agent.deliver([BOB], message("Before"))
    store.remove_account(BOB, delete_files=True)
    store.create_account(BOB)
    uids = await agent.deliver([BOB], message("After"))
    assert [m.uid for m in store.mailbox(BOB).messages("INBOX")] == [uids[BOB]]


async def test_closing_lets_the_agent_finish_and_exit(store: MailStore, events: list[Event]) -> None:
    agent = DeliveryAgent(store.root, "mx.example.test", events.append)
    await agent.start()
    process = agent._process
    assert process is not None and process.poll() is None
    pending = [asyncio.ensure_future(agent.deliver([ALICE], message(f"late {i}"))) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.gather(*pending)
    await agent.close()
    assert process.returncode == 0          # exited by itself once its socket closed, and reaped
    assert len(store.mailbox(ALICE).messages("INBOX")) == 5


def test_the_agent_refuses_to_be_started_by_hand(tmp_path: Path) -> None:
    from engine.store.agent import agent_main

    assert agent_main([str(tmp_path)]) == 2


async def test_a_message_far_larger_than_one_read_arrives_intact(store: MailStore, agent: DeliveryAgent) -> None:
    body = "".join(f"line {i:07d} of a large message\r\n" for i in range(300_000))     # about 10 MB
    data = message("Large", body=body)
    uids = await agent.deliver([ALICE], data)
    assert store.mailbox(ALICE).read("INBOX", uids[ALICE]) == data


@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(min_value=1, max_value=700), min_size=1))
def test_frames_come_out_whole_however_the_stream_is_cut(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(_frame(("deliver", n, payload)) for n, payload in enumerate(payloads))
    frames, seen, pos, i = _Frames(), [], 0, 0
    while pos < len(stream):
        piece = stream[pos:pos + cuts[i % len(cuts)]]
        seen += frames.feed(piece)
        pos += len(piece)
        i += 1
    assert seen == [("deliver", n, payload) for n, payload in enumerate(payloads)]
