"""Writing mail: a new message, a reply (to the sender, or to all) and a forward, as pure functions.

A reply keeps the conversation together (RFC 5322 §3.6.4: In-Reply-To is the parent's Message-ID and
References is the parent's References plus that ID) and quotes the text with "> "; a forward carries
the original whole, as a message/rfc822 attachment (RFC 2046 §5.2.1), so nothing of it is lost.
Messages are built with the stdlib `email` package, which refuses header injection (CR/LF in values).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP, compat32
from email.utils import format_datetime, getaddresses, make_msgid

from desktop.viewer.message import MessageView
from desktop.viewer.text import escape_unsafe, is_unsafe_char

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:\s*", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr)\s*:\s*", re.IGNORECASE)
MAX_QUOTED_CHARS = 200_000


class ComposeError(ValueError):
    """The message cannot be built as written; str() says what to fix."""


@dataclass(frozen=True)
class Draft:
    to: str = ""
    cc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    forwarded: bytes | None = None          # the original message, attached whole
    forwarded_name: str = ""
    kind: str = "new"                       # new | reply | reply-all | forward
    extra: dict[str, str] = field(default_factory=dict)


def _raw(msg: Message, name: str) -> str:
    value = msg.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _addresses(msg: Message, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        try:
            header = msg[name]
        except Exception:
            continue
        if header is None:
            continue
        for a in getattr(header, "addresses", ()) or ():
            if a.addr_spec and a.addr_spec not in found:
                found.append(a.addr_spec)
    return found


def _shown(addresses: list[str]) -> str:
    """Addresses for an editable field: hidden characters made visible (they then fail to parse,
    which is the point: nobody sends to an address they cannot see)."""
    return ", ".join(escape_unsafe(a, strict=True) for a in addresses)


def _subject(view: MessageView, prefix: str, pattern: re.Pattern[str]) -> str:
    subject = view.subject
    return subject if pattern.match(subject) else f"{prefix}{subject}"


def _quote(text: str) -> str:
    text = text[:MAX_QUOTED_CHARS]
    return "".join(f"> {line}\n" if line else ">\n" for line in text.rstrip("\n").split("\n"))


def reply_draft(view: MessageView, msg: Message, me: str, *, to_all: bool = False) -> Draft:
    """A reply to the sender (Reply-To when given, RFC 5322 §3.6.2), or to everyone but `me`."""
    me_l = me.lower()
    to = _addresses(msg, "Reply-To") or _addresses(msg, "From")
    cc: list[str] = []
    if to_all:
        cc = [a for a in _addresses(msg, "To", "Cc") if a.lower() != me_l and a.lower() not in
              {t.lower() for t in to}]
    to = [a for a in to if a.lower() != me_l] or to
    msgid = _raw(msg, "Message-ID")
    references = " ".join(x for x in (_raw(msg, "References") or _raw(msg, "In-Reply-To"), msgid) if x)
    who = view.sender[0].text if view.sender else "someone"
    intro = f"On {view.date}, {who} wrote:\n" if view.date else f"{who} wrote:\n"
    return Draft(to=_shown(to), cc=_shown(cc), subject=_subject(view, "Re: ", _REPLY_PREFIX),
                 body=f"\n\n{intro}{_quote(view.text or '')}", in_reply_to=msgid, references=references,
                 kind="reply-all" if to_all else "reply")


def forward_draft(view: MessageView, raw: bytes) -> Draft:
    """The original attached as message/rfc822, with a short note of what it is."""
    who = view.sender[0].text if view.sender else ""
    note = f"\n\n-------- Forwarded message --------\nFrom: {who}\nDate: {view.date}\nSubject: {view.subject}\n"
    return Draft(subject=_subject(view, "Fwd: ", _FORWARD_PREFIX), body=note, forwarded=raw,
                 forwarded_name=(view.subject or "forwarded message") + ".eml", kind="forward")


def parse_recipients(text: str) -> list[str]:
    """Addresses from a To/Cc field ("a@x, Bob <b@y>"); ComposeError for anything that is not one."""
    if any(is_unsafe_char(ch, strict=True) for ch in text) or "[U+" in text:
        raise ComposeError("An address contains hidden characters; type it again.")
    found: list[str] = []
    for display, addr in getaddresses([text]):
        addr = addr.strip()
        if not addr and not display.strip():
            continue
        local, at, domain = addr.rpartition("@")
        if not at or not local or "." not in domain or any(ch.isspace() for ch in addr):
            raise ComposeError(f"“{display or addr}” is not an email address.")
        found.append(addr)
    return found


def build_message(sender: str, draft: Draft, hostname: str, now: float | None = None) -> tuple[bytes, list[str]]:
    """(RFC 5322 message, envelope recipients) for `draft` sent by `sender`."""
    to = parse_recipients(draft.to)
    cc = parse_recipients(draft.cc)
    if not to and not cc:
        raise ComposeError("Add at least one recipient.")
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = draft.subject.replace("\r", " ").replace("\n", " ")
    when = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=hostname or None)
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = draft.references
    msg["User-Agent"] = "Postroom"
    msg.set_content(draft.body or "\n")
    if draft.forwarded is not None:
        from email.parser import BytesParser

        original = BytesParser(policy=compat32).parsebytes(draft.forwarded)
        msg.add_attachment(original, disposition="attachment",
                           filename=draft.forwarded_name or "forwarded message.eml")
    recipients: list[str] = []
    for a in to + cc:
        if a.lower() not in {r.lower() for r in recipients}:
            recipients.append(a)
    return msg.as_bytes(), recipients
