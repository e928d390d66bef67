"""Group commit: many deliveries wanting the same expensive flush (directory fsync + index commit) share one.

A caller submits its item with a `done` callback.  If no flush is running it becomes the leader: it
flushes everything queued so far (its own item included), calls each item's `done`, and goes on flushing
whatever queued up meanwhile until the queue is empty.  Callers that arrive while a flush is in flight
only queue their item and go on with their own work; nobody sleeps waiting to become a leader and no
flush wakes anyone but the owners of its items.  `done` runs only after the flush that covered the
item finished, so durability per item is what one flush per item would give, while N concurrent
callers pay for roughly two flushes, not N.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# done(result, None) after a successful flush, done(None, error) when the flush raised.
Done = Callable[[R | None, BaseException | None], None]
Handoff = Callable[[Callable[[], None]], object]


class Waiter(Generic[R]):
    """A `done` callback a thread can block on (one Event per item: waking it wakes nobody else)."""

    __slots__ = ("_event", "error", "result")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None

    def __call__(self, result: R | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self._event.set()

    @property
    def finished(self) -> bool:
        return self._event.is_set()

    def wait(self) -> R:
        self._event.wait()
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """`flush(items)` returns one result per item, or raises to fail the whole batch.

    `handoff(fn)`, when given, runs `fn` on another thread (an executor's submit): a caller blocked in
    `run` hands the remaining queue to it once its own item is flushed, instead of flushing for others
    for as long as deliveries keep arriving."""

    def __init__(self, flush: Callable[[list[T]], list[R]], handoff: Handoff | None = None) -> None:
        self._flush = flush
        self._handoff = handoff
        self._lock = threading.Lock()
        self._queue: list[tuple[T, Done[R]]] = []
        self._busy = False

    def enqueue(self, item: T, done: Done[R]) -> bool:
        """Queues `item`; `done` is called (on whichever thread flushes it) once its batch is flushed.

        True means no flush was running and the caller now owns the flushing: it must call `drain()`
        (here or on another thread).  A caller with items for several accounts enqueues them all first,
        so the accounts' flushes can run in parallel."""
        with self._lock:
            self._queue.append((item, done))
            if self._busy:
                return False
            self._busy = True
            return True

    def drain(self) -> None:
        """Flushes until the queue is empty; only for the caller `enqueue` answered True."""
        self._drain(None)

    def submit(self, item: T, done: Done[R]) -> None:
        """enqueue() and, when this caller owns the flushing, drain() before returning."""
        if self.enqueue(item, done):
            self._drain(None)

    def run(self, item: T) -> R:
        """Blocks until the item's batch is flushed and returns its result (or raises the flush's error)."""
        waiter: Waiter[R] = Waiter()
        if self.enqueue(item, waiter):
            self._drain(waiter)
        return waiter.wait()

    def _drain(self, owner: Waiter[R] | None) -> None:
        """Flushes batches until the queue is empty (then `_busy` drops).  Once an `owner`'s own item is
        done, what is left goes to the handoff thread, if there is one."""
        while True:
            with self._lock:
                if not self._queue:
                    self._busy = False
                    return
                hand_off = owner is not None and owner.finished and self._handoff is not None
                if not hand_off:
                    batch, self._queue = self._queue, []
            if hand_off:
                assert self._handoff is not None
                try:
                    self._handoff(self._drain_handed_off)
                    return
                except RuntimeError:      # the executor is shutting down: keep flushing here
                    owner = None
                    continue
            self._flush_batch(batch)

    def _drain_handed_off(self) -> None:
        self._drain(None)

    def _flush_batch(self, batch: list[tuple[T, Done[R]]]) -> None:
        results: list[R] | None = None
        error: BaseException | None = None
        try:
            results = self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError("group flush returned the wrong number of results")
        except BaseException as exc:   # every item's owner hears about it; nothing is swallowed
            error = exc
        for i, (_, done) in enumerate(batch):
            try:
                done(results[i] if results is not None and error is None else None, error)
            except Exception:   # a broken callback must not keep the others from hearing
                log.exception("group commit callback failed")
