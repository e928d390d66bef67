"""IMAP command parsing: pure functions over the bytes of one complete command (no I/O).

The session frames a command first (a line, plus any literals announced at the end of a line, each read in
full), then hands the whole thing here.  Every grammar rule cited is RFC 3501 §9 unless marked otherwise;
extensions add their own syntax (CONDSTORE/QRESYNC RFC 7162, LIST-EXTENDED RFC 5258, ESEARCH RFC 4731, ...).
Anything that does not parse raises ParseError, which the session turns into a tagged BAD.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_NUMBER = 0xFFFFFFFF            # RFC 3501 §9 number
MAX_NUMBER64 = 0x7FFFFFFFFFFFFFFF  # RFC 9051 number64 / RFC 7162 mod-sequence-value
MAX_SEARCH_DEPTH = 50              # nested search-key parentheses/NOT/OR: a guard against stack blowups


class ParseError(Exception):
    """A command that does not follow the grammar: tagged BAD (or NO with `code` for BADCHARSET)."""

    def __init__(self, message: str, *, code: str | None = None, bad: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.bad = bad


# --- framing helpers ---------------------------------------------------------------------------------

_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}(?:\r?\n)?\Z")


@dataclass(frozen=True)
class LiteralAnnouncement:
    """A `{n}` / `{n+}` / `~{n}` at the end of a line: n more octets belong to the command."""

    size: int
    nonsync: bool       # LITERAL+ (RFC 7888): no "+" continuation expected
    binary: bool        # literal8 (RFC 3516)


def literal_at_end(line: bytes) -> LiteralAnnouncement | None:
    """Whether a line (with or without its CRLF) announces a literal that follows it."""
    m = _LITERAL_AT_END.search(line)
    if not m:
        return None
    return LiteralAnnouncement(int(m.group(2)), bool(m.group(3)), bool(m.group(1)))


_TAG = re.compile(rb"^([\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+) ")


def peek_tag(data: bytes) -> str | None:
    """The tag of a command that may be malformed, so a BAD can be tagged when possible."""
    m = _TAG.match(data)
    if m and b"+" not in m.group(1) and b"]" not in m.group(1):
        return m.group(1).decode("ascii")
    return None


# --- values ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeqSet:
    """A sequence set (RFC 3501 §9 sequence-set); None stands for "*". `saved` is "$" (RFC 5182)."""

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    def bounds(self, star: int) -> list[tuple[int, int]]:
        out = []
        for lo, hi in self.ranges:
            a = star if lo is None else lo
            b = star if hi is None else hi
            if a > b:
                a, b = b, a
            out.append((a, b))
        return out

    def select(self, values: Sequence[int], star: int) -> list[int]:
        """Indexes into the ascending `values` that this set names, ascending, each once."""
        picked: set[int] = set()
        for a, b in self.bounds(star):
            picked.update(range(bisect_left(values, a), bisect_right(values, b)))
        return sorted(picked)

    def contains(self, value: int, star: int) -> bool:
        return any(a <= value <= b for a, b in self.bounds(star))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(
            ("*" if lo is None else str(lo)) + ("" if lo == hi else ":" + ("*" if hi is None else str(hi)))
            for lo, hi in self.ranges)


def seqset_from_values(values: Sequence[int]) -> str:
    """Compact text for ascending numbers: 1,2,3,7 -> "1:3,7" (used for COPYUID, ESEARCH, VANISHED)."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class Section:
    """section-spec: part numbers, then HEADER / HEADER.FIELDS[.NOT] / TEXT / MIME or nothing."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        """The section as it is echoed in the FETCH response (RFC 3501 §7.4.2)."""
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            out += " (" + " ".join(_astring_text(f) for f in self.fields) + ")"
        return out


def _astring_text(value: str) -> str:
    if value and re.fullmatch(r"[\x21\x23-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class FetchAtt:
    """One fetch-att (RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ)."""

    name: str                                 # FLAGS, ENVELOPE, BODY, BODY.PEEK, BINARY, BINARY.SIZE, ...
    section: Section | None = None
    partial: tuple[int, int] | None = None    # <offset.length>

    @property
    def peek(self) -> bool:
        return self.name.endswith(".PEEK")


FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_FETCH_ATTS = frozenset({
    "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT",
    "BODY", "BODYSTRUCTURE", "UID", "MODSEQ", "SAVEDATE", "EMAILID", "THREADID",
})


@dataclass
class SearchKey:
    """One node of a search program (RFC 3501 §6.4.4): `op` names the key, `args` its operands."""

    op: str
    args: tuple[Any, ...] = ()
    children: list[SearchKey] = field(default_factory=list)


@dataclass(frozen=True)
class SearchProgram:
    key: SearchKey
    charset: str | None
    returns: tuple[str, ...] | None     # ESEARCH RETURN options (RFC 4731); None: plain SEARCH


@dataclass(frozen=True)
class StoreAction:
    mode: str                   # "set" | "add" | "remove"
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None


@dataclass(frozen=True)
class ListCommand:
    reference: bytes
    patterns: tuple[bytes, ...]
    select_opts: tuple[str, ...] = ()
    return_opts: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True)
class QResyncParams:
    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    seq_match: tuple[SeqSet, SeqSet] | None = None


@dataclass(frozen=True)
class Command:
    tag: str
    name: str                   # upper-case verb; "UID FETCH" etc. carry uid=True and name "FETCH"
    uid: bool = False
    args: tuple[Any, ...] = ()


# --- the cursor ------------------------------------------------------------------------------------

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
_ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_SPECIALS
_ASTRING_CHARS = _ATOM_CHARS | {ord("]")}
_LIST_CHARS = _ASTRING_CHARS | {ord("%"), ord("*")}
_TAG_CHARS = _ASTRING_CHARS - {ord("+")}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DIGITS = frozenset(b"0123456789")
# RFC 3501 §2.3.2: system flags are case-insensitive; keep one spelling.
_SYSTEM_FLAG_NAMES = {n.upper(): "\\" + n for n in ("Seen", "Answered", "Flagged", "Deleted", "Draft", "Recent")}


class Cursor:
    """A position in one command's bytes, with one method per grammar rule used by commands."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.last_literal_binary = False

    # primitives
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def fail(self, what: str) -> ParseError:
        near = "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x27, 0x5C) else f"\\x{b:02x}"
                       for b in self.data[self.pos:self.pos + 20])
        return ParseError(f"expected {what} at position {self.pos}" + (f" near '{near}'" if near else ""))

    def expect(self, token: bytes, what: str | None = None) -> None:
        end = self.pos + len(token)
        if self.data[self.pos:end].upper() != token.upper():
            raise self.fail(what or repr(token.decode()))
        self.pos = end

    def accept(self, token: bytes) -> bool:
        end = self.pos + len(token)
        if self.data[self.pos:end].upper() == token.upper():
            self.pos = end
            return True
        return False

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.fail("a space")
        self.pos += 1

    def end(self) -> None:
        if not self.at_end():
            raise self.fail("end of command")

    def _run(self, chars: frozenset[int]) -> bytes:
        start = self.pos
        data = self.data
        n = len(data)
        while self.pos < n and data[self.pos] in chars:
            self.pos += 1
        return data[start:self.pos]

    # RFC 3501 §9 rules
    def atom(self, what: str = "an atom") -> str:
        raw = self._run(_ATOM_CHARS)
        if not raw:
            raise self.fail(what)
        return raw.decode("ascii")

    def tag(self) -> str:
        raw = self._run(_TAG_CHARS)
        if not raw:
            raise self.fail("a tag")
        return raw.decode("ascii")

    def number(self, limit: int = MAX_NUMBER, what: str = "a number") -> int:
        raw = self._run(_DIGITS)
        if not raw or len(raw) > 20:
            raise self.fail(what)
        value = int(raw)
        if value > limit:
            raise ParseError(f"number {value} is too large")
        return value

    def nz_number(self, limit: int = MAX_NUMBER) -> int:
        value = self.number(limit, "a non-zero number")
        if value == 0:
            raise ParseError("0 is not a valid number here")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"', "a quoted string")
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise ParseError("unterminated quoted string")
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in (0x22, 0x5C):
                    raise ParseError("only \\\" and \\\\ may be escaped in a quoted string")
                c = data[self.pos]
                self.pos += 1
            elif c in (0x0D, 0x0A, 0x00):
                raise ParseError("CR, LF and NUL are not allowed in a quoted string")
            out.append(c)

    def literal(self) -> bytes:
        binary = self.accept(b"~")
        self.expect(b"{", "a literal")
        size = self.number(MAX_NUMBER64, "a literal size")
        self.accept(b"+")
        self.expect(b"}", "'}'")
        if not self.accept(b"\r\n"):
            self.expect(b"\n", "CRLF after a literal size")
        end = self.pos + size
        if end > len(self.data):
            raise ParseError("literal is shorter than announced")
        value = self.data[self.pos:end]
        self.pos = end
        self.last_literal_binary = binary
        return value

    def _at_string(self) -> bool:
        c = self.peek()
        return c in (0x22, 0x7B) or (c == 0x7E and self.data[self.pos + 1:self.pos + 2] == b"{")

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if self._at_string():
            return self.literal()
        raise self.fail("a string")

    def astring(self, what: str = "a string") -> bytes:
        if self._at_string():
            return self.string()
        raw = self._run(_ASTRING_CHARS)
        if not raw:
            raise self.fail(what)
        return raw

    def nstring(self) -> bytes | None:
        if self.accept(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        if self._at_string():
            return self.string()
        raw = self._run(_LIST_CHARS)
        if not raw:
            raise self.fail("a mailbox pattern")
        return raw

    def seq_number(self) -> int | None:
        if self.accept(b"*"):
            return None
        return self.nz_number()

    def seq_set(self) -> SeqSet:
        if self.accept(b"$"):
            return SeqSet(saved=True)    # RFC 5182 SEARCHRES
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            lo = self.seq_number()
            hi = lo
            if self.accept(b":"):
                hi = self.seq_number()
            ranges.append((lo, hi))
            if not self.accept(b","):
                break
        return SeqSet(tuple(ranges))

    def flag(self, allow_recent: bool = False) -> str:
        # RFC 3501 §9 flag: "\" atom for system flags, atom for keywords.
        if self.accept(b"\\"):
            if self.accept(b"*"):
                return "\\*"
            name = self.atom("a flag name")
            system = _SYSTEM_FLAG_NAMES.get(name.upper())
            return system or "\\" + name
        return self.atom("a flag")

    def flag_list(self) -> list[str]:
        self.expect(b"(", "a flag list")
        flags: list[str] = []
        if self.accept(b")"):
            return flags
        while True:
            flags.append(self.flag())
            if self.accept(b")"):
                return flags
            self.sp()

    def paren_atoms(self) -> list[str]:
        self.expect(b"(", "'('")
        out: list[str] = []
        if self.accept(b")"):
            return out
        while True:
            out.append(self.atom().upper())
            if self.accept(b")"):
                return out
            self.sp()

    def date(self) -> float:
        """RFC 3501 §9 date: d-MMM-yyyy, optionally quoted; midnight UTC of that day as a timestamp."""
        quoted = self.accept(b'"')
        m = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})").match(self.data, self.pos)
        if not m:
            raise self.fail("a date such as 1-Feb-2024")
        self.pos = m.end()
        if quoted:
            self.expect(b'"', "closing quote of a date")
        return _timestamp(int(m.group(1)), m.group(2), int(m.group(3)), 0, 0, 0, 0)

    def date_time(self) -> float:
        """RFC 3501 §9 date-time: "dd-MMM-yyyy hh:mm:ss +zzzz" as a UTC timestamp."""
        m = re.compile(rb'"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"').match(
            self.data, self.pos)
        if not m:
            raise self.fail('a date-time such as "01-Feb-2024 10:00:00 +0000"')
        self.pos = m.end()
        offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
        if m.group(7) == b"-":
            offset = -offset
        return _timestamp(int(m.group(1).strip()), m.group(2), int(m.group(3)), int(m.group(4)),
                          int(m.group(5)), int(m.group(6)), offset)


