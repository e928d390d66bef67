"""Group commit: many threads wanting the same expensive flush (directory fsync + index commit) share one.

A caller enqueues its item; if no flush is running it becomes the leader and flushes everything queued
so far (its own item included); callers that arrive while a flush is in flight wait and the first of
them flushes the next batch.  Nobody returns before the flush that covered its own item finished, so
durability per caller is unchanged while N concurrent callers pay for roughly two flushes, not N.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """`flush(items)` returns one result per item, or raises to fail the whole batch."""

    def __init__(self, flush: Callable[[list[T]], list[R]]) -> None:
        self._flush = flush
        self._cond = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._busy = False

    def enqueue(self, item: T) -> _Slot[T, R]:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        return slot

    def wait(self, slot: _Slot[T, R]) -> R:
        """Blocks until the slot's batch is flushed, flushing it ourselves when nobody else is."""
        with self._cond:
            while not slot.done and self._busy:
                self._cond.wait()
            if not slot.done:
                # Not done and no flush running: our slot is still queued, so we lead the next batch.
                self._busy = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            results: list[R] | None = None
            error: BaseException | None = None
            try:
                results = self._flush([s.item for s in batch])
                if len(results) != len(batch):
                    raise RuntimeError("group flush returned the wrong number of results")
            except BaseException as exc:
                error = exc
            with self._cond:
                for i, s in enumerate(batch):
                    if error is not None:
                        s.error = error
                    elif results is not None:
                        s.result = results[i]
                    s.done = True
                self._busy = False
                self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def run(self, item: T) -> R:
        return self.wait(self.enqueue(item))

