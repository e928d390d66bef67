"""POP3 wire format as pure functions over bytes: command lines in, reply lines and multi-line bodies out.

Nothing here does I/O or knows about sessions, so every function can be fuzzed on its own (see
tests/engine/pop3/test_parser.py).
"""

from __future__ import annotations

from dataclasses import dataclass

CRLF = b"\r\n"
TERMINATOR = b".\r\n"   # RFC 1939 §3: a multi-line response ends with a line holding only "."

# RFC 2449 §4 raises the command limit of RFC 1939 to 255 octets; we accept up to 512 octets including
# CRLF (the house limit for command lines) so long SASL initial responses still fit.
MAX_COMMAND_LINE = 512
# RFC 2449 §4: keywords and arguments are each at most 40 characters.
MAX_ARGUMENT = 40
MAX_KEYWORD = 4          # RFC 1939 §3: keywords are three or four characters (CAPA, STLS, AUTH, USER ...)


class CommandError(ValueError):
    """A command line that cannot be understood; str() is the text of the -ERR reply."""


@dataclass(frozen=True)
class Command:
    """One parsed command line: the upper-cased keyword and its arguments as text."""

    verb: str
    args: tuple[str, ...]
    raw_args: str          # everything after the keyword and one space, for USER/PASS (spaces allowed)


def parse_command(line: bytes) -> Command:
    """Splits a command line (without its CRLF) into keyword and arguments.

    RFC 1939 §3: a keyword, then arguments separated by single spaces; keywords are case-insensitive.
    PASS keeps the rest of the line verbatim in `raw_args`, since RFC 1939 §7 lets a password contain
    spaces.
    """
    if len(line) + 2 > MAX_COMMAND_LINE:
        raise CommandError(f"command line longer than {MAX_COMMAND_LINE} octets")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("command line is not valid UTF-8") from None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise CommandError("control characters are not allowed in a command")
    if not text.strip():
        raise CommandError("empty command")
    keyword, _, rest = text.partition(" ")
    if not keyword or len(keyword) > MAX_KEYWORD or not keyword.isascii() or not keyword.isalpha():
        raise CommandError("unknown command")
    args = tuple(part for part in rest.split(" ") if part)
    return Command(verb=keyword.upper(), args=args, raw_args=rest)


def parse_number(arg: str) -> int:
    """A decimal message number or line count: digits only, no sign, no spaces (RFC 1939 §3)."""
    if not arg.isascii() or not arg.isdigit() or len(arg) > 10:
        raise CommandError(f"{arg[:MAX_ARGUMENT]!r} is not a number")
    return int(arg)


# --- replies ----------------------------------------------------------------------------------------

def ok(text: str = "") -> bytes:
    """A positive status line (RFC 1939 §3)."""
    return b"+OK " + text.encode("utf-8") + CRLF if text else b"+OK" + CRLF


def err(text: str, code: str | None = None) -> bytes:
    """A negative status line, with an RFC 2449 §8 response code in brackets when one applies."""
    prefix = f"[{code}] " if code else ""
    return b"-ERR " + (prefix + text).encode("utf-8") + CRLF


def multiline(first: bytes, lines: list[str]) -> bytes:
    """A status line followed by short text lines (LIST, UIDL, CAPA), terminated by "." (RFC 1939 §3)."""
    body = b"".join(stuff_line(line.encode("utf-8")) + CRLF for line in lines)
    return first + body + TERMINATOR


def stuff_line(line: bytes) -> bytes:
    """Byte-stuffs one line: RFC 1939 §3, a line beginning with "." gets another "." in front."""
    return b"." + line if line.startswith(b".") else line


def stuff_message(data: bytes, first_line: bytes = b"") -> bytes:
    """A message as the body of a multi-line reply: dot-stuffed, ending with CRLF, then ".".

    RFC 1939 §3 — every line beginning with the termination octet is prefixed with it.  The store hands
    out CRLF lines, so the message is stuffed wherever a line starts; a final line without CRLF gets one
    so the terminator stands on its own line.  `first_line` (the status line) is put in front in the
    same copy, since RETR bodies are large and copied once only.
    """
    body = data.replace(b"\r\n.", b"\r\n..")
    lead = b"." if body.startswith(b".") else b""
    tail = CRLF + TERMINATOR if body and not body.endswith(CRLF) else TERMINATOR
    return b"".join((first_line, lead, body, tail))


def top_of_message(data: bytes, lines: int) -> bytes:
    """The header, the blank line after it and the first `lines` lines of the body (RFC 1939 §7 TOP).

    A message without a blank line is all header; then the header alone is returned, as Dovecot does.
    """
    if data.startswith(CRLF):
        head_end = 2                      # an empty header: the body starts after the first line
    else:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return data
        head_end = end + 4
    if lines == 0:
        return data[:head_end]
    pos = head_end
    for _ in range(lines):
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return data
        pos = nl + 2
        if pos >= len(data):
            break
    return data[:pos]


def uidl_of(uidvalidity: int, uid: int) -> str:
    """The POP3 unique-id of an INBOX message: "<uidvalidity>.<uid>".

    RFC 1939 §7 asks for 1 to 70 characters from 0x21..0x7E that stay the same across sessions.  IMAP's
    UIDVALIDITY and UID name a message for good (RFC 3501 §2.3.1.1), so POP3 and IMAP agree on identity.
    """
    return f"{uidvalidity}.{uid}"