def _timestamp(day: int, month: bytes, year: int, hh: int, mm: int, ss: int, offset: int) -> float:
    mon = _MONTHS.get(month.decode("ascii").upper())
    if mon is None or not 1 <= day <= calendar.monthrange(year, mon)[1] or hh > 23 or mm > 59 or ss > 60:
        raise ParseError("not a valid date")
    return float(calendar.timegm((year, mon, day, hh, mm, min(ss, 59), 0, 0, 0)) - offset)


# --- commands --------------------------------------------------------------------------------------

def parse_command(data: bytes) -> Command:
    """One framed command without its final CRLF -> Command; raises ParseError."""
    c = Cursor(data)
    tag = c.tag()
    c.sp()
    verb = c.atom("a command name").upper()
    uid = False
    if verb == "UID":
        c.sp()
        verb = c.atom("a command after UID").upper()
        if verb not in _UID_COMMANDS:
            raise ParseError(f"UID {verb} is not a command")
        uid = True
    parse = _PARSERS.get(verb)
    if parse is None:
        raise ParseError(f"unknown command {verb}")
    args = parse(c)
    c.end()
    if verb == "EXPUNGE" and uid != bool(args):
        raise ParseError("UID EXPUNGE takes a sequence set; EXPUNGE takes no arguments")
    return Command(tag, verb, uid, args)


