"""The delivery log's storage: the `log_entries` table in `state.sqlite`, its writer and its readers.

Recording must never break mail flow, so `record` logs and swallows database errors instead of raising
into an SMTP session.  The CLI writes to the same table from another process (an admin delete); the
engine publishes such rows too when it calls `catch_up` (the queue's watcher does, every half second).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.events import DeliveryLogged, EventBus
from engine.log.entry import COLUMNS, EXPORT_COLUMNS, LogEntry, LogFilter, direction_of, where_clause
from engine.log.writelock import write_lock

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_entries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    time         REAL NOT NULL,
    event        TEXT NOT NULL,
    direction    TEXT NOT NULL,
    queue_id     TEXT NOT NULL DEFAULT '',
    message_id   TEXT NOT NULL DEFAULT '',
    sender       TEXT NOT NULL DEFAULT '',
    recipient    TEXT NOT NULL DEFAULT '',
    size         INTEGER,
    remote_host  TEXT NOT NULL DEFAULT '',
    remote_reply TEXT NOT NULL DEFAULT '',
    tls          TEXT NOT NULL DEFAULT '',
    client_ip    TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',
    extra        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS log_entries_time ON log_entries (time);
CREATE INDEX IF NOT EXISTS log_entries_event_time ON log_entries (event, time);
CREATE INDEX IF NOT EXISTS log_entries_sender ON log_entries (sender COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS log_entries_recipient ON log_entries (recipient COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS log_entries_queue_id ON log_entries (queue_id);
"""

_SELECT = ("SELECT id, time, event, direction, queue_id, message_id, sender, recipient, size, remote_host, "
           "remote_reply, tls, client_ip, detail, extra FROM log_entries")

# Other names writers use for the same columns (SMTP passes `reason`, the queue `reply`).
_ALIASES = {"reason": "detail", "reply": "remote_reply", "mx": "remote_host", "ip": "client_ip"}

Progress = Callable[[int, int], Any]


def _row(row: tuple[Any, ...]) -> LogEntry:
    return LogEntry(
        id=row[0], time=row[1], event=row[2], direction=row[3], queue_id=row[4], message_id=row[5],
        sender=row[6], recipient=row[7], size=row[8], remote_host=row[9], remote_reply=row[10], tls=row[11],
        client_ip=row[12], detail=row[13], extra_json=row[14])


