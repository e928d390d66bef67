"""A bounce (delivery status notification, RFC 3464) summarised: who did not get the mail, and why.

The engine's own reader (engine.dsn.parse_dsn) does the parsing where it can; RFC 6533
message/global-delivery-status (UTF-8), which it does not read, is parsed here with the stdlib `email`
package the same way: a multipart/report (RFC 6522) carries a status part of header-like blocks, the
first about the message, then one per recipient.  Everything is escaped for display and the status
codes are put in words (RFC 3463).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from desktop.viewer.text import one_line
from engine.dsn import parse_dsn

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
HEADER_TYPES = ("text/rfc822-headers", "message/global-headers", "message/rfc822", "message/global")

# RFC 3463 §3 subject and detail codes, in words (class 4 = temporary, 5 = permanent).
STATUS_DETAIL: dict[str, str] = {
    "0.0": "an unspecified problem",
    "1.0": "a problem with the address",
    "1.1": "the mailbox does not exist",
    "1.2": "the recipient's domain does not exist or takes no mail",
    "1.3": "the address is not valid",
    "1.4": "the address is ambiguous",
    "1.6": "the mailbox has moved",
    "1.10": "the recipient's domain says it accepts no mail (null MX, RFC 7505)",
    "2.0": "a problem with the mailbox",
    "2.1": "the mailbox is disabled",
    "2.2": "the mailbox is full",
    "2.3": "the message is larger than the recipient accepts",
    "3.0": "a problem with the receiving mail system",
    "3.1": "the receiving mail system is full",
    "3.4": "the message is too big for the receiving system",
    "4.0": "a network or routing problem",
    "4.1": "the recipient's server did not answer",
    "4.2": "the connection broke",
    "4.3": "a DNS lookup failed",
    "4.4": "no route to the recipient's domain (no usable MX)",
    "4.6": "a mail loop was detected",
    "4.7": "delivery took too long and was given up",
    "5.0": "a protocol problem",
    "5.3": "too many recipients",
    "6.0": "a problem with the message content",
    "7.0": "the message was refused by policy",
    "7.1": "delivery was refused (not authorised)",
    "7.25": "the sending server's reverse DNS did not check out",
    "7.26": "the message failed authentication checks",
}
ACTION_WORDS = {
    "failed": "could not be delivered",
    "delayed": "is delayed (still being tried)",
    "delivered": "was delivered",
    "relayed": "was passed on to a system that sends no reports",
    "expanded": "was delivered and forwarded on",
}


def status_words(status: str) -> str:
    """'5.1.1' -> 'permanent: the mailbox does not exist'."""
    parts = status.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return ""
    kind = {"2": "success", "4": "temporary", "5": "permanent"}.get(parts[0], "")
    detail = STATUS_DETAIL.get(f"{int(parts[1])}.{int(parts[2])}") or STATUS_DETAIL.get(f"{int(parts[1])}.0", "")
    return f"{kind}: {detail}" if kind and detail else kind or detail


def _typed_value(value: str) -> str:
    """'rfc822; user@host' -> 'user@host' (RFC 3464 §2.1.2 address-type ; generic-address)."""
    kind, sep, rest = value.partition(";")
    return one_line(rest if sep else kind)


@dataclass(frozen=True)
class DsnRecipient:
    recipient: str          # escaped
    action: str             # failed | delayed | delivered | relayed | expanded
    status: str             # "5.1.1"
    diagnostic: str         # the remote server's words (escaped), or ""
    remote_mta: str         # escaped, or ""

    @property
    def reason(self) -> str:
        """What went wrong in words: the remote server's own text if any, else the status code's."""
        words = status_words(self.status)
        if self.diagnostic and words:
            return f"{words} — {self.diagnostic}"
        return self.diagnostic or words or "no reason given"

    @property
    def action_words(self) -> str:
        return ACTION_WORDS.get(self.action, self.action or "unknown")


@dataclass(frozen=True)
class DsnReport:
    reporting_mta: str
    recipients: tuple[DsnRecipient, ...]
    original_subject: str
    original_to: str
    original_message_id: str

    @property
    def failed(self) -> tuple[DsnRecipient, ...]:
        return tuple(r for r in self.recipients if r.action == "failed")

    @property
    def delayed(self) -> tuple[DsnRecipient, ...]:
        return tuple(r for r in self.recipients if r.action == "delayed")

    @property
    def headline(self) -> str:
        if self.failed:
            n = len(self.failed)
            what = "Delivery failed" + (f" for {n} recipients" if n > 1 else f" to {self.failed[0].recipient}")
        elif self.delayed:
            what = "Delivery is delayed" + (f" to {self.delayed[0].recipient}" if len(self.delayed) == 1 else "")
        else:
            what = "Delivery report"
        if self.original_subject:
            what += f" (your message “{self.original_subject}”)"
        return what


def _split_blocks(text: str) -> list[Message]:
    text = text.replace("\r\n", "\n")
    return [HeaderParser(policy=compat32).parsestr(b.strip() + "\n") for b in text.split("\n\n") if b.strip()]


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part, whether `email` parsed them or left text."""
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_type() == "message/global-delivery-status":
        # `email` reads message/global-* as one embedded message: its header block is our first block
        # and its "body" holds the others.  Back to text, then split at the empty lines.
        inner = payload[0] if payload and isinstance(payload[0], Message) else None
        if inner is None:
            return []
        return _split_blocks(inner.as_bytes(policy=compat32).decode("utf-8", "replace"))
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, str):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
        return _split_blocks(text)
    return []


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return "" if value is None else str(value)


