"""One stored message read for a person: headers in words, the body to show, attachments, bounce, checks.

Pure functions over the message bytes, with the stdlib `email` package and `policy.default` doing the
decoding (RFC 2047 encoded words, RFC 2231 parameters, charsets, quoted-printable and base64).  Nothing
here trusts the message: every string meant for a label is escaped (desktop.viewer.text), broken parts
fall back to a lossy decoding instead of raising, and the walk over parts is iterative and bounded.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from desktop.viewer.authresults import AuthVerdict, auth_verdicts
from desktop.viewer.dsn import DSN_TYPES, DsnReport, dsn_report
from desktop.viewer.text import ShownAddress, escape_unsafe, one_line, safe_filename, show_address

MAX_PARTS = 1000            # a message with more parts than this is shown up to here
LEAF_CONTAINERS = ("message/rfc822", "message/global", *DSN_TYPES)  # shown as one attachment each


@dataclass(frozen=True)
class AttachmentInfo:
    part: int                 # the part's number in `walk_parts` order (what `part_content` takes)
    name: str                 # for display, escaped
    save_name: str            # a plain file name (desktop.viewer.text.safe_filename)
    content_type: str
    size: int                 # decoded octets
    content_id: str           # without <>, "" when none
    inline: bool              # shown inside the HTML body (a cid: image) rather than only listed


@dataclass(frozen=True)
class MessageView:
    subject: str
    sender: tuple[ShownAddress, ...]
    to: tuple[ShownAddress, ...]
    cc: tuple[ShownAddress, ...]
    reply_to: tuple[ShownAddress, ...]
    date: str                 # local time in words, or the raw (escaped) header when unparseable
    timestamp: float | None
    sender_key: str           # lower-case address of the first From mailbox ("" when none)
    message_id: str
    headers: str              # the whole header block as received, escaped, for "all headers"
    text: str | None          # the text/plain body
    html: str | None          # the text/html body, NOT yet sanitised (desktop.viewer.html does that)
    attachments: tuple[AttachmentInfo, ...]
    cids: dict[str, int] = field(default_factory=dict)     # content-id -> part number
    dsn: DsnReport | None = None
    auth: tuple[AuthVerdict, ...] = ()

    @property
    def warnings(self) -> list[str]:
        """Address warnings (a name pretending to be another address, hidden characters)."""
        return [a.warning for a in (*self.sender, *self.reply_to) if a.warning]


def parse(data: bytes) -> EmailMessage:
    """The message as an EmailMessage (policy.default); LF or CRLF line ends alike."""
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def header_block(data: bytes) -> bytes:
    """The header section as received (RFC 5322 §2.1), without the empty line that ends it."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = data.find(sep)
        if end >= 0:
            other = data.find(b"\n\n" if sep == b"\r\n\r\n" else b"\r\n\r\n")
            if other < 0 or end < other:
                return data[:end]
    return data


def walk_parts(msg: Message) -> Iterator[tuple[int, Message]]:
    """Every part, numbered in pre-order; forwarded messages and delivery-status blocks are leaves."""
    stack: list[Message] = [msg]
    number = 0
    while stack and number < MAX_PARTS:
        part = stack.pop()
        yield number, part
        number += 1
        if part.is_multipart() and part.get_content_type() not in LEAF_CONTAINERS:
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, Message)]))


def find_part(msg: Message, number: int) -> Message | None:
    for n, part in walk_parts(msg):
        if n == number:
            return part
    return None


def part_content(msg: Message, number: int) -> tuple[bytes, str]:
    """(decoded octets, content type) of part `number`: what a cid: URL serves and what "Save" writes."""
    part = find_part(msg, number)
    if part is None:
        raise KeyError(f"no part {number}")
    return _payload_bytes(part), part.get_content_type()


def _payload_bytes(part: Message) -> bytes:
    if part.get_content_type() in LEAF_CONTAINERS:
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message) \
                and part.get_content_type() in ("message/rfc822", "message/global"):
            return inner[0].as_bytes(policy=policy.compat32)
        body = part.as_bytes(policy=policy.compat32)
        return body.split(b"\n\n", 1)[1] if b"\n\n" in body else body
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def text_of(part: Message) -> str:
    """A text part decoded: transfer encoding, then its charset; an unknown or lying charset falls back to
    UTF-8 with replacement characters rather than failing the whole message.  Line ends become LF."""
    return _decoded_text(part).replace("\r\n", "\n")


def _decoded_text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        with contextlib.suppress(LookupError, UnicodeError, AssertionError, ValueError, TypeError):
            content = part.get_content()
            if isinstance(content, str):
                return content
    raw = _payload_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _addresses(msg: Message, name: str) -> tuple[ShownAddress, ...]:
    """Mailboxes of an address header; group syntax and encoded words handled by the email package."""
    try:
        header = msg[name]
    except Exception:
        header = None
    if header is None:
        return ()
    found: list[ShownAddress] = []
    addresses = getattr(header, "addresses", None)
    if addresses is not None:
        for a in addresses:
            found.append(show_address(a.display_name or "", a.addr_spec or ""))
        if found:
            return tuple(found)
    # No parseable mailbox: show the raw text rather than nothing.
    for display, addr in email.utils.getaddresses([str(header)]):
        if display or addr:
            found.append(show_address(display, addr))
    return tuple(found)