class DeliveryLog:
    """Append and read delivery-log rows; one connection, guarded by a lock, shareable across threads."""

    def __init__(self, state_db: Path, events: EventBus | None = None) -> None:
        self.path = Path(state_db)
        self.events = events
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._write_lock = write_lock(self.path)
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A log row lost to a power cut is acceptable; an fsync per SMTP transaction is not.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._published = self.latest_id()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing ---------------------------------------------------------------------------------------

    def record(self, event: str, **fields: Any) -> list[LogEntry]:
        """Appends one row (one per recipient when `recipient` is a list) and publishes it.

        Known fields fill columns (`reason` is `detail`); anything else is kept in the row's `extra` JSON.
        """
        rows = self.rows(event, **fields)
        try:
            with self._write_lock, self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self.insert_rows(self._db, rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error:
            log.exception("could not record %s in the delivery log", event)
            return []
        return self.catch_up()

    @staticmethod
    def rows(event: str, **fields: Any) -> list[tuple[Any, ...]]:
        """The table rows `record` would insert, for a writer that adds them to its own transaction
        (the queue commits a delivery's outcome and its log rows together) and then calls catch_up()."""
        when = float(fields.pop("time", None) or time.time())
        direction = str(fields.pop("direction", "") or direction_of(event))
        recipients = fields.pop("recipient", fields.pop("recipients", ""))
        if isinstance(recipients, (list, tuple, set, frozenset)):
            recipient_list = [str(r) for r in recipients] or [""]
        else:
            recipient_list = [str(recipients or "")]
        columns: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in fields.items():
            name = _ALIASES.get(key, key)
            if name in COLUMNS:
                columns[name] = value
            elif value is not None:
                extra[key] = value
        size = columns.pop("size", None)
        try:
            size_value = int(size) if size is not None else None
        except (TypeError, ValueError):
            extra["size"] = size
            size_value = None
        text = {k: "" if v is None else str(v) for k, v in columns.items()}
        extra_json = json.dumps(extra, default=str, ensure_ascii=False, sort_keys=True)
        return [(when, event, direction, text.get("queue_id", ""), text.get("message_id", ""),
                 text.get("sender", ""), recipient, size_value, text.get("remote_host", ""),
                 text.get("remote_reply", ""), text.get("tls", ""), text.get("client_ip", ""),
                 text.get("detail", ""), extra_json) for recipient in recipient_list]

    @staticmethod
    def insert_rows(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Inserts prepared rows on the caller's connection, inside the caller's transaction."""
        db.executemany(
            "INSERT INTO log_entries (time, event, direction, queue_id, message_id, sender, recipient, size, "
            "remote_host, remote_reply, tls, client_ip, detail, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows)

    def catch_up(self) -> list[LogEntry]:
        """Publishes every row not yet published, including rows another process (the CLI) wrote."""
        try:
            with self._lock:
                rows = self._db.execute(_SELECT + " WHERE id > ? ORDER BY id", (self._published,)).fetchall()
                if rows:
                    self._published = rows[-1][0]
        except sqlite3.Error:
            log.exception("could not read new delivery-log rows")
            return []
        entries = [_row(r) for r in rows]
        if self.events is not None:
            for entry in entries:
                self.events.publish(DeliveryLogged(entry))
        return entries

    def prune(self, before: float) -> int:
        """Removes rows older than `before`; returns how many."""
        with self._write_lock, self._lock:
            cur = self._db.execute("DELETE FROM log_entries WHERE time < ?", (before,))
            return cur.rowcount

    # --- reading ---------------------------------------------------------------------------------------

    def latest_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM log_entries").fetchone()
        return int(row[0])

    def get(self, entry_id: int) -> LogEntry | None:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE id = ?", (entry_id,)).fetchone()
        return _row(row) if row else None

    def query(self, filters: LogFilter | None = None, *, since: float | None = None,
              until: float | None = None, address: str | None = None,
              status: str | Iterable[str] | None = None, direction: str | None = None,
              text: str | None = None, queue_id: str | None = None, after_id: int | None = None,
              offset: int = 0, limit: int | None = 100, oldest_first: bool = False) -> list[LogEntry]:
        """Matching rows, newest first (one page of `limit` from `offset`; limit None for all)."""
        flt = filters or LogFilter.build(since=since, until=until, address=address, status=status,
                                         direction=direction, text=text, queue_id=queue_id,
                                         after_id=after_id)
        where, params = where_clause(flt)
        order = " ORDER BY time, id" if oldest_first else " ORDER BY time DESC, id DESC"
        sql = _SELECT + where + order + " LIMIT ? OFFSET ?"
        params += [-1 if limit is None else max(0, limit), max(0, offset)]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_row(r) for r in rows]

    def count(self, filters: LogFilter | None = None, *, since: float | None = None,
              until: float | None = None, address: str | None = None,
              status: str | Iterable[str] | None = None, direction: str | None = None,
              text: str | None = None, queue_id: str | None = None) -> int:
        flt = filters or LogFilter.build(since=since, until=until, address=address, status=status,
                                         direction=direction, text=text, queue_id=queue_id)
        where, params = where_clause(flt)
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM log_entries" + where, params).fetchone()
        return int(row[0])

    def stats_today(self, now: float | None = None) -> dict[str, int]:
        """Rows per event since local midnight (the dashboard's counters)."""
        moment = datetime.fromtimestamp(now if now is not None else time.time()).astimezone()
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        with self._lock:
            rows = self._db.execute("SELECT event, COUNT(*) FROM log_entries WHERE time >= ? GROUP BY event",
                                    (midnight,)).fetchall()
        return {str(event): int(n) for event, n in rows}

    def per_minute(self, since: float, until: float | None = None,
                   status: str | Iterable[str] | None = None) -> list[tuple[int, int]]:
        """(minute start as epoch seconds, rows in that minute), ascending; minutes without rows are absent."""
        flt = LogFilter.build(since=since, until=until, status=status)
        where, params = where_clause(flt)
        sql = ("SELECT CAST(time / 60 AS INTEGER) * 60 AS minute, COUNT(*) FROM log_entries" + where +
               " GROUP BY minute ORDER BY minute")
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [(int(m), int(n)) for m, n in rows]

    # --- export ----------------------------------------------------------------------------------------

    def export(self, filters: LogFilter | dict[str, Any] | None, path: Path | str, fmt: str = "csv",
               progress: Progress | None = None, batch: int = 1000) -> int:
        """Writes every matching row, oldest first, to `path` as CSV or a JSON array; returns the count.

        Written to a temporary file and renamed, so a failed export never leaves half a file behind.
        `progress(done, total)` is called after each batch (the GUI shows a progress bar).
        """
        if fmt not in ("csv", "json"):
            raise ValueError(f"export format must be csv or json, not {fmt!r}")
        flt = filters if isinstance(filters, LogFilter) else LogFilter.build(**(filters or {}))
        total = self.count(flt)
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        done = 0
        last_id = 0
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out) if fmt == "csv" else None
                if writer is not None:
                    writer.writerow(EXPORT_COLUMNS)
                else:
                    out.write("[")
                while True:
                    page_filter = LogFilter(since=flt.since, until=flt.until, address=flt.address,
                                            status=flt.status, direction=flt.direction, text=flt.text,
                                            queue_id=flt.queue_id, after_id=last_id)
                    where, params = where_clause(page_filter)
                    with self._lock:
                        rows = self._db.execute(_SELECT + where + " ORDER BY id LIMIT ?",
                                                [*params, batch]).fetchall()
                    if not rows:
                        break
                    for row in rows:
                        entry = _row(row)
                        record = entry.as_dict()
                        record["time"] = _iso(entry.time)
                        if writer is not None:
                            record["extra"] = entry.extra_json
                            writer.writerow(["" if record[c] is None else record[c] for c in EXPORT_COLUMNS])
                        else:
                            out.write(("\n" if done == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
                        done += 1
                    last_id = rows[-1][0]
                    if progress is not None:
                        progress(done, max(total, done))
                if writer is None:
                    out.write("\n]\n" if done else "]\n")
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if progress is not None and done == 0:
            progress(0, 0)
        return done


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
