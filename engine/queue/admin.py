"""The queue's admin API: synchronous, SQLite and spool only, so the CLI can use it with or without a
running server (which notices the changes through `PRAGMA data_version` within half a second).

Also the one place that puts a message into the queue (`enqueue`), for SMTP (through `Queue`) and for
bounces the scheduler generates.
"""

from __future__ import annotations

import builtins
import email.parser
import email.policy
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import Config
from engine.events import EventBus, QueueChanged
from engine.queue.db import MessageRow, QueueDB
from engine.queue.model import (
    QUEUED,
    SENDING,
    QueueError,
    QueueItem,
    clean_sender,
    domain_of,
    new_queue_id,
)
from engine.queue.spool import Spool

log = logging.getLogger(__name__)

BOUNCED_BY_ADMIN = "5.0.0"     # RFC 3463: other undefined status (returned by an administrator)


def header_fields(data: bytes) -> tuple[str, str]:
    """(Message-ID, Subject) of a message, "" where missing or unreadable; for lists and the log."""
    head = data[: 256 * 1024]
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
        message_id = " ".join(str(msg.get("Message-ID", "") or "").split())
        subject = " ".join(str(msg.get("Subject", "") or "").split())
    except Exception:       # a malformed header must never stop a message from being queued
        return "", ""
    return message_id[:998], subject[:998]


class QueueAdmin:
    """List, inspect, retry, delete and bounce queued messages; and enqueue new ones."""

    def __init__(self, config: Config, *, log: Any = None, events: EventBus | None = None) -> None:
        self.config = config
        self.db = QueueDB(config.state_db)
        self.spool = Spool(config.spool_dir)
        self.log = log                           # engine.log.DeliveryLog (anything with .record)
        self.events = events
        self.on_change: Callable[[], None] | None = None    # the scheduler's wake-up, when one runs

    def close(self) -> None:
        self.db.close()

    def _changed(self, queue_id: str | None) -> None:
        if self.events is not None:
            self.events.publish(QueueChanged(queue_id))
        if self.on_change is not None:
            self.on_change()

    def _record(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            try:
                self.log.record(event, **fields)
            except Exception:
                log.exception("could not record %s in the delivery log", event)

    # --- putting mail in -------------------------------------------------------------------------------

    def enqueue(self, sender: str, recipients: Sequence[str], data: bytes, *, received_from: str = "",
                authenticated_as: str = "", is_dsn: bool = False) -> str:
        """Spools durably, then commits the rows; returns the queue id.  OSError when either fails, and
        then nothing of the message remains (the SMTP client gets 452 and sends again)."""
        sender = clean_sender(sender)
        unique: dict[str, str] = {}
        for rcpt in recipients:
            address = clean_sender(rcpt)
            if not address or "@" not in address:
                raise ValueError(f"not a recipient address: {rcpt!r}")
            unique.setdefault(address.lower(), address)
        if not unique:
            raise ValueError("a message needs at least one recipient")
        now = time.time()
        queue_id = new_queue_id(now)
        message_id, subject = header_fields(data)
        self.spool.write(queue_id, data)
        row = MessageRow(id=queue_id, sender=sender, size=len(data), created=now, message_id=message_id,
                         subject=subject, received_from=received_from, authenticated_as=authenticated_as,
                         is_dsn=is_dsn or sender == "", warned=False)
        try:
            self.db.insert(row, [(a, domain_of(a)) for a in unique.values()], now)
        except sqlite3.Error as exc:
            self.spool.remove(queue_id)
            raise OSError(f"the queue database cannot take the message: {exc}") from exc
        except BaseException:
            self.spool.remove(queue_id)
            raise
        self._changed(queue_id)
        return queue_id

    # --- reading ---------------------------------------------------------------------------------------

    def list(self) -> builtins.list[QueueItem]:
        return self.db.items()

    def count(self) -> int:
        """Messages in the queue (cheap: for counters and polling)."""
        return self.db.count()

    def get(self, queue_id: str) -> QueueItem | None:
        items = self.db.items(queue_id)
        return items[0] if items else None

    def _require(self, queue_id: str) -> MessageRow:
        row = self.db.message(queue_id)
        if row is None:
            raise QueueError(f"no message {queue_id!r} in the queue")
        return row

    def open_message(self, queue_id: str) -> bytes:
        self._require(queue_id)
        try:
            return self.spool.read(queue_id)
        except FileNotFoundError:
            raise QueueError(f"the spool file of {queue_id} is missing") from None

    def headers(self, queue_id: str) -> str:
        self._require(queue_id)
        try:
            head = self.spool.read_headers(queue_id)
        except FileNotFoundError:
            raise QueueError(f"the spool file of {queue_id} is missing") from None
        return head.decode("utf-8", "replace").replace("\r\n", "\n")

    # --- changing --------------------------------------------------------------------------------------

    def retry(self, queue_id: str) -> int:
        """Makes every waiting recipient of the message due now; returns how many."""
        self._require(queue_id)
        count = self.db.set_due(queue_id, time.time())
        self._changed(queue_id)
        return count

    def retry_all(self) -> int:
        count = self.db.set_due(None, time.time())
        self._changed(None)
        return count

    def delete(self, queue_id: str, by: str = "admin") -> None:
        """Removes the message without a bounce; the log says who did it and when."""
        row = self._require(queue_id)
        pending = [r.recipient for r in self.db.recipients(queue_id) if r.status in (QUEUED, SENDING)]
        self.db.delete(queue_id)
        self.spool.remove(queue_id)
        self._record("deleted", queue_id=queue_id, message_id=row.message_id, sender=row.sender,
                     recipient=pending or [""], size=row.size, detail=f"deleted from the queue by {by}")
        self._changed(queue_id)

    def bounce(self, queue_id: str, by: str = "admin") -> builtins.list[str]:
        """Fails every waiting recipient now; the running scheduler returns them to the sender in a DSN."""
        row = self._require(queue_id)
        reason = f"returned to the sender by {by} before delivery"
        failed = self.db.fail_pending(queue_id, reason, BOUNCED_BY_ADMIN)
        if failed:
            self._record("bounced", queue_id=queue_id, message_id=row.message_id, sender=row.sender,
                         recipient=failed, size=row.size, detail=reason)
        self._changed(queue_id)
        return failed
