"""Delivery-log entries written off the engine loop, in order, by one thread per listener.

A log row is a SQLite commit and now and then a WAL checkpoint with an fsync: milliseconds the SMTP
sessions sharing the loop would otherwise wait for.  The session only queues the entry (with the time it
happened); losing the last few rows in a crash costs a log line, never mail.  The thread writes whatever
has queued up since its last write in one transaction (each accepted message makes two rows, and twenty
sessions make them at once), through the log's `rows`/`insert_rows`/`catch_up` seam for writers with
their own transaction; a recorder without that seam gets one `record` call per entry.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from engine.log.writelock import write_lock
from engine.services import DeliveryRecorder

log = logging.getLogger(__name__)

_Entry = tuple[str, dict[str, Any]] | threading.Event | None
# At most this many entries share one transaction, so a flood still reaches the log (and the GUI) in steps.
MAX_BATCH = 500
# After the first entry of a batch the writer lets the others gather this long (unless someone flushes):
# each accepted message makes two entries at once, and the sessions of a busy server make theirs within
# milliseconds of each other, so one wakeup and one commit serve many messages instead of each its own.
GATHER_SECONDS = 0.02


@runtime_checkable
class TransactionalRecorder(Protocol):
    """engine.log.DeliveryLog's seam for writers that insert rows in their own transaction."""

    path: Path

    def rows(self, event: str, **fields: Any) -> list[tuple[Any, ...]]: ...
    def insert_rows(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None: ...
    def catch_up(self) -> Sequence[object]: ...


class RecordWriter:
    """Feeds `recorder` from a queue on a daemon thread, batching entries into one transaction."""

    def __init__(self, recorder: DeliveryRecorder, name: str = "smtp-log") -> None:
        self._recorder = recorder
        self._queue: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._urgent = threading.Event()      # set by flush() and close(): stop gathering, write now
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, event: str, **fields: Any) -> None:
        fields.setdefault("time", time.time())
        self._queue.put((event, fields))

    def flush(self, timeout: float = 5.0) -> bool:
        """Blocks until everything queued so far is written; False if that took longer than `timeout`."""
        done = threading.Event()
        self._queue.put(done)
        self._urgent.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Writes what is queued, then ends the thread."""
        self._queue.put(None)
        self._urgent.set()
        self._thread.join(timeout)

    # --- the writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch: list[tuple[str, dict[str, Any]]] = []
                item = self._queue.get()
                self._urgent.wait(GATHER_SECONDS)     # let the rest of the batch gather
                self._urgent.clear()
                while True:
                    if item is None or isinstance(item, threading.Event):
                        self._write(batch)
                        batch = []
                        if item is None:
                            return
                        item.set()
                    else:
                        batch.append(item)
                        if len(batch) >= MAX_BATCH:
                            self._write(batch)
                            batch = []
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._write(batch)
        finally:
            if self._db is not None:
                self._db.close()

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if not batch:
            return
        recorder = self._recorder
        if not isinstance(recorder, TransactionalRecorder):
            for event, fields in batch:
                self._record_one(event, fields)
            return
        try:
            rows = [row for event, fields in batch for row in recorder.rows(event, **fields)]
            db = self._connection(recorder.path)
            with write_lock(recorder.path):
                db.execute("BEGIN IMMEDIATE")
                try:
                    recorder.insert_rows(db, rows)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except Exception:
            # Never lose the entries to one bad row or a busy database: try them one by one.
            log.exception("delivery log refused a batch of %d entries; writing them singly", len(batch))
            for event, fields in batch:
                self._record_one(event, fields)
            return
        try:
            recorder.catch_up()
        except Exception:
            log.exception("delivery log could not publish new entries")

    def _record_one(self, event: str, fields: dict[str, Any]) -> None:
        try:
            self._recorder.record(event, **fields)
        except Exception:
            log.exception("delivery log refused a %s entry", event)

    def _connection(self, path: Path) -> sqlite3.Connection:
        """This thread's own connection to the log's database (the log's schema already exists)."""
        if self._db is None:
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # As the log's own connection: a row lost to a power cut is acceptable, an fsync per batch
            # of SMTP transactions is not.
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db