def _header_text(msg: Message, name: str) -> str:
    try:
        value = msg[name]
    except Exception:
        value = None
    return "" if value is None else one_line(str(value))


def _date(msg: Message) -> tuple[str, float | None]:
    try:
        header = msg["Date"]
    except Exception:
        header = None
    if header is None:
        return "", None
    when = getattr(header, "datetime", None)
    if isinstance(when, datetime):
        with contextlib.suppress(ValueError, OverflowError, OSError):
            local = when.astimezone() if when.tzinfo else when
            return local.strftime("%a %d %b %Y %H:%M"), when.timestamp()
    return one_line(str(header)), None


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name and part.get_content_type() in ("message/rfc822", "message/global"):
        inner = part.get_payload()
        subject = ""
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = str(inner[0].get("Subject", "") or "")
        name = (subject or "forwarded message") + ".eml"
    return str(name or "")


def _default_name(part: Message, number: int) -> str:
    ctype = part.get_content_type()
    ext = {"text/plain": ".txt", "text/html": ".html", "message/delivery-status": ".txt",
           "text/rfc822-headers": ".txt", "application/pdf": ".pdf"}.get(ctype, "")
    if not ext and "/" in ctype:
        sub = ctype.split("/", 1)[1]
        ext = "." + sub if sub.isalnum() and len(sub) <= 5 else ".bin"
    return f"part-{number}{ext}"


def _content_id(part: Message) -> str:
    value = str(part.get("Content-ID", "") or "").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()


def read_message(data: bytes, authserv_id: str = "") -> MessageView:
    """Everything the reading pane shows, decided here rather than in widgets."""
    msg = parse(data)
    body_html = body_text = None
    with contextlib.suppress(Exception):
        body_html = msg.get_body(preferencelist=("html",))
    with contextlib.suppress(Exception):
        body_text = msg.get_body(preferencelist=("plain",))
    body_parts = {id(p) for p in (body_html, body_text) if p is not None}

    html = text = None
    attachments: list[AttachmentInfo] = []
    cids: dict[str, int] = {}
    for number, part in walk_parts(msg):
        if part is body_html:
            html = text_of(part)
            continue
        if part is body_text:
            text = text_of(part)
            continue
        if part.is_multipart() and part.get_content_type() not in LEAF_CONTAINERS:
            continue
        if number == 0 and not body_parts and part.get_content_maintype() == "text":
            # A single text part that get_body() passed over (text/calendar, say): show it as text.
            text = text_of(part)
            continue
        cid = _content_id(part)
        if cid:
            cids.setdefault(cid, number)
        raw_name = _filename(part)
        size = len(_payload_bytes(part))
        attachments.append(AttachmentInfo(
            part=number,
            name=one_line(raw_name) if raw_name else _default_name(part, number),
            save_name=safe_filename(raw_name, fallback=_default_name(part, number)),
            content_type=one_line(part.get_content_type()),
            size=size,
            content_id=escape_unsafe(cid, strict=True),
            inline=False,
        ))
    if html is not None and cids:
        lowered = html.lower()
        attachments = [
            AttachmentInfo(a.part, a.name, a.save_name, a.content_type, a.size, a.content_id,
                           inline=bool(a.content_id) and f"cid:{a.content_id.lower()}" in lowered)
            for a in attachments
        ]

    date, timestamp = _date(msg)
    sender = _addresses(msg, "From")
    raw_sender = ""
    with contextlib.suppress(Exception):
        header = msg["From"]
        if header is not None and getattr(header, "addresses", None):
            raw_sender = (header.addresses[0].addr_spec or "").strip().lower()
    headers = escape_unsafe(header_block(data).decode("utf-8", "replace"), keep_newlines=True)
    auth_values: list[str] = []
    with contextlib.suppress(Exception):
        auth_values = [str(v) for v in msg.get_all("Authentication-Results", [])]
    dsn = None
    with contextlib.suppress(Exception):
        dsn = dsn_report(data, msg)
    return MessageView(
        subject=_header_text(msg, "Subject"),
        sender=sender,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        reply_to=_addresses(msg, "Reply-To"),
        date=date,
        timestamp=timestamp,
        sender_key=raw_sender,
        message_id=_header_text(msg, "Message-ID"),
        headers=headers,
        text=text,
        html=html,
        attachments=tuple(attachments),
        cids=cids,
        dsn=dsn,
        auth=tuple(auth_verdicts(auth_values, authserv_id)),
    )
