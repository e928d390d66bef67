"""Reading a DSN back: which recipients failed and why, for the desktop viewer.

Uses the stdlib email parser, which already splits message/delivery-status into one header block per
recipient (RFC 3464 §2.1).  Tolerant of what other MTAs send: missing fields become "".
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True)
class RecipientReport:
    recipient: str            # Final-Recipient without its address type
    action: str               # failed | delayed | delivered | relayed | expanded
    status: str               # "5.1.1"
    diagnostic: str           # Diagnostic-Code without its type, e.g. "550 5.1.1 No such user"
    remote_mta: str
    original_recipient: str = ""


@dataclass(frozen=True)
class DSNReport:
    reporting_mta: str
    recipients: tuple[RecipientReport, ...]
    explanation: str          # the human-readable first part
    original_headers: str     # the returned header section (or the returned message's headers)
    original_subject: str
    original_message_id: str

    @property
    def failed(self) -> tuple[RecipientReport, ...]:
        return tuple(r for r in self.recipients if r.action.lower() == "failed")

    @property
    def delayed(self) -> tuple[RecipientReport, ...]:
        return tuple(r for r in self.recipients if r.action.lower() == "delayed")


def _value(block: Message, name: str) -> str:
    raw = block.get(name)
    return " ".join(str(raw).split()) if raw is not None else ""


def _untyped(value: str) -> str:
    """"rfc822; a@b" -> "a@b" (RFC 3464 §2.1.2 address-type / diagnostic-type prefixes)."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def is_dsn(data: bytes) -> bool:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return (msg.get_content_type() == "multipart/report"
            and msg.get_param("report-type", "", header="content-type") == "delivery-status")


def parse_dsn(data: bytes) -> DSNReport | None:
    """The report in a DSN message, or None when the message is not one."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        return None
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return None
    parts = [p for p in payload if isinstance(p, Message)]
    explanation = ""
    status_part: Message | None = None
    returned = ""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/delivery-status" and status_part is None:
            status_part = part
        elif kind == "text/plain" and not explanation and status_part is None:
            explanation = _text(part)
        elif kind == "text/rfc822-headers" and not returned:
            returned = _text(part)
        elif kind in ("message/rfc822", "message/global") and not returned:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                returned = "".join(f"{k}: {v}\n" for k, v in inner[0].items())
    if status_part is None:
        return None
    raw_blocks = status_part.get_payload()
    if isinstance(raw_blocks, str):
        # Some producers' parts come back as text: split them into blocks with the same header parser.
        raw_blocks = [email.message_from_string(chunk, policy=email.policy.default)
                      for chunk in raw_blocks.replace("\r\n", "\n").split("\n\n") if chunk.strip()]
    blocks = [b for b in raw_blocks if isinstance(b, Message)] if isinstance(raw_blocks, list) else []
    if not blocks:
        return None
    per_message, *per_recipient = blocks
    recipients = tuple(
        RecipientReport(
            recipient=_untyped(_value(b, "Final-Recipient")),
            action=_value(b, "Action").lower(),
            status=_value(b, "Status"),
            diagnostic=_untyped(_value(b, "Diagnostic-Code")),
            remote_mta=_untyped(_value(b, "Remote-MTA")),
            original_recipient=_untyped(_value(b, "Original-Recipient")),
        )
        for b in per_recipient if _value(b, "Final-Recipient")
    )
    original = email.message_from_string(returned + "\n", policy=email.policy.default) if returned else None
    return DSNReport(
        reporting_mta=_untyped(_value(per_message, "Reporting-MTA")),
        recipients=recipients,
        explanation=explanation,
        original_headers=returned,
        original_subject=str(original.get("Subject", "")) if original else "",
        original_message_id=str(original.get("Message-ID", "")) if original else "",
    )


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    return str(part.get_payload())
