"""The message text of one SMTP transaction: collecting DATA, checking it, and the Received: trace line.

Pure functions and a small collector over bytes; no I/O.  The collector sees the DATA stream as pieces
that each end where a `.<CRLF>` ended (or anywhere, for pieces cut at a buffer limit) and decides when
the message is over: only at `<CRLF>.<CRLF>` (RFC 5321 §4.1.1.4), never at a bare LF or bare CR, so a
`<LF>.<LF>` or `<CR>.<CR>` smuggled inside a message cannot end it early (the 2023 "SMTP smuggling"
class of attack).  What was collected is kept only while it fits the size limit.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

from engine.smtp import codes
from engine.smtp.codes import Reply

END_OF_DATA = b"\r\n.\r\n"
MAX_RECEIVED = 50           # RFC 5321 §6.3: a loop shows as a long trail of Received: headers

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f()\\<>;\s]")


class DataCollector:
    """Collects a dot-terminated DATA stream, keeping at most `limit` octets of it.

    Feed it what the socket gave; `done` turns True once `<CRLF>.<CRLF>` has been seen (the CRLF may be
    the one that ended the DATA command line, for an empty message).  Past the limit the text is dropped
    but the stream is still read to its end, so the reply comes at the right moment (RFC 5321 §4.2.5).
    """

    __slots__ = ("_parts", "_tail", "done", "limit", "oversize", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.oversize = False
        self.done = False
        self._parts: list[bytes] = []
        self._tail = b"\r\n"          # the DATA command's own CRLF precedes the first line

    def feed(self, piece: bytes, *, may_end: bool = True) -> bool:
        """Adds a piece; with `may_end`, the piece ends where a `.<CRLF>` was found.  Returns `done`."""
        if not piece:
            return self.done
        self.size += len(piece)
        if not self.oversize:
            if self.size > self.limit + len(END_OF_DATA):
                self.oversize = True
                self._parts.clear()
            else:
                self._parts.append(piece)
        joined = self._tail + piece[-len(END_OF_DATA):]
        if may_end and joined.endswith(END_OF_DATA):
            self.done = True
        self._tail = joined[-len(END_OF_DATA):]
        return self.done

    def text(self) -> bytes:
        """The message as sent, still dot-stuffed, without the final `.<CRLF>`."""
        data = b"".join(self._parts)
        self._parts.clear()
        body = data[:-3]        # ".\r\n"; the CRLF before the dot ends the last line
        if len(body) > self.limit:
            self.oversize = True
            return b""
        return body


def unstuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line that begins with a period loses that period."""
    if data.startswith(b"."):
        data = data[1:]
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n")
    return data


def check_text(data: bytes, line_limit: int) -> Reply | None:
    """Why a message's text cannot be accepted, or None.

    Bare LF anywhere refuses the message, as Postfix's `smtpd_forbid_bare_newline = yes` does: a
    downstream system that ends lines (or the message) at LF would otherwise see a different message
    than we did.  A bare CR inside a line stays: it cannot end anything here.  `line_limit` counts the
    CRLF (RFC 5321 §4.5.3.1.6: 1000 octets).
    """
    lines = data.split(b"\r\n")
    if data.count(b"\n") != len(lines) - 1:       # an LF that does not end a CRLF line
        return codes.BARE_NEWLINE
    if len(data) > line_limit - 2 and max(map(len, lines)) > line_limit - 2:
        return codes.DATA_LINE_TOO_LONG.with_text(
            f"Message has a line longer than {line_limit} octets (RFC 5321 section 4.5.3.1.6)")
    return None


def header_section(data: bytes) -> bytes:
    """The header lines of a message (RFC 5322 §2.1), up to but not including the empty line."""
    if data.startswith(b"\r\n"):
        return b""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end + 2]


def count_received(data: bytes) -> int:
    return len(_RECEIVED.findall(header_section(data)))


_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*((?:[^\r\n]|\r\n[ \t])*)", re.IGNORECASE | re.MULTILINE)


def message_id_of(data: bytes) -> str:
    """The Message-ID header's value (RFC 5322 §3.6.4), unfolded, or "" — what the delivery log files a
    message under, so its receipt and its relaying rows share one id."""
    m = _MESSAGE_ID.search(header_section(data))
    if m is None:
        return ""
    return b" ".join(m.group(1).split()).decode("ascii", "replace")[:998]


_DATE = re.compile(rb"^date[ \t]*:", re.IGNORECASE | re.MULTILINE)


def missing_origin_fields(data: bytes, *, message_id: str, hostname: str, now: float | None = None) -> bytes:
    """The Date and Message-ID header lines a submitted message lacks (RFC 6409 §8.2 and §8.3: the MSA may
    add Date and should add Message-ID), to go in front of it; b"" when it has both."""
    head = header_section(data)
    added = b""
    if _DATE.search(head) is None:
        added += b"Date: " + email.utils.formatdate(now, localtime=True).encode("ascii") + b"\r\n"
    if _MESSAGE_ID.search(head) is None:
        added += f"Message-ID: <{message_id}@{hostname}>\r\n".encode("ascii", "replace")
    return added


def _safe(text: str) -> str:
    """Client-supplied words (the HELO name) made safe inside a header: no spaces, controls or comments."""
    cleaned = _UNSAFE_IN_HEADER.sub("?", text)
    return cleaned[:255] or "unknown"


@dataclass(frozen=True)
class TraceInfo:
    """What the Received: line says about one transaction."""

    helo: str                    # the client's EHLO/HELO argument
    client_ip: str
    client_name: str | None      # reverse DNS of client_ip, when there is one
    hostname: str                # ours
    message_id: str              # our id for the transaction
    esmtp: bool
    tls: bool
    authenticated: bool
    utf8: bool
    recipient: str | None        # given when the message has exactly one recipient
    tls_version: str = ""
    tls_cipher: str = ""


def protocol_name(esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """The `with` keyword of a Received: line (RFC 3848; RFC 6531 §3.7.3 for UTF8SMTP*)."""
    if utf8:
        base = "UTF8SMTP"
    elif esmtp:
        base = "ESMTP"
    else:
        return "SMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


_last_date: tuple[int, str] = (-1, "")


def _trace_date(now: float) -> str:
    """RFC 5322 §3.3 date-time in local time; whole seconds, so one formatting serves every message
    received in the same second."""
    global _last_date
    second = int(now)
    cached = _last_date
    if cached[0] != second:
        cached = _last_date = (second, email.utils.formatdate(second, localtime=True))
    return cached[1]


def received_header(info: TraceInfo, now: float | None = None) -> bytes:
    """RFC 5321 §4.4: `Received: from <helo> (<name> [ip]) by <host> with <proto> id <id>; <date>`."""
    ip = info.client_ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    tcp_info = f"{_safe(info.client_name)} {literal}" if info.client_name else literal
    lines = [f"Received: from {_safe(info.helo)} ({tcp_info})"]
    if info.tls and info.tls_version:
        lines.append(f"\t(using {_safe(info.tls_version)} with cipher {_safe(info.tls_cipher)})")
    proto = protocol_name(info.esmtp, info.tls, info.authenticated, info.utf8)
    lines.append(f"\tby {info.hostname} with {proto} id {info.message_id}")
    date = _trace_date(now if now is not None else time.time())
    if info.recipient is not None and "<" not in info.recipient and ">" not in info.recipient:
        lines.append(f"\tfor <{info.recipient}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