def _original_headers(report: Message) -> Message | None:
    for part in report.get_payload() if isinstance(report.get_payload(), list) else []:
        if not isinstance(part, Message):
            continue
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        elif ctype in HEADER_TYPES:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            return HeaderParser(policy=compat32).parsestr(text.replace("\r\n", "\n"), headersonly=True)
    return None


def _decoded(msg: Message | None, name: str) -> str:
    if msg is None or msg.get(name) is None:
        return ""
    return _decoded_text(str(msg.get(name)))


def _decoded_text(raw: str) -> str:
    """A header value that may still hold RFC 2047 encoded words, decoded and escaped."""
    try:
        return one_line(str(make_header(decode_header(raw))))
    except Exception:
        return one_line(raw)


def dsn_report(data: bytes, msg: Message) -> DsnReport | None:
    """The report of a DSN, or None when the message is not one (RFC 3464 §2, RFC 6522 §3).

    `msg` is `data` already parsed (the viewer has it at hand)."""
    if msg.get_content_type() != "multipart/report":
        return None
    try:
        engine_report = parse_dsn(data)
    except Exception:
        engine_report = None
    if engine_report is not None:
        return DsnReport(
            reporting_mta=one_line(engine_report.reporting_mta),
            recipients=tuple(DsnRecipient(
                recipient=one_line(r.recipient or r.original_recipient),
                action=one_line(r.action).lower(),
                status=one_line(r.status).split(" ")[0],
                diagnostic=one_line(r.diagnostic),
                remote_mta=one_line(r.remote_mta),
            ) for r in engine_report.recipients),
            original_subject=_decoded_text(engine_report.original_subject),
            original_to="",
            original_message_id=one_line(engine_report.original_message_id),
        )
    return _own_report(msg)


def _own_report(msg: Message) -> DsnReport | None:
    if msg.get_content_type() != "multipart/report":
        return None
    parts = msg.get_payload()
    if not isinstance(parts, list):
        return None
    status = next((p for p in parts if isinstance(p, Message) and p.get_content_type() in DSN_TYPES), None)
    if status is None:
        return None
    blocks = _blocks(status)
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    if per_message.get("Final-Recipient") is not None:      # a sender that left out the first block
        per_message, per_recipient = Message(), blocks
    recipients = []
    for block in per_recipient:
        final = _field(block, "Final-Recipient") or _field(block, "Original-Recipient")
        if not final:
            continue
        recipients.append(DsnRecipient(
            recipient=_typed_value(final),
            action=one_line(_field(block, "Action")).lower(),
            status=one_line(_field(block, "Status")).split(" ")[0],
            diagnostic=_typed_value(_field(block, "Diagnostic-Code")) if block.get("Diagnostic-Code") else "",
            remote_mta=_typed_value(_field(block, "Remote-MTA")) if block.get("Remote-MTA") else "",
        ))
    original = _original_headers(msg)
    return DsnReport(
        reporting_mta=_typed_value(_field(per_message, "Reporting-MTA")),
        recipients=tuple(recipients),
        original_subject=_decoded(original, "Subject"),
        original_to=_decoded(original, "To"),
        original_message_id=_decoded(original, "Message-ID"),
    )
