"""A lean thread pool for the store's blocking work: a job in, nothing out.

Every delivery is one job, and each costs the engine loop a submit: concurrent.futures' pool builds a
Future, takes three locks and probes a semaphore per job, a sizeable share of a delivery's own Python
time.  Store jobs report through their own callbacks, so this pool only queues a callable (a C
SimpleQueue) and starts a thread when no idle one is left, up to a maximum.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], object]


class Workers:
    """Up to `max_workers` threads running submitted jobs in order of submission."""

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError("a pool needs at least one thread")
        self._max = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0              # threads waiting for a job that no submit has counted on yet
        self._closed = False

    def submit(self, job: Job) -> None:
        """Runs `job()` on a pool thread; RuntimeError once the pool is shut down.  A job's exception is
        logged, never lost silently and never raised into the pool."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} pool is shut down")
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._max:
                thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            # else every thread is busy: the job waits for the first one to finish
        self._jobs.put(job)

    def shutdown(self, wait: bool = True) -> None:
        """Refuses new jobs; the queued ones still run.  With `wait`, returns when all have."""
        with self._lock:
            if self._closed:
                threads: list[threading.Thread] = []
            else:
                self._closed = True
                threads = list(self._threads)
                for _ in threads:
                    self._jobs.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException:
                log.exception("%s job failed", self._name)
            with self._lock:
                self._idle += 1
