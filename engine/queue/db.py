"""The queue's rows in `state.sqlite`: one per message, one per recipient, and every state change as SQL.

Each method is one short transaction on one connection (autocommit mode, explicit BEGIN IMMEDIATE so the
CLI and the server never deadlock), with `synchronous=FULL`: a commit here is what a 250 or a dial is
allowed to rely on.  Tables are prefixed `queue_` (the directory and the log share the file).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.log.writelock import write_lock
from engine.queue.model import DELIVERED, FAILED, QUEUED, SENDING, QueueItem, RecipientState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id               TEXT PRIMARY KEY,
    sender           TEXT NOT NULL,             -- '' is the null reverse-path
    size             INTEGER NOT NULL,
    created          REAL NOT NULL,
    message_id       TEXT NOT NULL DEFAULT '',
    subject          TEXT NOT NULL DEFAULT '',
    received_from    TEXT NOT NULL DEFAULT '',
    authenticated_as TEXT NOT NULL DEFAULT '',
    is_dsn           INTEGER NOT NULL DEFAULT 0, -- a bounce itself: never bounced
    warned           INTEGER NOT NULL DEFAULT 0  -- delay warning sent
);
CREATE TABLE IF NOT EXISTS queue_recipients (
    queue_id     TEXT NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
    recipient    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    status       TEXT NOT NULL,                  -- queued | sending | delivered | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_attempt REAL,
    last_error   TEXT NOT NULL DEFAULT '',
    last_status  TEXT NOT NULL DEFAULT '',      -- RFC 3463 code of the last outcome
    remote_host  TEXT NOT NULL DEFAULT '',
    from_remote  INTEGER NOT NULL DEFAULT 0,     -- last_error is the remote's reply (not our words)
    notified     INTEGER NOT NULL DEFAULT 0,     -- for failed: the DSN has been sent (or is not due)
    PRIMARY KEY (queue_id, recipient)
);
CREATE INDEX IF NOT EXISTS queue_recipients_due ON queue_recipients (status, next_attempt);
"""


@dataclass(frozen=True)
class MessageRow:
    id: str
    sender: str
    size: int
    created: float
    message_id: str
    subject: str
    received_from: str
    authenticated_as: str
    is_dsn: bool
    warned: bool


@dataclass(frozen=True)
class RecipientRow:
    queue_id: str
    recipient: str
    domain: str
    status: str
    attempts: int
    next_attempt: float
    last_attempt: float | None
    last_error: str
    last_status: str
    remote_host: str
    from_remote: bool
    notified: bool


@dataclass(frozen=True)
class Result:
    """What one attempt did for one recipient, as the database records it."""

    recipient: str
    status: str                 # QUEUED (deferred) | DELIVERED | FAILED
    error: str                  # the reply or reason, "" when delivered
    code: str                   # RFC 3463 status
    remote_host: str = ""
    from_remote: bool = False


_MSG_COLS = ("id, sender, size, created, message_id, subject, received_from, authenticated_as, is_dsn, "
             "warned")
_RCPT_COLS = ("queue_id, recipient, domain, status, attempts, next_attempt, last_attempt, last_error, "
              "last_status, remote_host, from_remote, notified")


def _msg(row: tuple[Any, ...]) -> MessageRow:
    return MessageRow(str(row[0]), str(row[1]), int(row[2]), float(row[3]), str(row[4]),
                      str(row[5]), str(row[6]), str(row[7]), bool(row[8]), bool(row[9]))


def _rcpt(row: tuple[Any, ...]) -> RecipientRow:
    return RecipientRow(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),
                        float(row[5]), None if row[6] is None else float(row[6]),
                        str(row[7]), str(row[8]), str(row[9]), bool(row[10]), bool(row[11]))


T = TypeVar("T")