def _no_args(c: Cursor) -> tuple[Any, ...]:
    return ()


def _one_mailbox(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    return (c.astring("a mailbox name"),)


def _login(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    user = c.astring("a user name")
    c.sp()
    return (user, c.astring("a password"))


def _authenticate(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    mech = c.atom("a SASL mechanism").upper()
    initial: bytes | None = None
    if c.accept(b" "):
        # RFC 4959 SASL-IR: base64 or "=" for an empty response.
        initial = c._run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))
        if not initial:
            raise c.fail("a base64 initial response")
    return (mech, initial)


def _enable(c: Cursor) -> tuple[Any, ...]:
    caps: list[str] = []
    while c.accept(b" "):
        caps.append(c.atom("a capability").upper())
    if not caps:
        raise c.fail("a capability to enable")
    return (tuple(caps),)


def _id(c: Cursor) -> tuple[Any, ...]:
    # RFC 2971: ID ("name" "value" ...) / NIL
    c.sp()
    if c.accept(b"NIL"):
        return (None,)
    c.expect(b"(", "'(' or NIL")
    pairs: list[tuple[bytes, bytes | None]] = []
    if c.accept(b")"):
        return (pairs,)
    while True:
        key = c.string()
        c.sp()
        pairs.append((key, c.nstring()))
        if len(pairs) > 30:
            raise ParseError("too many ID fields")
        if c.accept(b")"):
            return (pairs,)
        c.sp()


def _select(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    name = c.astring("a mailbox name")
    condstore = False
    qresync: QResyncParams | None = None
    if c.accept(b" "):
        c.expect(b"(", "select parameters")
        while not c.accept(b")"):
            param = c.atom("a select parameter").upper()
            if param == "CONDSTORE":          # RFC 7162 §3.1.8
                condstore = True
            elif param == "QRESYNC":          # RFC 7162 §3.2.5
                c.sp()
                qresync = _qresync_params(c)
            else:
                raise ParseError(f"unknown SELECT parameter {param}")
            if c.peek() != 0x29:
                c.sp()
    return (name, condstore, qresync)


def _qresync_params(c: Cursor) -> QResyncParams:
    c.expect(b"(", "'('")
    uidvalidity = c.nz_number()
    c.sp()
    modseq = c.number(MAX_NUMBER64)
    known: SeqSet | None = None
    match: tuple[SeqSet, SeqSet] | None = None
    if c.accept(b" "):
        if c.peek() != 0x28:
            known = c.seq_set()
            c.accept(b" ")
        if c.accept(b"("):
            seqs = c.seq_set()
            c.sp()
            uids = c.seq_set()
            c.expect(b")", "')'")
            match = (seqs, uids)
    c.expect(b")", "')'")
    return QResyncParams(uidvalidity, modseq, known, match)


def _create(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    name = c.astring("a mailbox name")
    use: str | None = None
    if c.accept(b" "):
        # RFC 6154 §3 CREATE-SPECIAL-USE: (USE (\Sent))
        c.expect(b"(", "create parameters")
        c.expect(b"USE", "USE")
        c.sp()
        flags = c.flag_list()
        c.expect(b")", "')'")
        if len(flags) > 1:
            raise ParseError("only one special use per mailbox")
        use = flags[0] if flags else None
    return (name, use)


def _rename(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    old = c.astring("a mailbox name")
    c.sp()
    return (old, c.astring("a mailbox name"))


def _list(c: Cursor) -> tuple[Any, ...]:
    # RFC 5258 §6 list-extended
    c.sp()
    select_opts: list[str] = []
    extended = False
    if c.peek() == 0x28:
        select_opts = c.paren_atoms()
        extended = True
        c.sp()
    ref = c.astring("a reference name")
    c.sp()
    patterns: list[bytes] = []
    if c.accept(b"("):
        extended = True
        while True:
            patterns.append(c.list_mailbox())
            if c.accept(b")"):
                break
            c.sp()
    else:
        patterns.append(c.list_mailbox())
    return_opts: list[str] = []
    status_items: list[str] = []
    if c.accept(b" "):
        extended = True
        c.expect(b"RETURN", "RETURN")
        c.sp()
        c.expect(b"(", "'('")
        while not c.accept(b")"):
            opt = c.atom("a return option").upper()
            return_opts.append(opt)
            if opt == "STATUS":           # RFC 5819
                c.sp()
                status_items = c.paren_atoms()
            if c.peek() != 0x29:
                c.sp()
    # RFC 5258 §3: unknown options are BAD, and RECURSIVEMATCH needs a selection option to recurse with
    unknown = [o for o in select_opts if o not in _LIST_SELECT] + [o for o in return_opts if o not in _LIST_RETURN]
    if unknown:
        raise ParseError(f"unknown LIST option {unknown[0]}")
    if "RECURSIVEMATCH" in select_opts and not set(select_opts) - {"RECURSIVEMATCH", "REMOTE"}:
        raise ParseError("RECURSIVEMATCH needs another selection option (such as SUBSCRIBED)")
    return (ListCommand(ref, tuple(patterns), tuple(select_opts), tuple(return_opts), tuple(status_items),
                        extended),)


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


def _lsub(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    ref = c.astring("a reference name")
    c.sp()
    return (ListCommand(ref, (c.list_mailbox(),)),)


def _status(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    name = c.astring("a mailbox name")
    c.sp()
    items = c.paren_atoms()
    if not items:
        raise ParseError("STATUS needs at least one item")
    return (name, tuple(items))


def _append(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    name = c.astring("a mailbox name")
    c.sp()
    flags: list[str] = []
    date: float | None = None
    if c.peek() == 0x28:
        flags = c.flag_list()
        c.sp()
    if c.peek() == 0x22:
        date = c.date_time()
        c.sp()
    if c.accept(b"UTF8 ("):         # RFC 6855 §4 (UTF8 literal8)
        data = c.literal()
        c.expect(b")", "')'")
    else:
        data = c.literal()
    if b"\x00" in data and not c.last_literal_binary:
        # RFC 3516 §4.2: NUL only travels in literal8
        raise ParseError("NUL in a message sent as a literal (use literal8, ~{n})")
    return (name, tuple(flags), date, data)


def _expunge(c: Cursor) -> tuple[Any, ...]:
    # RFC 4315 §2.1: UID EXPUNGE takes a sequence set; plain EXPUNGE takes nothing.
    if c.accept(b" "):
        return (c.seq_set(),)
    return ()


def _fetch(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    seqs = c.seq_set()
    c.sp()
    atts: list[FetchAtt] = []
    if c.accept(b"("):
        while True:
            atts.append(_fetch_att(c))
            if c.accept(b")"):
                break
            c.sp()
    else:
        start = c.pos
        word = c._run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")).upper().decode()
        if word in FETCH_MACROS and (c.at_end() or c.peek() == 0x20):
            atts = [FetchAtt(n) for n in FETCH_MACROS[word]]
        else:
            c.pos = start
            atts.append(_fetch_att(c))
    changedsince: int | None = None
    vanished = False
    if c.accept(b" "):
        c.expect(b"(", "fetch modifiers")
        while not c.accept(b")"):
            mod = c.atom("a fetch modifier").upper()
            if mod == "CHANGEDSINCE":       # RFC 7162 §3.1.4
                c.sp()
                changedsince = c.number(MAX_NUMBER64)
            elif mod == "VANISHED":         # RFC 7162 §3.2.6
                vanished = True
            else:
                raise ParseError(f"unknown FETCH modifier {mod}")
            if c.peek() != 0x29:
                c.sp()
    return (seqs, tuple(atts), changedsince, vanished)


_FETCH_NAME = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


def _fetch_att(c: Cursor) -> FetchAtt:
    name = c._run(_FETCH_NAME).decode("ascii").upper()
    if not name:
        raise c.fail("a fetch attribute")
    if c.peek() == 0x5B:  # "["
        if name not in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"):
            raise ParseError(f"{name} takes no section")
        section = _section(c, binary=name.startswith("BINARY"))
        partial = None
        if c.accept(b"<"):
            if name == "BINARY.SIZE":
                raise ParseError("BINARY.SIZE takes no partial")
            offset = c.number()
            c.expect(b".", "'.'")
            length = c.nz_number()
            c.expect(b">", "'>'")
            partial = (offset, length)
        return FetchAtt(name, section, partial)
    if name in ("BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        raise ParseError(f"{name} needs a section")
    if name not in SIMPLE_FETCH_ATTS:
        raise ParseError(f"unknown fetch attribute {name}")
    return FetchAtt(name)


def _section(c: Cursor, binary: bool) -> Section:
    c.expect(b"[", "'['")
    parts: list[int] = []
    while c.peek() in _DIGITS:
        parts.append(c.nz_number())
        if not c.accept(b"."):
            break
    text: str | None = None
    fields: list[str] = []
    if c.peek() != 0x5D:
        if binary:
            raise ParseError("BINARY sections are part numbers only")
        if parts and c.data[c.pos - 1] != 0x2E:
            raise c.fail("'.' or ']'")
        word = c._run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")).decode().upper()
        if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME") or (
                word == "MIME" and not parts):
            raise ParseError(f"unknown section text {word!r}")
        text = word
        if word.startswith("HEADER.FIELDS"):
            c.sp()
            c.expect(b"(", "a header list")
            while True:
                raw = c.astring("a header field name")
                if not raw or any(ch <= 0x20 or ch >= 0x7F or ch == 0x3A for ch in raw):
                    raise ParseError("bad header field name")
                fields.append(raw.decode("ascii"))
                if c.accept(b")"):
                    break
                c.sp()
    elif parts and c.data[c.pos - 1] == 0x2E:
        raise c.fail("a section after '.'")
    c.expect(b"]", "']'")
    return Section(tuple(parts), text, tuple(fields))


def _store(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    seqs = c.seq_set()
    c.sp()
    unchanged: int | None = None
    if c.accept(b"("):
        c.expect(b"UNCHANGEDSINCE", "UNCHANGEDSINCE")     # RFC 7162 §3.1.3
        c.sp()
        unchanged = c.number(MAX_NUMBER64)
        c.expect(b")", "')'")
        c.sp()
    mode = "set"
    if c.accept(b"+"):
        mode = "add"
    elif c.accept(b"-"):
        mode = "remove"
    c.expect(b"FLAGS", "FLAGS")
    silent = c.accept(b".SILENT")
    c.sp()
    if c.peek() == 0x28:
        flags = c.flag_list()
    else:
        flags = [c.flag()]
        while c.accept(b" "):
            flags.append(c.flag())
    if "\\*" in flags:
        raise ParseError("\\* is not a flag")
    return (seqs, StoreAction(mode, silent, tuple(flags), unchanged))


def _copy(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    seqs = c.seq_set()
    c.sp()
    return (seqs, c.astring("a mailbox name"))


def _search(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    returns: tuple[str, ...] | None = None
    if c.accept(b"RETURN "):            # RFC 4731 §3
        opts = c.paren_atoms()
        for opt in opts:
            if opt not in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
                raise ParseError(f"unknown SEARCH RETURN option {opt}")
        returns = tuple(opts) if opts else ("ALL",)
        c.sp()
    charset: str | None = None
    if c.accept(b"CHARSET "):
        charset = c.astring("a charset").decode("ascii", "replace").upper()
        c.sp()
        if not _known_charset(charset):
            # RFC 3501 §6.4.4: unsupported charset -> NO [BADCHARSET (...)]
            raise ParseError(f"charset {charset} is not supported", code="BADCHARSET (UTF-8 US-ASCII)",
                             bad=False)
    keys = [_search_key(c, charset, 0)]
    while c.accept(b" "):
        keys.append(_search_key(c, charset, 0))
    key = keys[0] if len(keys) == 1 else SearchKey("AND", children=keys)
    return (SearchProgram(key, charset, returns),)


_FLAG_KEYS = {
    "ANSWERED": ("FLAG", "\\Answered"), "DELETED": ("FLAG", "\\Deleted"), "DRAFT": ("FLAG", "\\Draft"),
    "FLAGGED": ("FLAG", "\\Flagged"), "SEEN": ("FLAG", "\\Seen"), "RECENT": ("FLAG", "\\Recent"),
    "UNANSWERED": ("NOTFLAG", "\\Answered"), "UNDELETED": ("NOTFLAG", "\\Deleted"),
    "UNDRAFT": ("NOTFLAG", "\\Draft"), "UNFLAGGED": ("NOTFLAG", "\\Flagged"), "UNSEEN": ("NOTFLAG", "\\Seen"),
    "OLD": ("NOTFLAG", "\\Recent"),
}
_STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})


def _known_charset(name: str) -> bool:
    """Any text charset Python can decode (clients still send ISO-8859-1 or windows-1252 searches);
    UTF-8 and US-ASCII are what BADCHARSET advertises (RFC 3501 §6.4.4 requires only those)."""
    try:
        b"x".decode(name, "replace")    # LookupError for unknown names and for codecs not bytes-to-text
    except (LookupError, UnicodeError):
        return False
    return True


def _search_string(c: Cursor, charset: str | None) -> str:
    raw = c.astring("a search string")
    try:
        return raw.decode(charset or "utf-8")
    except (UnicodeError, LookupError):
        raise ParseError("search string is not valid in its charset", code="BADCHARSET (UTF-8 US-ASCII)",
                         bad=False) from None


def _search_key(c: Cursor, charset: str | None, depth: int) -> SearchKey:
    if depth > MAX_SEARCH_DEPTH:
        raise ParseError("search program nested too deeply")
    if c.accept(b"("):
        keys = [_search_key(c, charset, depth + 1)]
        while c.accept(b" "):
            keys.append(_search_key(c, charset, depth + 1))
        c.expect(b")", "')'")
        return keys[0] if len(keys) == 1 else SearchKey("AND", children=keys)
    p = c.peek()
    if p is not None and (p in _DIGITS or p in (0x2A, 0x24)):
        return SearchKey("SEQ", (c.seq_set(),))
    word = c.atom("a search key").upper()
    if word == "ALL":
        return SearchKey("ALL")
    if word in _FLAG_KEYS:
        op, flag = _FLAG_KEYS[word]
        return SearchKey(op, (flag,))
    if word == "NEW":
        return SearchKey("AND", children=[SearchKey("FLAG", ("\\Recent",)), SearchKey("NOTFLAG", ("\\Seen",))])
    if word in ("KEYWORD", "UNKEYWORD"):
        c.sp()
        return SearchKey("FLAG" if word == "KEYWORD" else "NOTFLAG", (c.flag(),))
    if word in _STRING_KEYS:
        c.sp()
        return SearchKey(word, (_search_string(c, charset),))
    if word == "HEADER":
        c.sp()
        name = c.astring("a header field name").decode("ascii", "replace")
        c.sp()
        return SearchKey("HEADER", (name, _search_string(c, charset)))
    if word in _DATE_KEYS:
        c.sp()
        return SearchKey(word, (c.date(),))
    if word in ("LARGER", "SMALLER"):
        c.sp()
        return SearchKey(word, (c.number(MAX_NUMBER64),))
    if word in ("OLDER", "YOUNGER"):       # RFC 5032 WITHIN
        c.sp()
        return SearchKey(word, (c.nz_number(),))
    if word == "UID":
        c.sp()
        return SearchKey("UID", (c.seq_set(),))
    if word == "NOT":
        c.sp()
        return SearchKey("NOT", children=[_search_key(c, charset, depth + 1)])
    if word == "OR":
        c.sp()
        a = _search_key(c, charset, depth + 1)
        c.sp()
        return SearchKey("OR", children=[a, _search_key(c, charset, depth + 1)])
    if word == "MODSEQ":                   # RFC 7162 §3.1.5
        c.sp()
        if c.peek() == 0x22:
            c.quoted()                     # entry name: per-flag modseqs are not kept; treat as "all"
            c.sp()
            c.atom("an entry type")
            c.sp()
        return SearchKey("MODSEQ", (c.number(MAX_NUMBER64),))
    raise ParseError(f"unknown search key {word}")


def _getquota(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    return (c.astring("a quota root"),)


def _setquota(c: Cursor) -> tuple[Any, ...]:
    c.sp()
    root = c.astring("a quota root")
    c.sp()
    c.expect(b"(", "'('")
    limits: list[tuple[str, int]] = []
    while not c.accept(b")"):
        name = c.atom("a resource name").upper()
        c.sp()
        limits.append((name, c.number(MAX_NUMBER64)))
        if c.peek() != 0x29:
            c.sp()
    return (root, tuple(limits))


_PARSERS: dict[str, Any] = {
    "CAPABILITY": _no_args, "NOOP": _no_args, "LOGOUT": _no_args, "STARTTLS": _no_args,
    "CHECK": _no_args, "CLOSE": _no_args, "UNSELECT": _no_args, "IDLE": _no_args, "NAMESPACE": _no_args,
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ENABLE": _enable, "ID": _id,
    "SELECT": _select, "EXAMINE": _select, "CREATE": _create, "DELETE": _one_mailbox, "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox, "UNSUBSCRIBE": _one_mailbox, "LIST": _list, "LSUB": _lsub,
    "STATUS": _status, "APPEND": _append, "EXPUNGE": _expunge, "SEARCH": _search, "FETCH": _fetch,
    "STORE": _store, "COPY": _copy, "MOVE": _copy,
    "GETQUOTA": _getquota, "GETQUOTAROOT": _getquota, "SETQUOTA": _setquota,
}
_UID_COMMANDS = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE"})
