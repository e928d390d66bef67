"""What the viewer lists and what search reads: header summaries and decoded body text.

Pure functions over message bytes (stored LF form), using the stdlib `email` package.  Summaries come
from the header block alone so delivery never parses a 25 MiB body.
"""

from __future__ import annotations

import contextlib
import email.utils
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser

MAX_HEADER_BYTES = 256 * 1024


@dataclass(frozen=True)
class HeaderSummary:
    date: float | None
    sender: str
    subject: str
    message_id: str
    in_reply_to: str
    references: str
    has_attachments: bool


def header_block(data: bytes) -> bytes:
    """The header section (RFC 5322 §2.1) including its terminating empty line, LF or CRLF form."""
    if data.startswith((b"\n", b"\r\n")):
        return b""
    end = data.find(b"\n\n", 0, MAX_HEADER_BYTES)
    end_crlf = data.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)
    ends = [e + n for e, n in ((end, 2), (end_crlf, 4)) if e >= 0]
    return data[: min(ends)] if ends else data[:MAX_HEADER_BYTES]


def _text(msg: Message, name: str) -> str:
    """A header decoded for a person (RFC 2047 encoded words, RFC 6532 raw UTF-8), never raising.

    compat32 parsing is several times cheaper than policy.default and this runs once per delivery."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == name), None)
    if raw is None:
        return ""
    value = str(raw)
    if not value.isascii():
        # The bytes parser keeps 8-bit octets as surrogate escapes; RFC 6532 says they are UTF-8.
        value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    if "=?" in value:
        with contextlib.suppress(Exception):
            value = str(make_header(decode_header(value)))
    return " ".join(value.split())


def summarize(data: bytes) -> HeaderSummary:
    """Summary columns of one message, from its header block only."""
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(header_block(data))
    date: float | None = None
    raw_date = _text(msg, "date")
    if raw_date:
        try:
            date = email.utils.parsedate_to_datetime(raw_date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            date = None
    ctype = (_text(msg, "content-type") or "text/plain").split(";", 1)[0].strip().lower()
    disposition = _text(msg, "content-disposition").split(";", 1)[0].strip().lower()
    maintype = ctype.partition("/")[0]
    # Headers only: multipart/mixed (RFC 2046 §5.1.3) is how mail agents attach files; a single
    # non-text body or an explicit attachment disposition (RFC 2183) counts too.
    has_attachments = (
        ctype in ("multipart/mixed", "multipart/report")
        or disposition == "attachment"
        or maintype in ("application", "image", "audio", "video")
    )
    return HeaderSummary(
        date=date,
        sender=_text(msg, "from"),
        subject=_text(msg, "subject"),
        message_id=_text(msg, "message-id"),
        in_reply_to=_text(msg, "in-reply-to"),
        references=_text(msg, "references"),
        has_attachments=has_attachments,
    )


def body_text(data: bytes) -> str:
    """All text/* parts decoded (transfer encoding and charset), joined; for full-text search."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(data)
    except Exception:
        return data.decode("utf-8", "replace")
    chunks: list[str] = []
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        try:
            content = part.get_content()
        except Exception:
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        if isinstance(content, str):
            chunks.append(content)
    return "\n".join(chunks)
