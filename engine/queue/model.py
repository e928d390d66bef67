"""The queue's values (what the admin API returns) and small pure rules (ids, backoff, routing keys)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

# Per-recipient states.  `sending` is persisted before dialling (mox's "attempt started"): after a crash
# it means "the outcome is unknown", and the recipient is retried at the next-attempt time set with it.
QUEUED = "queued"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
STATES = (QUEUED, SENDING, DELIVERED, FAILED)

# Routing keys for recipients that do not go to an MX by DNS.
LOCAL_ROUTE = "[local]"
SMARTHOST_ROUTE = "[smarthost]"

# RFC 5321 §6.3: a message that has passed this many hops is in a loop.
MAX_RECEIVED = 50


class QueueError(ValueError):
    """An admin request that cannot be done (no such message); str() is one line for a person."""


@dataclass(frozen=True)
class RecipientState:
    address: str
    status: str                   # queued | sending | delivered | failed
    attempts: int
    next_attempt: float | None    # None once delivered or failed
    last_attempt: float | None
    last_error: str               # in words: the remote's reply or why we could not reach it
    remote_host: str


@dataclass(frozen=True)
class QueueItem:
    """One queued message as the queue panel and `postroom queue list` show it."""

    id: str
    sender: str                   # "" for the null reverse-path (a bounce)
    recipients: tuple[RecipientState, ...]
    size: int
    attempts: int                 # the most any pending recipient has had
    next_attempt: float | None    # the soonest any pending recipient is tried
    last_error: str
    created: float
    message_id: str = ""
    subject: str = ""
    is_dsn: bool = False

    @property
    def pending(self) -> tuple[RecipientState, ...]:
        return tuple(r for r in self.recipients if r.status in (QUEUED, SENDING))

    @property
    def status(self) -> str:
        """One word for the whole message: sending, deferred (tried and waiting), queued, or failed."""
        if any(r.status == SENDING for r in self.recipients):
            return "sending"
        pending = self.pending
        if pending:
            return "deferred" if any(r.attempts for r in pending) else "queued"
        return "failed" if any(r.status == FAILED for r in self.recipients) else "done"


def new_queue_id(now: float | None = None) -> str:
    """Sortable by arrival (milliseconds in hex) and unique (random suffix); safe as a file name."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:011X}{secrets.token_hex(3).upper()}"


def is_queue_id(text: str) -> bool:
    return 8 <= len(text) <= 40 and all(c in "0123456789ABCDEF" for c in text)


def retry_delay(schedule: Sequence[float], attempt: int) -> float:
    """Wait after attempt number `attempt` (1-based): the schedule's step, then its last step forever."""
    if not schedule:
        return 300.0
    return schedule[min(max(attempt, 1), len(schedule)) - 1]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def clean_sender(sender: str) -> str:
    """The reverse-path without angle brackets; "" is the null sender <> (RFC 5321 §4.5.5)."""
    return sender.strip().removeprefix("<").removesuffix(">").strip()
