"""Group commit: concurrent items share flushes, each hears only after its own batch, nobody waits to lead."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.store.groupcommit import GroupCommit, Waiter

DEADLINE = 10.0


class Flusher:
    """A flush that records its batches and can be held open until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_on: int | None = None

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.release.wait(DEADLINE)
        if self.fail_on in items:
            raise OSError("disk full")
        return [i * 10 for i in items]


def test_items_queued_during_a_flush_share_the_next_one() -> None:
    flusher = Flusher()
    commit: GroupCommit[int, int] = GroupCommit(flusher)
    flusher.release.clear()
    first = Waiter[int]()
    leader = threading.Thread(target=commit.submit, args=(1, first))
    leader.start()
    assert flusher.entered.wait(DEADLINE)
    waiters = [Waiter[int]() for _ in range(5)]
    for i, w in enumerate(waiters, start=2):
        commit.submit(i, w)          # a flush is running: these only queue, and return at once
    assert not any(w.finished for w in waiters)
    flusher.release.set()
    leader.join(DEADLINE)
    assert first.wait() == 10 and [w.wait() for w in waiters] == [20, 30, 40, 50, 60]
    assert flusher.batches == [[1], [2, 3, 4, 5, 6]]
    assert flusher.threads == [leader.name, leader.name]   # the leader flushed what queued meanwhile


def test_only_the_first_of_concurrent_callers_owns_the_flushing() -> None:
    commit: GroupCommit[int, int] = GroupCommit(Flusher())
    w1, w2 = Waiter[int](), Waiter[int]()
    assert commit.enqueue(1, w1) is True
    assert commit.enqueue(2, w2) is False
    commit.drain()
    assert (w1.wait(), w2.wait()) == (10, 20)
    assert commit.enqueue(3, Waiter[int]()) is True      # idle again after the drain


def test_a_failed_flush_fails_its_batch_only() -> None:
    flusher = Flusher()
    flusher.fail_on = 2
    commit: GroupCommit[int, int] = GroupCommit(flusher)
    w1, w2 = Waiter[int](), Waiter[int]()
    assert commit.enqueue(1, w1)
    commit.enqueue(2, w2)
    commit.drain()
    with pytest.raises(OSError, match="disk full"):
        w1.wait()
    with pytest.raises(OSError):
        w2.wait()
    assert commit.run(3) == 30


def test_twenty_threads_running_items_each_get_their_own_result() -> None:
    flusher = Flusher()
    commit: GroupCommit[int, int] = GroupCommit(flusher)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(commit.run, range(200)))
    assert results == [i * 10 for i in range(200)]
    assert sorted(i for batch in flusher.batches for i in batch) == list(range(200))


def test_a_blocked_caller_hands_the_rest_of_the_queue_to_another_thread() -> None:
    flusher = Flusher()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="handoff") as pool:
        commit: GroupCommit[int, int] = GroupCommit(flusher, pool.submit)
        flusher.release.clear()
        result: list[int] = []
        caller = threading.Thread(target=lambda: result.append(commit.run(1)), name="caller")
        caller.start()
        assert flusher.entered.wait(DEADLINE)
        later = Waiter[int]()
        commit.submit(2, later)
        flusher.release.set()
        caller.join(DEADLINE)
        assert result == [10]
        assert later.wait() == 20
    assert flusher.threads[0] == "caller"
    assert flusher.threads[1].startswith("handoff")
