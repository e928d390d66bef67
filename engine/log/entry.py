"""The values of the delivery log (one entry, one filter) and the pure translation of a filter into SQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

# What can happen to a message, as the log names it.  `received`/`rejected` come from the SMTP server,
# `delivered` is a local mailbox delivery, the rest come from the outbound queue and its admin.
EVENTS: tuple[str, ...] = (
    "received", "delivered", "relayed", "deferred", "bounced", "rejected", "deleted", "expired", "delayed",
)

# Which way the mail was going.  A local delivery counts as inbound: it ends in a mailbox here.
DIRECTIONS: tuple[str, ...] = ("in", "out")
_DIRECTION_OF: dict[str, str] = {
    "received": "in", "delivered": "in", "rejected": "in",
    "relayed": "out", "deferred": "out", "bounced": "out", "deleted": "out", "expired": "out",
    "delayed": "out",
}

# Columns a caller may set directly; anything else it passes goes into the `extra` JSON.
COLUMNS: tuple[str, ...] = (
    "queue_id", "message_id", "sender", "recipient", "size", "remote_host", "remote_reply", "tls",
    "client_ip", "detail",
)


def direction_of(event: str) -> str:
    return _DIRECTION_OF.get(event, "in")


@dataclass(frozen=True)
class LogEntry:
    """One row of the delivery log as the GUI table, the CLI and exports show it."""

    id: int
    time: float                 # seconds since the epoch, UTC
    event: str                  # one of EVENTS (unknown names from newer writers are kept as given)
    direction: str              # "in" | "out"
    queue_id: str = ""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    size: int | None = None
    remote_host: str = ""       # the MTA we handed the message to, or the client that sent it
    remote_reply: str = ""      # the remote's last reply, e.g. "250 2.0.0 Ok: queued as 4F1"
    tls: str = ""               # "", "TLSv1.3 verified", "TLSv1.3 unverified: ...", "none"
    client_ip: str = ""
    detail: str = ""            # why, in words: the reject reason, the deferral cause, who deleted it
    extra_json: str = "{}"      # any other fields the writer passed, as a JSON object

    @property
    def extra(self) -> dict[str, Any]:
        value = json.loads(self.extra_json or "{}")
        return value if isinstance(value, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        """Flat and JSON-serialisable, for export and `--format json`."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra_json"}
        out["extra"] = self.extra
        return out


EXPORT_COLUMNS: tuple[str, ...] = (
    "id", "time", "event", "direction", "queue_id", "message_id", "sender", "recipient", "size",
    "remote_host", "remote_reply", "tls", "client_ip", "detail", "extra",
)


@dataclass(frozen=True)
class LogFilter:
    """What a reader wants to see; every part is optional and the parts combine with AND."""

    since: float | None = None          # time >= since
    until: float | None = None          # time < until
    address: str | None = None          # substring of sender or recipient, case-insensitive
    status: tuple[str, ...] = ()        # events
    direction: str | None = None        # "in" | "out"
    text: str | None = None             # substring of any text column
    queue_id: str | None = None
    after_id: int | None = None         # only rows newer than this (for `log --follow`)

    @classmethod
    def build(cls, *, since: float | None = None, until: float | None = None, address: str | None = None,
              status: str | Iterable[str] | None = None, direction: str | None = None,
              text: str | None = None, queue_id: str | None = None,
              after_id: int | None = None) -> LogFilter:
        if isinstance(status, str):
            statuses: tuple[str, ...] = tuple(s.strip() for s in status.split(",") if s.strip())
        else:
            statuses = tuple(status or ())
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return cls(since=since, until=until, address=address or None, status=statuses,
                   direction=direction, text=text or None, queue_id=queue_id or None, after_id=after_id)


def _like(value: str) -> str:
    """A LIKE pattern matching `value` anywhere, with its own % and _ taken literally."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_TEXT_COLUMNS = ("queue_id", "message_id", "sender", "recipient", "remote_host", "remote_reply", "detail",
                 "client_ip", "extra")


def where_clause(flt: LogFilter) -> tuple[str, list[Any]]:
    """`WHERE ...` (or "") and its parameters; LIKE is case-insensitive for ASCII in SQLite."""
    parts: list[str] = []
    params: list[Any] = []
    if flt.since is not None:
        parts.append("time >= ?")
        params.append(flt.since)
    if flt.until is not None:
        parts.append("time < ?")
        params.append(flt.until)
    if flt.address:
        parts.append("(sender LIKE ? ESCAPE '\\' OR recipient LIKE ? ESCAPE '\\')")
        params += [_like(flt.address)] * 2
    if flt.status:
        parts.append(f"event IN ({','.join('?' * len(flt.status))})")
        params += list(flt.status)
    if flt.direction:
        parts.append("direction = ?")
        params.append(flt.direction)
    if flt.queue_id:
        parts.append("queue_id = ?")
        params.append(flt.queue_id)
    if flt.after_id is not None:
        parts.append("id > ?")
        params.append(flt.after_id)
    if flt.text:
        parts.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _TEXT_COLUMNS) + ")")
        params += [_like(flt.text)] * len(_TEXT_COLUMNS)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params