class GroupCommit:
    """One writer thread; write requests that arrive together share one transaction and so one fsync.

    Each request runs in its own SAVEPOINT, so one that fails is rolled back alone and its caller gets
    the exception; the others commit.  Callers block until their request is durable (never call this
    from the writer thread itself, or from the event loop: use a worker thread).
    """

    MAX_BATCH = 64

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock
        self._requests: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise sqlite3.ProgrammingError("the queue database is closed")
        future: Future[T] = Future()
        self._requests.put((op, future))
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="queue-db-writer", daemon=True)
                self._thread.start()
        return future.result()

    def close(self) -> None:
        self._closed = True
        with self._start_lock:
            thread = self._thread
        if thread is not None:
            self._requests.put(None)
            thread.join(30)

    def _serve(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for op, future in batch:
                    self._db.execute("SAVEPOINT request")
                    try:
                        result = op(self._db)
                    except Exception as exc:
                        self._db.execute("ROLLBACK TO request")
                        self._db.execute("RELEASE request")
                        outcomes.append((future, None, exc))
                    else:
                        self._db.execute("RELEASE request")
                        outcomes.append((future, result, None))
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                for _, future in batch:
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class QueueDB:
    """One connection to state.sqlite for the queue, shareable across threads behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two connections: writes (each an fsynced commit, often on a worker thread) never make a read
        # on the event loop wait for them; WAL lets the reader see the last commit meanwhile.
        self._wlock = write_lock(self.path)          # shared with the delivery log's writer
        self._lock = threading.RLock()
        self._wdb = sqlite3.connect(self.path, timeout=15.0, isolation_level=None, check_same_thread=False)
        try:
            self._wdb.execute("PRAGMA journal_mode=WAL")
            self._wdb.execute("PRAGMA synchronous=FULL")
            self._wdb.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            self._db = sqlite3.connect(self.path, timeout=15.0, isolation_level=None, check_same_thread=False)
            self._group = GroupCommit(self._wdb, self._wlock)
        except BaseException:
            if self._wdb.in_transaction:
                self._wdb.execute("ROLLBACK")
            self._wdb.close()
            raise

    def close(self) -> None:
        self._group.close()
        with self._wlock:
            self._wdb.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._wlock:
            self._wdb.execute("BEGIN IMMEDIATE")
            try:
                yield self._wdb
            except BaseException:
                self._wdb.execute("ROLLBACK")
                raise
            self._wdb.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection (the CLI, another component) commits to the file.

        Asked of the read connection, so the queue's own writes count too: harmless, one extra pass."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # --- writing ---------------------------------------------------------------------------------------

    def insert(self, message: MessageRow, recipients: Sequence[tuple[str, str]], now: float) -> None:
        """A new message and its (recipient, domain) rows, all due now."""
        def op(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT INTO queue_messages ({_MSG_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (message.id, message.sender, message.size, message.created, message.message_id,
                        message.subject, message.received_from, message.authenticated_as,
                        int(message.is_dsn), int(message.warned)))
            db.executemany("INSERT INTO queue_recipients (queue_id, recipient, domain, status, next_attempt) "
                           "VALUES (?,?,?,?,?)",
                           [(message.id, rcpt, domain, QUEUED, now) for rcpt, domain in recipients])
        self._group.run(op)

    def start_attempt(self, queue_id: str, recipients: Iterable[str], now: float,
                      next_attempt: float) -> list[str]:
        """Marks queued recipients `sending`, counts the attempt and sets the retry time, before dialling.

        Returns the recipients actually marked: one the admin deleted or bounced meanwhile is skipped.
        """
        wanted = list(recipients)

        def op(db: sqlite3.Connection) -> list[str]:
            marked = []
            for rcpt in wanted:
                cur = db.execute("UPDATE queue_recipients SET status=?, attempts=attempts+1, last_attempt=?, "
                                 "next_attempt=? WHERE queue_id=? AND recipient=? AND status=?",
                                 (SENDING, now, next_attempt, queue_id, rcpt, QUEUED))
                if cur.rowcount:
                    marked.append(rcpt)
            return marked
        return self._group.run(op)

    def finish_attempt(self, queue_id: str, results: Sequence[Result],
                       also: Callable[[sqlite3.Connection], None] | None = None) -> bool:
        """Records each recipient's outcome (deferred ones keep the retry time set at the start), and in
        the same commit removes the message when nothing is left to do; True when it was removed.
        `also` adds more writes to the same transaction (the delivery log's rows)."""
        def op(db: sqlite3.Connection) -> bool:
            if also is not None:
                also(db)
            for r in results:
                db.execute("UPDATE queue_recipients SET status=?, last_error=?, last_status=?, "
                           "remote_host=CASE WHEN ?='' THEN remote_host ELSE ? END, from_remote=?, notified=0 "
                           "WHERE queue_id=? AND recipient=? AND status IN (?,?)",
                           (r.status, r.error, r.code, r.remote_host, r.remote_host, int(r.from_remote),
                            queue_id, r.recipient, SENDING, QUEUED))
            return self._remove_if_done(db, queue_id)
        return self._group.run(op)

    def _remove_if_done(self, db: sqlite3.Connection, queue_id: str) -> bool:
        open_rows = db.execute(
            "SELECT COUNT(*) FROM queue_recipients WHERE queue_id=? AND "
            "(status IN (?,?) OR (status=? AND notified=0))", (queue_id, QUEUED, SENDING, FAILED)).fetchone()[0]
        if open_rows:
            return False
        db.execute("DELETE FROM queue_recipients WHERE queue_id=?", (queue_id,))
        return db.execute("DELETE FROM queue_messages WHERE id=?", (queue_id,)).rowcount > 0

    def recover(self) -> int:
        """After a crash: every `sending` recipient's outcome is unknown, so it waits for its retry time."""
        with self._write() as db:
            return db.execute("UPDATE queue_recipients SET status=? WHERE status=?", (QUEUED, SENDING)).rowcount

    def set_due(self, queue_id: str | None, now: float) -> int:
        """Retry now: every queued recipient (of one message, or all) becomes due."""
        with self._write() as db:
            if queue_id is None:
                cur = db.execute("UPDATE queue_recipients SET next_attempt=? WHERE status=?", (now, QUEUED))
            else:
                cur = db.execute("UPDATE queue_recipients SET next_attempt=? WHERE status=? AND queue_id=?",
                                 (now, QUEUED, queue_id))
            return cur.rowcount

    def fail_pending(self, queue_id: str, error: str, code: str) -> list[str]:
        """Fails every queued recipient (not those mid-attempt); the scheduler then sends the DSN."""
        with self._write() as db:
            rows = db.execute("SELECT recipient FROM queue_recipients WHERE queue_id=? AND status=?",
                              (queue_id, QUEUED)).fetchall()
            db.execute("UPDATE queue_recipients SET status=?, last_error=?, last_status=?, from_remote=0, "
                       "notified=0 WHERE queue_id=? AND status=?", (FAILED, error, code, queue_id, QUEUED))
        return [str(r[0]) for r in rows]

    def mark_notified(self, queue_id: str, recipients: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("UPDATE queue_recipients SET notified=1 WHERE queue_id=? AND recipient=?",
                           [(queue_id, r) for r in recipients])

    def mark_warned(self, queue_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE queue_messages SET warned=1 WHERE id=?", (queue_id,))

    def delete(self, queue_id: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM queue_recipients WHERE queue_id=?", (queue_id,))
            return db.execute("DELETE FROM queue_messages WHERE id=?", (queue_id,)).rowcount > 0

    def delete_if_done(self, queue_id: str) -> bool:
        """Removes a message none of whose recipients is pending or awaiting its DSN; True if removed."""
        with self._write() as db:
            return self._remove_if_done(db, queue_id)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM queue_messages").fetchone()[0])

    # --- reading ---------------------------------------------------------------------------------------

    def message(self, queue_id: str) -> MessageRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_MSG_COLS} FROM queue_messages WHERE id=?", (queue_id,)).fetchone()
        return _msg(row) if row else None

    def recipients(self, queue_id: str) -> list[RecipientRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_RCPT_COLS} FROM queue_recipients WHERE queue_id=? "
                                    "ORDER BY rowid", (queue_id,)).fetchall()
        return [_rcpt(r) for r in rows]

    def due(self, now: float, limit: int = 500) -> list[RecipientRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_RCPT_COLS} FROM queue_recipients WHERE status=? AND "
                                    "next_attempt<=? ORDER BY next_attempt, queue_id LIMIT ?",
                                    (QUEUED, now, limit)).fetchall()
        return [_rcpt(r) for r in rows]

    def next_due(self, after: float) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM queue_recipients WHERE status=? AND "
                                   "next_attempt>?", (QUEUED, after)).fetchone()
        return None if row[0] is None else float(row[0])

    def awaiting_dsn(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT queue_id FROM queue_recipients WHERE status=? AND "
                                    "notified=0", (FAILED,)).fetchall()
        return [str(r[0]) for r in rows]

    def finished(self) -> list[str]:
        """Messages with nothing left to do (e.g. after a crash between the last outcome and removal)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM queue_messages m WHERE NOT EXISTS (SELECT 1 FROM queue_recipients r WHERE "
                "r.queue_id=m.id AND (r.status IN (?,?) OR (r.status=? AND r.notified=0)))",
                (QUEUED, SENDING, FAILED)).fetchall()
        return [str(r[0]) for r in rows]

    def needing_warning(self, created_before: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM queue_messages m WHERE warned=0 AND is_dsn=0 AND sender!='' AND created<=? "
                "AND EXISTS (SELECT 1 FROM queue_recipients r WHERE r.queue_id=m.id AND r.status=? "
                "AND r.attempts>0)", (created_before, QUEUED)).fetchall()
        return [str(r[0]) for r in rows]

    def ids(self) -> set[str]:
        with self._lock:
            return {str(r[0]) for r in self._db.execute("SELECT id FROM queue_messages").fetchall()}

    def items(self, queue_id: str | None = None) -> list[QueueItem]:
        """Messages with their recipients, oldest first (one query each; the queue panel's model)."""
        with self._lock:
            if queue_id is None:
                msgs = self._db.execute(f"SELECT {_MSG_COLS} FROM queue_messages ORDER BY created, id").fetchall()
                rcpts = self._db.execute(f"SELECT {_RCPT_COLS} FROM queue_recipients ORDER BY rowid").fetchall()
            else:
                msgs = self._db.execute(f"SELECT {_MSG_COLS} FROM queue_messages WHERE id=?",
                                        (queue_id,)).fetchall()
                rcpts = self._db.execute(f"SELECT {_RCPT_COLS} FROM queue_recipients WHERE queue_id=? "
                                         "ORDER BY rowid", (queue_id,)).fetchall()
        by_message: dict[str, list[RecipientRow]] = {}
        for raw in rcpts:
            row = _rcpt(raw)
            by_message.setdefault(row.queue_id, []).append(row)
        return [_item(_msg(m), by_message.get(str(m[0]), [])) for m in msgs]


def _item(message: MessageRow, rows: list[RecipientRow]) -> QueueItem:
    states = tuple(
        RecipientState(address=r.recipient, status=r.status, attempts=r.attempts,
                       next_attempt=r.next_attempt if r.status in (QUEUED, SENDING) else None,
                       last_attempt=r.last_attempt, last_error=r.last_error, remote_host=r.remote_host)
        for r in rows)
    pending = [s for s in states if s.status in (QUEUED, SENDING)]
    errors = sorted((r for r in rows if r.last_error and r.status != DELIVERED),
                    key=lambda r: r.last_attempt or 0.0)
    next_times = [s.next_attempt for s in pending if s.next_attempt is not None]
    return QueueItem(
        id=message.id, sender=message.sender, recipients=states, size=message.size,
        attempts=max((s.attempts for s in pending), default=max((s.attempts for s in states), default=0)),
        next_attempt=min(next_times) if next_times else None,
        last_error=errors[-1].last_error if errors else "",
        created=message.created, message_id=message.message_id, subject=message.subject,
        is_dsn=message.is_dsn)
