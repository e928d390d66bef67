"""The store's thread pool: every job runs once, a failing job hurts nobody else, shutdown finishes the queue."""

from __future__ import annotations

import functools
import logging
import threading

import pytest

from engine.store.workers import Workers

DEADLINE = 10.0


def test_every_submitted_job_runs_once_on_at_most_max_threads() -> None:
    pool = Workers(3, "test-pool")
    ran: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            ran.append(i)
            names.add(threading.current_thread().name)

    for i in range(200):
        pool.submit(functools.partial(job, i))
    pool.shutdown(wait=True)
    assert sorted(ran) == list(range(200))
    assert 1 <= len(names) <= 3 and all(n.startswith("test-pool_") for n in names)


def test_jobs_run_side_by_side_while_others_block() -> None:
    pool = Workers(4, "test-pool")
    release = threading.Event()
    started = threading.Barrier(5, timeout=DEADLINE)     # fails unless four jobs run at once
    finished: list[str] = []
    seen_by_fifth: list[int] = []
    done = threading.Event()

    def blocking() -> None:
        started.wait()
        assert release.wait(DEADLINE)
        finished.append("one")

    def fifth() -> None:
        seen_by_fifth.append(len(finished))
        done.set()

    try:
        for _ in range(4):
            pool.submit(blocking)
        started.wait()
        pool.submit(fifth)              # every thread is busy: it waits for the first one to finish
        release.set()
        assert done.wait(DEADLINE)
        assert seen_by_fifth[0] >= 1
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_failing_job_is_logged_and_the_pool_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    pool = Workers(1, "test-pool")
    after = threading.Event()

    def broken() -> None:
        raise OSError("disk on fire")

    with caplog.at_level(logging.ERROR, logger="engine.store.workers"):
        pool.submit(broken)
        pool.submit(after.set)
        assert after.wait(DEADLINE)
        pool.shutdown(wait=True)
    assert "test-pool job failed" in caplog.text and "disk on fire" in caplog.text


def test_shutdown_runs_what_is_queued_then_refuses_new_jobs() -> None:
    pool = Workers(1, "test-pool")
    gate = threading.Event()
    ran: list[str] = []
    pool.submit(lambda: gate.wait(DEADLINE))
    pool.submit(lambda: ran.append("queued"))
    gate.set()
    pool.shutdown(wait=True)
    assert ran == ["queued"]
    with pytest.raises(RuntimeError):
        pool.submit(lambda: ran.append("late"))
