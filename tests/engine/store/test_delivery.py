"""Local delivery: durable before it returns, written once for many recipients, safe under concurrency."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path

import pytest

from engine.events import Event, MessageStored
from engine.interfaces import QuotaExceeded
from engine.store import AccountOverQuota, MailStore

from .conftest import ALICE, BOB, message


def _inbox_new(store: MailStore, address: str) -> Path:
    return store.account_path(address) / "new"


async def test_delivered_message_is_in_new_with_its_received_header_when_deliver_returns(store: MailStore) -> None:
    data = message("durable")
    uids = await store.deliver([ALICE], data)
    assert uids == {ALICE: 1}
    files = list(_inbox_new(store, ALICE).iterdir())
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.startswith(b"Received: from remote.test")
    assert content == data.replace(b"\r\n", b"\n")
    assert list((store.account_path(ALICE) / "tmp").iterdir()) == []


# The fsync trace below names each synced descriptor by reading its /proc/self/fd link; other systems have
# no such directory, and the order it checks is the same code on every platform.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="traces fsyncs through /proc/self/fd, which only Linux provides")


@pytest.fixture
def fs_trace(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Records fsync (by path), rename and link calls, in order, from every thread."""
    trace: list[tuple[str, str]] = []
    real_fsync, real_link, real_rename = os.fsync, os.link, os.rename

    def fsync(fd: int) -> None:
        trace.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def link(src: str | Path, dst: str | Path, **kw: object) -> None:
        trace.append(("appear", str(dst)))
        real_link(src, dst)

    def rename(src: str | Path, dst: str | Path, **kw: object) -> None:
        trace.append(("appear", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "rename", rename)
    return trace


@linux_only
async def test_delivery_fsyncs_file_before_it_appears_and_directory_before_returning(
    store: MailStore, fs_trace: list[tuple[str, str]]
) -> None:
    store.mailbox(ALICE)   # opened before tracing
    fs_trace.clear()
    await store.deliver([ALICE], message("ordered"))
    account = store.account_path(ALICE)
    kinds = [(op, str(Path(p).relative_to(account).parent)) for op, p in fs_trace]
    assert kinds == [("fsync", "tmp"), ("appear", "new"), ("fsync", ".")]
    assert fs_trace[-1][1] == str(account / "new")
    # ... and the index row was committed before deliver returned.
    assert [m.uid for m in store.mailbox(ALICE).messages("INBOX")] == [1]


@linux_only
async def test_every_copy_is_synced_in_place_before_deliver_returns(
    store: MailStore, fs_trace: list[tuple[str, str]]
) -> None:
    store.mailbox(ALICE), store.mailbox(BOB)
    fs_trace.clear()
    await store.deliver([ALICE, BOB], message("shared"))
    alice_new, bob_new = str(store.account_path(ALICE) / "new"), str(store.account_path(BOB) / "new")
    ops = [(op, os.path.dirname(p) if op == "appear" else p) for op, p in fs_trace]
    tmp_dirs = {str(store.account_path(a) / "tmp") for a in (ALICE, BOB)}
    assert ops[0][0] == "fsync" and os.path.dirname(ops[0][1]) in tmp_dirs   # the one file, before any link
    assert sorted(ops[1:3]) == [("appear", alice_new), ("appear", bob_new)]
    assert sorted(ops[3:]) == [("fsync", alice_new), ("fsync", bob_new)]
    assert store.mailbox(ALICE).status("INBOX").messages == store.mailbox(BOB).status("INBOX").messages == 1


async def test_one_message_for_several_accounts_is_one_file_linked_into_each(store: MailStore) -> None:
    uids = await store.deliver([ALICE, BOB, ALICE.upper()], message("shared"))
    assert uids == {ALICE: 1, BOB: 1, ALICE.upper(): 1}   # keyed as the caller spelled them
    a = next(_inbox_new(store, ALICE).iterdir())
    b = next(_inbox_new(store, BOB).iterdir())
    assert os.path.samefile(a, b)
    assert a.stat().st_nlink == 2


async def test_twenty_concurrent_deliveries_all_land_with_unique_uids(store: MailStore,
                                                                      events: list[Event]) -> None:
    events.clear()
    results = await asyncio.gather(*(store.deliver([ALICE], message(f"m{i}")) for i in range(20)))
    uids = sorted(r[ALICE] for r in results)
    assert uids == list(range(1, 21))
    box = store.mailbox(ALICE)
    assert [m.uid for m in box.messages("INBOX")] == uids
    assert len(list(_inbox_new(store, ALICE).iterdir())) == 20
    subjects = {s.subject for s in box.summaries("INBOX")}
    assert subjects == {f"m{i}" for i in range(20)}
    stored = [e for e in events if isinstance(e, MessageStored)]
    assert sorted(e.uid for e in stored) == uids


async def test_delivery_into_another_folder_creates_it(store: MailStore) -> None:
    uids = await store.deliver([ALICE], message("filed"), folder="Lists/python")
    assert uids == {ALICE: 1}
    names = [f.name for f in store.mailbox(ALICE).folders()]
    assert "Lists" in names and "Lists/python" in names
    assert (store.account_path(ALICE) / ".Lists.python" / "new").is_dir()


async def test_delivery_to_an_unknown_account_creates_its_maildir(store: MailStore) -> None:
    await store.deliver(["new@example.test"], message())
    assert store.has_account("new@example.test")
    assert store.mailbox("new@example.test").status("INBOX").messages == 1


async def test_quota_refuses_before_anything_is_written(store: MailStore) -> None:
    data = message("big", body="x" * 2000 + "\r\n")
    await store.deliver([ALICE], data, quota=4000)
    with pytest.raises(QuotaExceeded) as err:
        await store.deliver([ALICE, BOB], data, quota={ALICE: 4000, BOB: None})
    assert isinstance(err.value, AccountOverQuota) and err.value.address == ALICE
    assert store.mailbox(ALICE).status("INBOX").messages == 1
    assert store.mailbox(BOB).status("INBOX").messages == 0
    with pytest.raises(QuotaExceeded):
        store.mailbox(ALICE).append("Sent", data, quota=4000)


async def test_message_stored_event_is_published_before_deliver_returns(store: MailStore,
                                                                        events: list[Event]) -> None:
    events.clear()
    await store.deliver([ALICE], message())
    assert MessageStored(ALICE, "INBOX", 1) in events


async def test_deliveries_interleaved_with_flag_changes_and_expunges_stay_consistent(store: MailStore) -> None:
    box = store.mailbox(ALICE)

    def churn() -> None:
        for _ in range(15):
            uids = [m.uid for m in box.messages("INBOX")]
            box.set_flags("INBOX", uids[::2], ["\\Deleted"], "add")
            box.expunge("INBOX")
            box.claim_recent("INBOX")

    results, _ = await asyncio.gather(
        asyncio.gather(*(store.deliver([ALICE, BOB], message(f"c{i}")) for i in range(30))),
        asyncio.to_thread(churn),
    )
    alice_uids = sorted(r[ALICE] for r in results)
    assert len(set(alice_uids)) == 30
    status = box.status("INBOX")
    expunged = box.changes_since("INBOX", 0).expunged
    assert status.messages + len(expunged) == 30
    assert status.uidnext == 31
    files = list((store.account_path(ALICE) / "new").iterdir()) + list((store.account_path(ALICE) / "cur").iterdir())
    assert len(files) == status.messages
    assert store.mailbox(BOB).status("INBOX").messages == 30


@pytest.mark.parametrize("address", [ALICE, "carol@example.test"], ids=["open account", "unopened account"])
async def test_a_delivery_whose_caller_gives_up_still_completes(store: MailStore, address: str) -> None:
    # The SMTP client may drop the connection while its message is being written: the store finishes the
    # job anyway (no half-indexed message), and the abandoned result bothers nobody.
    task = asyncio.ensure_future(store.deliver([address], message("abandoned")))
    await asyncio.sleep(0)          # let it start and hand the job to the store's threads
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    box = store.mailbox(address)
    deadline = asyncio.get_running_loop().time() + 10
    while box.status("INBOX").messages < 1 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)   # polling with a deadline: the job runs on the store's own schedule
    assert [s.subject for s in box.summaries("INBOX")] == ["abandoned"]
    assert len(list(_inbox_new(store, address).iterdir())) == 1
    assert await store.deliver([address], message("next")) == {address: 2}


