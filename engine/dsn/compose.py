"""Composing a DSN: multipart/report with a human part, message/delivery-status, and the original's header.

RFC 3464 (format), RFC 3462/6522 (multipart/report), RFC 3463 (status codes), RFC 3834 §5
(Auto-Submitted), RFC 6533 (utf-8 address type for internationalised addresses).
"""

from __future__ import annotations

import email.policy
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formatdate, make_msgid

_POLICY = email.policy.SMTP.clone(max_line_length=78)
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")     # RFC 3464 §2.3.3


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's block in the report (RFC 3464 §2.3)."""

    recipient: str
    action: str                        # failed | delayed | delivered | relayed | expanded
    status: str                        # RFC 3463 code, e.g. "5.1.1"
    diagnostic: str = ""               # the remote's reply ("550 5.1.1 No such user") or our reason
    remote_mta: str = ""               # host name of the server that answered, "" when none did
    last_attempt: float | None = None
    will_retry_until: float | None = None
    from_remote: bool = True           # diagnostic is an SMTP reply (smtp;) or our own words (x-postroom;)


def status_from_reply(code: int, text: str) -> str:
    """The enhanced status of a reply: the one it carries (RFC 3463), else the generic class of its code."""
    m = _ENHANCED.search(text[:20])
    if m and m.group(1) == str(code)[0]:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return "5.0.0" if code >= 500 else "4.0.0" if code >= 400 else "2.0.0"


def _address_type(address: str) -> str:
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _date(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC))


def _explanation(reporting_mta: str, recipients: Sequence[RecipientStatus], delayed_only: bool,
                 arrival: float, now: float) -> str:
    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    if delayed_only:
        hours = max(1, round((now - arrival) / 3600))
        lines += [
            "####################################################################",
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
            "####################################################################",
            "",
            f"Your message could not be delivered for {hours} hour(s).",
        ]
        until = max((r.will_retry_until or 0.0) for r in recipients)
        if until:
            lines.append(f"It will be retried until {_date(until)}.")
    else:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
            "",
            "For further assistance, please send mail to postmaster.",
        ]
    lines.append("")
    for r in recipients:
        reason = _one_line(r.diagnostic) or r.status
        where = f"host {r.remote_mta} said: " if r.remote_mta and r.from_remote else ""
        lines.append(f"<{r.recipient}>: {where}{reason}")
    return "\n".join(lines) + "\n"


def _header_block(original: bytes) -> bytes:
    """The original's header section (RFC 5322 §2.1), with CRLF line ends."""
    data = original.replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    head = data if end < 0 else data[:end + 1]
    if data.startswith(b"\n"):
        head = b""
    return head.replace(b"\n", b"\r\n")


def compose_dsn(*, reporting_mta: str, sender: str, original: bytes, recipients: Sequence[RecipientStatus],
                queue_id: str = "", arrival: float | None = None, now: float | None = None) -> bytes:
    """The whole DSN message, to be sent with the null reverse-path `<>` to `sender`."""
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    now = time.time() if now is None else now
    arrival = now if arrival is None else arrival
    delayed_only = all(r.action == "delayed" for r in recipients)

    report = MIMEMultipart("report", report_type="delivery-status", policy=_POLICY)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = f"<{sender}>"
    report["Subject"] = ("Delayed Mail (still being retried)" if delayed_only
                         else "Undelivered Mail Returned to Sender")
    report["Date"] = formatdate(now, localtime=False, usegmt=True)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"               # RFC 3834 §5: never answer this automatically
    report.preamble = "This is a MIME-encapsulated message."

    text = _explanation(reporting_mta, recipients, delayed_only, arrival, now)
    report.attach(MIMEText(text, "plain", "us-ascii" if text.isascii() else "utf-8", policy=_POLICY))

    status = Message(policy=_POLICY)
    status["Content-Type"] = "message/delivery-status"
    per_message = Message(policy=_POLICY)                   # RFC 3464 §2.2
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    if queue_id:
        per_message["X-Postroom-Queue-ID"] = queue_id
    per_message["Arrival-Date"] = _date(arrival)
    blocks: list[Message | str] = [per_message]
    for r in recipients:                                    # RFC 3464 §2.3
        if r.action not in ACTIONS:
            raise ValueError(f"unknown DSN action {r.action!r}")
        block = Message(policy=_POLICY)
        block["Final-Recipient"] = _address_type(r.recipient)
        block["Action"] = r.action
        block["Status"] = r.status
        if r.remote_mta:
            block["Remote-MTA"] = f"dns; {r.remote_mta}"
        if r.diagnostic:
            kind = "smtp" if r.from_remote else "x-postroom"
            block["Diagnostic-Code"] = f"{kind}; {_one_line(r.diagnostic)}"
        if r.last_attempt:
            block["Last-Attempt-Date"] = _date(r.last_attempt)
        if r.will_retry_until and r.action == "delayed":
            block["Will-Retry-Until"] = _date(r.will_retry_until)
        blocks.append(block)
    status.set_payload(blocks)
    report.attach(status)

    headers = Message(policy=_POLICY)                      # RFC 6522 §4: text/rfc822-headers
    head = _header_block(original)
    if head.isascii():
        headers["Content-Type"] = "text/rfc822-headers"
        headers.set_payload(head.decode("ascii"))
    else:
        headers["Content-Type"] = 'text/rfc822-headers; charset="utf-8"'
        headers["Content-Transfer-Encoding"] = "8bit"
        # Surrogate-escaped so the byte generator writes the original octets back unchanged.
        headers.set_payload(head.decode("ascii", "surrogateescape"))
    report.attach(headers)
    return report.as_bytes(policy=_POLICY)
