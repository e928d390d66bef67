"""What the viewer lists and what search reads: header summaries and decoded body text.

Pure functions over message bytes (stored LF form).  Summaries come from the header block alone, found
with one regex pass and decoded with the stdlib `email` helpers (RFC 2047 words, dates), so delivery never
parses a 25 MiB body nor builds a Message object; body text uses the full `email` parser.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

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


# The fields the summary columns come from, found by the regex engine in one pass over the header block
# (the email package's header parser costs about ten times as much, on every delivery).
_SUMMARY_FIELDS = re.compile(
    rb"^(date|from|subject|message-id|in-reply-to|references|content-type|content-disposition)[ \t]*:",
    re.IGNORECASE | re.MULTILINE)
_FIELD_END = re.compile(rb"\n(?![ \t])")     # a line break not followed by folding white space


def header_fields(block: bytes) -> dict[str, bytes]:
    """The first occurrence of each summary field in a header block (RFC 5322 §2.2), raw and still folded;
    a field repeated later does not replace the first (as the email package's `get` answers)."""
    out: dict[str, bytes] = {}
    for m in _SUMMARY_FIELDS.finditer(block):
        name = m.group(1).decode("ascii").lower()
        if name in out:
            continue
        end = _FIELD_END.search(block, m.end())
        out[name] = block[m.end():end.start() if end else len(block)]
        if len(out) == 8:
            break
    return out


def _text(raw: bytes | None) -> str:
    """A header value decoded for a person (RFC 2047 encoded words, RFC 6532 raw UTF-8), unfolded
    (RFC 5322 §2.2.3) with runs of white space made one space; never raises."""
    if not raw:
        return ""
    value = raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", "replace")
    if "=?" in value:
        with contextlib.suppress(Exception):
            value = str(make_header(decode_header(value)))
    return " ".join(value.split())


def summarize(data: bytes) -> HeaderSummary:
    """Summary columns of one message, from its header block only."""
    fields = header_fields(header_block(data))
    date: float | None = None
    raw_date = _text(fields.get("date"))
    if raw_date:
        try:
            date = email.utils.parsedate_to_datetime(raw_date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            date = None
    ctype = (_text(fields.get("content-type")) or "text/plain").split(";", 1)[0].strip().lower()
    disposition = _text(fields.get("content-disposition")).split(";", 1)[0].strip().lower()
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
        sender=_text(fields.get("from")),
        subject=_text(fields.get("subject")),
        message_id=_text(fields.get("message-id")),
        in_reply_to=_text(fields.get("in-reply-to")),
        references=_text(fields.get("references")),
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