async def test_many_first_deliveries_to_several_accounts_never_exhaust_the_store_threads(tmp_path: Path) -> None:
    """Regression: the first delivery to an account runs as one blocking job that waits for its flushes;
    with every delivery thread waiting like that, the flushes they handed off must still run."""
    with MailStore(tmp_path / "mail", hostname="mx.example.test", max_workers=2) as fresh:
        results = await asyncio.wait_for(asyncio.gather(
            *(fresh.deliver([ALICE, BOB], message(f"first {i}")) for i in range(12))), 60)
        assert len({r[ALICE] for r in results}) == len({r[BOB] for r in results}) == 12


def _disk_full(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failing", ["write", "fsync"])
async def test_a_full_disk_fails_the_delivery_and_leaves_no_partial_file(
        store: MailStore, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    store.mailbox(ALICE)
    monkeypatch.setattr(os, failing, _disk_full)
    with pytest.raises(OSError) as caught:
        await store.deliver([ALICE], message("no room"))
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert list((store.account_path(ALICE) / "tmp").iterdir()) == []
    assert list(_inbox_new(store, ALICE).iterdir()) == []
    assert await store.deliver([ALICE], message("room again")) == {ALICE: 1}


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_full_disk_fails_that_delivery_of_a_batch_and_leaves_no_partial_file(
        store: MailStore, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """The delivery agent's path: the failure is that request's outcome, and tmp/ is left clean."""
    store.mailbox(ALICE)
    monkeypatch.setattr(os, failing, _disk_full)
    [outcome] = store.deliver_batch([([ALICE], message("no room"), "INBOX", None)])
    monkeypatch.undo()
    assert isinstance(outcome, OSError) and outcome.errno == errno.ENOSPC
    assert list((store.account_path(ALICE) / "tmp").iterdir()) == []
    assert store.deliver_batch([([ALICE], message("room again"), "INBOX", None)]) == [{ALICE: 1}]
