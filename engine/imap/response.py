"""Serialising IMAP response data (RFC 3501 §4, §7): atoms, quoted strings, literals, nstrings, dates.

Everything here returns bytes ready for the wire; the session only joins them.  A string is sent quoted
when that is safe (short, printable, no CR/LF/NUL) and as a literal otherwise, so any octet survives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from engine.imap import mutf7

NIL = b"NIL"
CRLF = b"\r\n"
_QUOTED_MAX = 1024
_QUOTE_UNSAFE = re.compile(rb"[\x00-\x1f\x7f]")
_QUOTE_UNSAFE_ASCII = re.compile(rb"[^\x20-\x7e]")
_MEMO: dict[bytes, bytes] = {}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def quoted(value: bytes) -> bytes:
    """RFC 3501 §4.3 quoted string; the caller ensures there is no CR, LF or NUL."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes, binary: bool = False) -> bytes:
    """RFC 3501 §4.3 literal (literal8 `~{n}` from RFC 3516 when binary)."""
    return (b"~{" if binary else b"{") + str(len(value)).encode() + b"}\r\n" + value


def can_quote(value: bytes, utf8: bool = False) -> bool:
    if len(value) > _QUOTED_MAX:
        return False
    if not utf8:
        return _QUOTE_UNSAFE_ASCII.search(value) is None
    if _QUOTE_UNSAFE.search(value) is not None:
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def string(value: bytes, utf8: bool = False) -> bytes:
    """A string (quoted when that is safe, else a literal); short ones are remembered (BODYSTRUCTURE
    repeats "text", "plain", "7bit" thousands of times)."""
    if len(value) <= 32 and not utf8:
        out = _MEMO.get(value)
        if out is None:
            out = quoted(value) if can_quote(value) else literal(value)
            if len(_MEMO) < 4096:
                _MEMO[value] = out
        return out
    return quoted(value) if can_quote(value, utf8) else literal(value)


def nstring(value: bytes | None, utf8: bool = False) -> bytes:
    return NIL if value is None else string(value, utf8)


def astring(value: bytes) -> bytes:
    """An astring: bare atom when possible (mailbox names read better that way)."""
    if value and value.upper() != b"NIL" and all(
            0x21 <= b <= 0x7E and b not in b'(){ %*"\\' for b in value):
        return value
    return string(value)


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name on the wire: modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 (RFC 6855 §3)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name).encode("ascii")
    return astring(raw) if raw.isascii() else string(raw, utf8=True)


def paren(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def flags(values: Iterable[str]) -> bytes:
    return b"(" + " ".join(values).encode("ascii", "replace") + b")"


def internaldate(ts: float) -> bytes:
    """RFC 3501 §9 date-time, in UTC: "17-Jul-1996 02:44:25 +0000"."""
    t = time.gmtime(ts)
    return (f'"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
            f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"').encode("ascii")


def resp_text(text: str) -> bytes:
    """Human text in a status response: one line, no CR/LF, never starting with "[" by accident."""
    clean = " ".join(text.replace("\r", " ").replace("\n", " ").split())
    return clean.encode("utf-8", "replace")
