"""Delivery-log entries written off the engine loop, in order, by one thread per listener.

A log row is a SQLite commit and now and then a WAL checkpoint with an fsync: milliseconds the SMTP
sessions sharing the loop would otherwise wait for.  The session only queues the entry (with the time it
happened); losing the last few rows in a crash costs a log line, never mail.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from engine.services import DeliveryRecorder

log = logging.getLogger(__name__)

_Entry = tuple[str, dict[str, Any]] | threading.Event | None


class RecordWriter:
    """Feeds `recorder.record(event, **fields)` from a queue on a daemon thread."""

    def __init__(self, recorder: DeliveryRecorder, name: str = "smtp-log") -> None:
        self._recorder = recorder
        self._queue: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, event: str, **fields: Any) -> None:
        fields.setdefault("time", time.time())
        self._queue.put((event, fields))

    def flush(self, timeout: float = 5.0) -> bool:
        """Blocks until everything queued so far is written; False if that took longer than `timeout`."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Writes what is queued, then ends the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            event, fields = item
            try:
                self._recorder.record(event, **fields)
            except Exception:
                log.exception("delivery log refused a %s entry", event)

