"""One IMAP connection's state machine (RFC 3501 §3, RFC 9051 §3): one `cmd_<VERB>` method per verb.

Parsing is in parser.py, wire formatting in response.py, MIME in mime.py, SEARCH in search.py; this module
owns the session state (who is logged in, which mailbox is selected, the message sequence numbers this
client has been told about) and turns commands into store calls, run off the loop in worker threads.

Concurrency (RFC 3501 §5.2, §7.4.1): the selected mailbox is a snapshot (`View`) that is brought up to date
from the store's MODSEQ change log when an event says something changed, at NOOP/CHECK and while IDLE.
EXPUNGE (or VANISHED) responses are held back during FETCH, STORE and SEARCH (non-UID forms) so sequence
numbers never shift under a client that cannot expect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from engine.auth import sasl
from engine.imap import mime, mutf7, search, storeaccess
from engine.imap import response as R
from engine.imap.connection import Connection, ConnectionClosed, LineTooLong
from engine.imap.parser import (
    Command,
    FetchAtt,
    ListCommand,
    ParseError,
    QResyncParams,
    SearchKey,
    SearchProgram,
    SeqSet,
    StoreAction,
    literal_at_end,
    parse_command,
    peek_tag,
    seqset_from_values,
)
from engine.imap.recent import LEDGER
from engine.interfaces import (
    SEEN,
    SYSTEM_FLAGS,
    Account,
    FlagMode,
    FolderExists,
    FolderInfo,
    Mailbox,
    MessageMeta,
    NoSuchFolder,
    QuotaExceeded,
    StoreError,
)
from engine.services import Services

if TYPE_CHECKING:
    from engine.imap.server import IMAPListener

log = logging.getLogger(__name__)

T = TypeVar("T")

SEPARATOR = "/"
SERVER_NAME = "Postroom"
LOGIN_TIMEOUT = 60.0            # seconds to log in before we hang up (RFC 3501 §5.4 covers only idling)
TLS_HANDSHAKE_TIMEOUT = 30.0
IDLE_POLL = 5.0                 # while IDLE, look for changes made behind the store's back this often
REFRESH_AFTER = 1.0             # seconds after which any command re-checks the selected mailbox
FETCH_BATCH_META = 2000         # messages per worker-thread batch when FETCH needs no message bytes
FETCH_BATCH_DATA = 100          # ... and when it reads files
FETCH_BATCH_BYTES = 8 * 1024 * 1024   # ... and never more message octets than this in memory at once
FLUSH_AT = 64 * 1024            # queued response octets that are written before the command completes
INLINE_FETCH_COUNT = 4          # FETCHes this small run on the loop (see cmd_FETCH)
INLINE_FETCH_BYTES = 256 * 1024
MAX_NAME_LEVELS = 64

_CAPS_AUTHED = (
    "IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ENABLE", "ID", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE",
    "UNSELECT", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH",
    "SEARCHRES", "CONDSTORE", "QRESYNC", "BINARY", "UTF8=ACCEPT", "QUOTA", "QUOTA=RES-STORAGE",
    "STATUS=SIZE", "WITHIN",
)
_STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE",
                           "DELETED", "APPENDLIMIT"})
_SPECIAL_USES = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})
_SETS_SEEN = frozenset({"BODY", "BINARY", "RFC822", "RFC822.TEXT"})
_CACHED_ATTS = {"ENVELOPE": "imap.envelope.3", "BODYSTRUCTURE": "imap.bodystructure.1", "BODY": "imap.body.1"}
_DATA_ATTS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY.PEEK", "BINARY", "BINARY.PEEK",
                        "BINARY.SIZE"})


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True)
class Done:
    """A tagged completion (RFC 3501 §7.1): OK, NO or BAD, an optional response code, and text."""

    status: str
    text: str
    code: str | None = None


class BadName(Exception):
    """A mailbox name we refuse (traversal, control characters, bad encoding): tagged NO."""


class BadSequence(Exception):
    """A message sequence number that does not exist: tagged BAD (RFC 9051 §6.4.5)."""


class Refused(Exception):
    """A command refused while it was still being read (over-size literal): its tagged reply."""

    def __init__(self, tag: str, done: Done) -> None:
        super().__init__(done.text)
        self.tag = tag
        self.done = done


class Hangup(Exception):
    """The session must end now after saying `reason` in a BYE."""


# --- mailbox names --------------------------------------------------------------------------------

def canonical_name(name: str) -> str:
    """INBOX is case-insensitive as a first level (RFC 3501 §5.1); everything else is kept as given."""
    head, sep, rest = name.partition(SEPARATOR)
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


def check_name(name: str) -> str:
    """Refuses names that could leave the account or confuse Maildir++; returns the canonical name."""
    if not name:
        raise BadName("Mailbox name is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise BadName("Mailbox name contains control characters")
    if name.startswith(SEPARATOR) or "\\" in name:
        raise BadName("Mailbox names are relative to your account")
    if "*" in name or "%" in name:
        raise BadName("Mailbox names cannot contain the LIST wildcards * and %")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_NAME_LEVELS:
        raise BadName("Mailbox name has too many levels")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadName("Mailbox name has an empty, '.' or '..' level")
    return canonical_name(name)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """LIST wildcards (RFC 3501 §6.3.8): "*" matches anything, "%" anything but the separator."""
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def parents_of(name: str) -> list[str]:
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def is_loopback(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


# --- the selected mailbox ---------------------------------------------------------------------------

@dataclass
class View:
    """What this session has told its client about the selected mailbox."""

    name: str
    readonly: bool
    uidvalidity: int
    uidnext: int
    modseq: int                         # changes up to here are reflected
    uids: list[int]                     # index + 1 = message sequence number
    meta: dict[int, MessageMeta]
    recent: set[int] = field(default_factory=set)
    pending_expunged: set[int] = field(default_factory=set)    # gone from the store, not yet announced
    keywords: set[str] = field(default_factory=set)

    def seq_of(self, uid: int) -> int:
        from bisect import bisect_left
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0


def _applied(mode: str, flags: Iterable[str], old: Iterable[str]) -> set[str]:
    """What STORE `mode` `flags` makes of `old` when nobody else touched the message."""
    if mode == "set":
        return set(flags)
    if mode == "add":
        return set(old) | set(flags)
    return set(old) - set(flags)


def _folded(flags: Iterable[str]) -> set[str]:
    return {f.casefold() for f in flags}


def _keywords(metas: Iterable[MessageMeta]) -> set[str]:
    seen_sets: set[frozenset[str]] = set()
    for m in metas:
        seen_sets.add(m.flags)
    out: set[str] = set()
    for s in seen_sets:
        out.update(f for f in s if not f.startswith("\\"))
    return out


_FLAG_BYTES: dict[tuple[frozenset[str], bool], bytes] = {}
_SYSTEM_ORDER = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


def flag_bytes(flags: frozenset[str], recent: bool) -> bytes:
    key = (flags, recent)
    out = _FLAG_BYTES.get(key)
    if out is None:
        ordered = [f for f in _SYSTEM_ORDER if f in flags] + sorted(f for f in flags if f not in SYSTEM_FLAGS)
        if recent:
            ordered.append("\\Recent")
        out = R.flags(ordered)
        if len(_FLAG_BYTES) < 10000:
            _FLAG_BYTES[key] = out
    return out


@dataclass(frozen=True)
class Snapshot:
    """A folder's messages as last loaded by any session; the next SELECT only applies what changed
    since (RFC 7162 change log), so a 100,000-message mailbox selects without re-reading its index."""

    name: str
    uidvalidity: int
    modseq: int
    uids: tuple[int, ...]
    meta: dict[int, MessageMeta]        # never mutated once built


def load_view(mb: Mailbox, name: str, snap: Snapshot | None, claim: bool) -> tuple[Any, Snapshot, set[int]]:
    """Blocking: the folder's status, an up-to-date Snapshot, and the UIDs this session gets as \\Recent."""
    status = mb.status(name)
    if snap is not None and snap.uidvalidity == status.uidvalidity and snap.name == status.name:
        ch = mb.changes_since(name, snap.modseq)
        if ch.changed or ch.expunged:
            meta = dict(snap.meta)
            for uid in ch.expunged:
                meta.pop(uid, None)
            for m in ch.changed:
                meta[m.uid] = m
            snapshot = Snapshot(status.name, status.uidvalidity, ch.highestmodseq, tuple(sorted(meta)), meta)
        else:
            snapshot = Snapshot(status.name, status.uidvalidity, ch.highestmodseq, snap.uids, snap.meta)
    else:
        metas = mb.messages(name)
        snapshot = Snapshot(status.name, status.uidvalidity, status.highestmodseq,
                            tuple(m.uid for m in metas), {m.uid: m for m in metas})
    known = snapshot.uids[-1] if snapshot.uids else 0
    return status, snapshot, take_recent(mb, snapshot.name, snapshot.uidvalidity, known, claim)


def take_recent(mb: Mailbox, name: str, uidvalidity: int, known: int, claim: bool) -> set[int]:
    """Blocking: the messages up to UID `known` that are \\Recent for this session: what the store still
    has in new/ and copies no session has seen yet (recent.py).  `claim` (a read-write session) takes them
    from every other session; a read-only one only looks (RFC 3501 §2.3.2, §6.3.2).  Mail beyond `known`
    arrived after the caller looked: it stays for whoever announces it."""
    key = (id(mb), name, uidvalidity)
    if claim:
        return mb.claim_recent(name, known) | LEDGER.claim(key, known)
    return {u for u in mb.recent_uids(name) if u <= known} | LEDGER.peek(key, known)


# --- FETCH work done in a worker thread ----------------------------------------------------------------

@dataclass(frozen=True)
class FetchPlan:
    atts: tuple[FetchAtt, ...]
    want_uid: bool
    want_modseq: bool
    flags_changed: frozenset[int]
    condstore: bool                     # RFC 7162 §3.1: implicit \Seen changes come with UID and MODSEQ
    recent: frozenset[int]
    account: str
    folder: str
    uidvalidity: int


@dataclass
class FetchResult:
    data: bytes
    missing: list[int] = field(default_factory=list)
    unknown_cte: bool = False


def _section_label(att: FetchAtt) -> bytes:
    base = "BODY" if att.name.startswith("BODY") else "BINARY"
    assert att.section is not None
    label = f"{base}[{att.section.spec()}]"
    if att.partial is not None:
        label += f"<{att.partial[0]}>"
    return label.encode("ascii", "replace")


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    offset, length = partial
    return data[offset:offset + length]


def _body_literal(data: bytes) -> bytes:
    return R.literal(data)


def header_cache_key(att: FetchAtt) -> str | None:
    """BODY[HEADER.FIELDS (...)] of the whole message is cached in memory per field list (what clients
    fetch for their message lists over and over)."""
    sec = att.section
    if att.name in ("BODY", "BODY.PEEK") and sec is not None and not sec.part and sec.text is not None \
            and sec.text.startswith("HEADER.FIELDS"):
        fields = " ".join(sorted({f.upper() for f in sec.fields}))
        return ("imap.hdr-not:" if sec.text.endswith(".NOT") else "imap.hdr:") + fields
    return None


def fetch_batch(mb: Mailbox, plan: FetchPlan, batch: Sequence[tuple[int, MessageMeta]]) -> FetchResult:
    """The FETCH responses for a batch of messages; blocking (files, index), run in a worker thread."""
    names = {a.name for a in plan.atts}
    kinds = [k for a, k in _CACHED_ATTS.items() if a in names]
    header_keys = {i: k for i, a in enumerate(plan.atts) if (k := header_cache_key(a)) is not None}
    needs_data = any((a.name in _DATA_ATTS or (a.name == "BODY" and a.section is not None))
                     and i not in header_keys for i, a in enumerate(plan.atts))
    uids = [m.uid for _, m in batch]
    cached: dict[str, dict[int, bytes]] = {}
    misses: set[int] = set()
    for kind in kinds:
        found: dict[int, bytes] = {}
        want: list[int] = []
        for uid in uids:
            hit = storeaccess.MEMORY.get((plan.account, plan.folder, plan.uidvalidity, uid, kind))
            if hit is None:
                want.append(uid)
            else:
                found[uid] = hit
        if want:
            for uid, text in storeaccess.get_cached_many(mb, plan.folder, want, kind).items():
                value = text.encode("latin-1", "replace")
                found[uid] = value
                storeaccess.MEMORY.put((plan.account, plan.folder, plan.uidvalidity, uid, kind), value)
            misses.update(u for u in want if u not in found)
        cached[kind] = found
    headers: dict[tuple[int, str], bytes] = {}
    for key in set(header_keys.values()):
        for uid in uids:
            hit = storeaccess.MEMORY.get((plan.account, plan.folder, plan.uidvalidity, uid, key))
            if hit is None:
                misses.add(uid)
            else:
                headers[(uid, key)] = hit
    bodies: dict[int, bytes | None] = {}
    to_read = uids if needs_data else [u for u in uids if u in misses]
    if to_read:
        bodies = dict(storeaccess.read_many(mb, plan.folder, to_read))
    new_cache: dict[str, list[tuple[int, str]]] = {k: [] for k in kinds}
    out: list[bytes] = []
    result = FetchResult(b"")
    for seq, meta in batch:
        uid = meta.uid
        data = bodies.get(uid)
        if (needs_data or uid in misses) and data is None:
            result.missing.append(uid)
            continue
        root: mime.Part | None = None
        items: list[bytes] = []
        reported = plan.condstore and uid in plan.flags_changed
        if (plan.want_uid or reported) and "UID" not in names:
            items.append(b"UID %d" % uid)
        for i, att in enumerate(plan.atts):
            name = att.name
            hkey = header_keys.get(i)
            if hkey is not None:
                content = headers.get((uid, hkey)) if data is None else None
                if content is None:
                    assert data is not None and att.section is not None
                    content = mime.section(data, (), att.section.text, att.section.fields)
                    headers[(uid, hkey)] = content
                    storeaccess.MEMORY.put((plan.account, plan.folder, plan.uidvalidity, uid, hkey), content)
                items.append(_section_label(att) + b" " + _body_literal(_partial(content, att.partial)))
            elif name == "UID":
                items.append(b"UID %d" % uid)
            elif name == "FLAGS":
                items.append(b"FLAGS " + flag_bytes(meta.flags, uid in plan.recent))
            elif name == "INTERNALDATE":
                items.append(b"INTERNALDATE " + R.internaldate(meta.internaldate))
            elif name == "RFC822.SIZE":
                items.append(b"RFC822.SIZE %d" % meta.size)
            elif name == "MODSEQ":
                items.append(b"MODSEQ (%d)" % meta.modseq)
            elif name in ("SAVEDATE",):
                items.append(b"SAVEDATE NIL")
            elif name in ("EMAILID", "THREADID"):
                items.append(name.encode() + b" NIL")
            elif name in _CACHED_ATTS and att.section is None:
                kind = _CACHED_ATTS[name]
                hit = cached[kind].get(uid)
                if hit is None:
                    assert data is not None
                    if name == "ENVELOPE":
                        hit = mime.message_envelope(data)
                    else:
                        root = root or mime.parse_structure(data)
                        hit = mime.bodystructure(data, root, extended=name == "BODYSTRUCTURE")
                    cached[kind][uid] = hit
                    storeaccess.MEMORY.put((plan.account, plan.folder, plan.uidvalidity, uid, kind), hit)
                    new_cache[kind].append((uid, hit.decode("latin-1")))
                items.append(name.encode() + b" " + hit)
            else:
                assert data is not None
                if name == "RFC822":
                    items.append(b"RFC822 " + R.literal(data))
                elif name == "RFC822.HEADER":
                    items.append(b"RFC822.HEADER " + R.literal(mime.section(data, (), "HEADER")))
                elif name == "RFC822.TEXT":
                    items.append(b"RFC822.TEXT " + _body_literal(mime.section(data, (), "TEXT")))
                elif name in ("BODY", "BODY.PEEK"):
                    sec = att.section
                    assert sec is not None
                    if sec.part:
                        root = root or mime.parse_structure(data)
                    content = mime.section(data, sec.part, sec.text, sec.fields, root)
                    items.append(_section_label(att) + b" " + _body_literal(_partial(content, att.partial)))
                elif name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
                    sec = att.section
                    assert sec is not None
                    root = root or mime.parse_structure(data)
                    try:
                        content = mime.binary_section(data, sec.part, root)
                    except mime.UnknownEncoding:
                        result.unknown_cte = True
                        continue
                    if name == "BINARY.SIZE":
                        items.append(f"BINARY.SIZE[{sec.spec()}] {len(content)}".encode())
                    else:
                        piece = _partial(content, att.partial)
                        # literal8 for anything but 7-bit text (RFC 3516 §4.2; what Dovecot sends)
                        value = R.literal(piece, binary=not piece.isascii() or b"\x00" in piece)
                        items.append(_section_label(att) + b" " + value)
        if uid in plan.flags_changed and "FLAGS" not in names:
            items.append(b"FLAGS " + flag_bytes(meta.flags, uid in plan.recent))
        if (plan.want_modseq or reported) and "MODSEQ" not in names:
            items.append(b"MODSEQ (%d)" % meta.modseq)
        out.append(b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n")
    for kind, values in new_cache.items():
        if values:
            storeaccess.set_cached_many(mb, plan.folder, kind, values)
    result.data = b"".join(out)
    return result


# --- the session ---------------------------------------------------------------------------------------

_ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
_NOT_AUTH = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})
_AUTH = frozenset({"ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
                   "LIST", "LSUB", "STATUS", "APPEND", "NAMESPACE", "IDLE", "GETQUOTA", "GETQUOTAROOT",
                   "SETQUOTA"})
_SELECTED = frozenset({"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE"})
# RFC 3501 §7.4.1: no EXPUNGE while these run (their UID forms are fine).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


class IMAPSession:
    """One client from greeting to BYE."""

    def __init__(self, conn: Connection, services: Services, listener: IMAPListener, *,
                 idle_timeout: float | None = None, login_timeout: float = LOGIN_TIMEOUT,
                 loopback_is_secure: bool = True) -> None:
        self.conn = conn
        self.services = services
        self.listener = listener
        limits = services.config.limits
        self.line_limit = limits.imap_line
        self.message_limit = limits.message_size
        self.idle_timeout = limits.idle_timeout if idle_timeout is None else idle_timeout
        self.login_timeout = login_timeout
        self.loopback_is_secure = loopback_is_secure
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self._mailbox: Mailbox | None = None
        self.view: View | None = None
        self.peer_ip = conn.peer[0]
        # ENABLEd extensions (RFC 5161)
        self.condstore = False
        self.qresync = False
        self.utf8 = False
        self.rev2 = False
        self.saved_uids: list[int] = []          # SEARCHRES "$" (RFC 5182)
        self.wake = asyncio.Event()               # set from the event bus: something changed
        self.dirty = False
        self.last_refresh = 0.0
        self._out: list[bytes] = []
        self._out_size = 0
        self._user_slot: tuple[str, str] | None = None
        self.waiting_for_command = False
        self.idling = False
        self.tag: str = "*"

    # --- plumbing ------------------------------------------------------------------------------------

    @property
    def mailbox(self) -> Mailbox:
        assert self._mailbox is not None
        return self._mailbox

    @property
    def secure(self) -> bool:
        return self.conn.is_tls or (self.loopback_is_secure and is_loopback(self.peer_ip))

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def untagged(self, text: str | bytes) -> None:
        self.send(b"* " + (text.encode("utf-8") if isinstance(text, str) else text) + b"\r\n")

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.conn.write(data)
        await self.conn.drain()

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def notify_changed(self, folder: str | None) -> None:
        """Called on the loop by the listener when the store reports a change in this account."""
        if self.view is None or folder is None or folder == self.view.name:
            self.dirty = True
            self.wake.set()

    def release(self) -> None:
        if self._user_slot is not None:
            self.listener.release_user(*self._user_slot)
            self._user_slot = None

    def capabilities(self) -> list[str]:
        caps = list(_CAPS_AUTHED)
        caps.append(f"APPENDLIMIT={self.message_limit}")
        if self.state is State.NOT_AUTHENTICATED:
            if not self.conn.is_tls and self.services.tls is not None:
                caps.append("STARTTLS")
            if self.secure:
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        return caps

    # --- main loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.untagged(f"OK [CAPABILITY {' '.join(self.capabilities())}] {SERVER_NAME} ready")
        try:
            await self.flush()
            while self.state is not State.LOGOUT:
                try:
                    raw = await self._read_command()
                except Refused as r:
                    self._tagged(r.tag, r.done)
                    await self.flush()
                    continue
                except LineTooLong as exc:
                    tag = peek_tag(exc.head) or "*"
                    self._tagged(tag, Done("BAD", f"Command line longer than {self.line_limit} octets"))
                    await self.flush()
                    continue
                except TimeoutError:
                    self.untagged("BYE Autologout; idle for too long")
                    await self.flush()
                    return
                await self._execute(raw)
                await self.flush()
        except Hangup as h:
            self.untagged(f"BYE {h}")
            with contextlib.suppress(ConnectionClosed):
                await self.flush()
        except TimeoutError:            # the client went quiet in the middle of a command (SASL, literal)
            self.untagged("BYE Autologout; idle for too long")
            with contextlib.suppress(ConnectionClosed):
                await self.flush()
        except ConnectionClosed:
            pass
        finally:
            self.conn.close()

    def _timeout(self) -> float:
        return self.idle_timeout if self.state is not State.NOT_AUTHENTICATED else self.login_timeout

    async def _readline(self, limit: int | None = None) -> bytes:
        return await asyncio.wait_for(self.conn.readline(limit or self.line_limit), self._timeout())

    async def _read_command(self) -> bytes:
        """A whole command: its lines and the literals they announce (RFC 3501 §4.3, RFC 7888)."""
        self.waiting_for_command = True
        try:
            line = await self._readline()
        finally:
            self.waiting_for_command = False
        parts = [line]
        total = len(line)
        words = line.split(b" ", 3)
        verb = words[1].upper() if len(words) > 1 else b""
        literal_limit = self.message_limit if verb == b"APPEND" else self.line_limit
        while (lit := literal_at_end(line)) is not None:
            tag = peek_tag(parts[0]) or "*"
            total += lit.size
            if lit.size > literal_limit or total > self.message_limit + self.line_limit:
                if lit.nonsync:
                    # RFC 7888 §4: the octets are already on their way; we will not read them as commands.
                    raise Hangup("[TOOBIG] Literal larger than this server accepts")
                raise Refused(tag, Done("NO", f"Literal of {lit.size} octets is larger than allowed "
                                              f"({literal_limit})", "TOOBIG"))
            if not lit.nonsync:
                self.send(b"+ Ready for literal data\r\n")
                await self.flush()
            data = await asyncio.wait_for(self.conn.read_exact(lit.size), self._timeout())
            line = await self._readline()
            parts += [b"\r\n", data, line]
        return b"".join(parts)

    def _tagged(self, tag: str, done: Done) -> None:
        code = f"[{done.code}] " if done.code else ""
        self.send(f"{tag} {done.status} {code}".encode() + R.resp_text(done.text) + b"\r\n")

    async def _execute(self, raw: bytes) -> None:
        try:
            cmd = parse_command(raw)
        except ParseError as exc:
            tag = peek_tag(raw) or "*"
            if exc.bad:
                self._tagged(tag, Done("BAD", str(exc)))
            else:
                self._tagged(tag, Done("NO", str(exc), exc.code))
            return
        self.tag = cmd.tag
        done = self._check_state(cmd)
        if done is None:
            handler: Callable[[Command], Awaitable[Done]] = getattr(self, f"cmd_{cmd.name}")
            try:
                done = await handler(cmd)
            except BadName as exc:
                done = Done("NO", str(exc), "CANNOT")
            except BadSequence as exc:
                done = Done("BAD", str(exc))
            except NoSuchFolder as exc:
                done = Done("NO", str(exc), "NONEXISTENT")
            except FolderExists as exc:
                done = Done("NO", str(exc), "ALREADYEXISTS")
            except QuotaExceeded as exc:
                done = Done("NO", str(exc), "OVERQUOTA")
            except StoreError as exc:
                done = Done("NO", str(exc))
            except _AlreadyAnswered:
                return
            except (ConnectionClosed, Hangup):
                raise
            except (TimeoutError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("IMAP %s failed for %s", cmd.name, self.account.address if self.account else "-")
                done = Done("NO", "Internal error; try again later", "SERVERBUG")
        if self.view is not None and self.state is State.SELECTED and cmd.name not in ("LOGOUT",):
            allow = not (cmd.name in _NO_EXPUNGE and not cmd.uid)
            await self.refresh(allow_expunge=allow, force=cmd.name in ("NOOP", "CHECK"))
        self._tagged(cmd.tag, done)

    def _check_state(self, cmd: Command) -> Done | None:
        name = cmd.name
        if name in _ANY_STATE:
            return None
        if name in _NOT_AUTH:
            if self.state is State.NOT_AUTHENTICATED:
                return None
            return Done("BAD", "Already authenticated")
        if self.state is State.NOT_AUTHENTICATED:
            return Done("BAD", "Log in first")
        if name in _AUTH:
            return None
        if self.state is not State.SELECTED:
            return Done("BAD", "No mailbox selected")
        return None

    # --- names ---------------------------------------------------------------------------------------

    def decode_name(self, raw: bytes, *, pattern: bool = False) -> str:
        """A mailbox name (or LIST pattern) off the wire as Unicode (modified UTF-7, or UTF-8 once enabled)."""
        try:
            if self.utf8 or not raw.isascii():
                text = raw.decode("utf-8")
                if self.utf8 and raw.isascii() and "&" in text:
                    with contextlib.suppress(mutf7.MUTF7Error):
                        text = mutf7.decode(text)   # clients that still speak modified UTF-7
            else:
                text = mutf7.decode(raw.decode("ascii"))
        except (UnicodeDecodeError, mutf7.MUTF7Error) as exc:
            raise BadName(f"Mailbox name is not valid modified UTF-7 or UTF-8: {exc}") from None
        if "\x00" in text:
            raise BadName("Mailbox name contains NUL")
        return text if pattern else check_name(text)

    def encode_name(self, name: str) -> bytes:
        return R.mailbox(name, utf8=self.utf8)

    # --- selected-mailbox upkeep ---------------------------------------------------------------------------

    async def refresh(self, *, allow_expunge: bool, force: bool = False) -> None:
        """Bring the View up to date and queue the untagged responses that tell the client (RFC 3501 §7.3,
        §7.4.1, RFC 7162 §3.2.10)."""
        v = self.view
        if v is None:
            return
        now = time.monotonic()
        if not (force or self.dirty or now - self.last_refresh > REFRESH_AFTER or
                (allow_expunge and v.pending_expunged)):
            return
        self.dirty = False
        self.last_refresh = now
        try:
            ch = await self._store(self.mailbox.changes_since, v.name, v.modseq)
        except NoSuchFolder:
            raise Hangup("Selected mailbox was deleted") from None
        if self.view is not v:
            return
        last_uid = v.uids[-1] if v.uids else 0
        for uid in ch.expunged:
            if uid in v.meta:
                v.pending_expunged.add(uid)
        updates: list[MessageMeta] = []
        new: list[MessageMeta] = []
        for m in ch.changed:
            if m.uid in v.pending_expunged:
                continue
            old = v.meta.get(m.uid)
            if old is None:
                if m.uid > last_uid:
                    new.append(m)
                continue
            v.meta[m.uid] = m
            if old.flags != m.flags:
                updates.append(m)
        v.modseq = max(v.modseq, ch.highestmodseq)
        if allow_expunge and v.pending_expunged:
            self._announce_expunged(sorted(v.pending_expunged))
        self._announce_keywords(v, [*updates, *new])
        for m in updates:
            self._send_flag_update(v, m)
        if new:
            for m in new:
                v.uids.append(m.uid)
                v.meta[m.uid] = m
            v.uidnext = max(v.uidnext, v.uids[-1] + 1)
            claimed = await self._store(take_recent, self.mailbox, v.name, v.uidvalidity, v.uids[-1],
                                        not v.readonly)
            if not self.rev2:       # RFC 9051 has no \Recent
                v.recent |= {u for u in claimed if u in v.meta}
            self.untagged(f"{len(v.uids)} EXISTS")
            if not self.rev2:
                self.untagged(f"{len(v.recent)} RECENT")

    def _announce_expunged(self, uids: Sequence[int]) -> None:
        """EXPUNGE responses (highest first, so each number is still the client's) or VANISHED (QRESYNC)."""
        v = self.view
        assert v is not None
        gone = set(uids)
        if self.qresync:
            present = [u for u in uids if u in v.meta]
            if present:
                self.untagged(f"VANISHED {seqset_from_values(present)}")
        else:
            seqs = [i + 1 for i, u in enumerate(v.uids) if u in gone]
            for seq in reversed(seqs):
                self.untagged(f"{seq} EXPUNGE")
        v.uids = [u for u in v.uids if u not in gone]
        for u in gone:
            v.meta.pop(u, None)
            v.recent.discard(u)
        v.pending_expunged -= gone

    def _enable_condstore(self) -> None:
        """RFC 7162 §3.1: a CONDSTORE enabling command issued while a mailbox is selected also reports
        its HIGHESTMODSEQ, since SELECT did not know the client cared (ours always says it anyway)."""
        if self.condstore:
            return
        self.condstore = True
        if self.view is not None:
            self.untagged(f"OK [HIGHESTMODSEQ {max(self.view.modseq, 1)}] Highest")

    def _announce_keywords(self, v: View, metas: Iterable[MessageMeta]) -> None:
        """A keyword must be in an untagged FLAGS before any FETCH shows it (RFC 3501 §7.2.6)."""
        new_keywords = _keywords(metas) - v.keywords
        if new_keywords:
            v.keywords |= new_keywords
            self._send_flags(v)

    def _send_flag_update(self, v: View, m: MessageMeta) -> None:
        seq = v.seq_of(m.uid)
        if not seq:
            return
        extra = b" MODSEQ (%d)" % m.modseq if self.condstore else b""
        self.send(b"* %d FETCH (UID %d FLAGS " % (seq, m.uid) + flag_bytes(m.flags, m.uid in v.recent)
                  + extra + b")\r\n")

    def _send_flags(self, v: View) -> None:
        flags = " ".join([*_SYSTEM_ORDER, *sorted(v.keywords)])
        self.untagged(f"FLAGS ({flags})")
        if v.readonly:
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox")
        else:
            self.untagged(f"OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted")

    def _resolve(self, seqs: SeqSet, uid: bool) -> list[int]:
        """Indexes into view.uids that a sequence set names (RFC 3501 §9 seq-number rules)."""
        v = self.view
        assert v is not None
        if seqs.saved:
            saved = set(self.saved_uids)
            return [i for i, u in enumerate(v.uids) if u in saved]
        if uid:
            if not v.uids:
                return []
            return seqs.select(v.uids, v.uids[-1])
        n = len(v.uids)
        picked: set[int] = set()
        for lo, hi in seqs.ranges:
            if n == 0 and (lo is None or hi is None):
                # RFC 9051 §9 (seq-number): "*" in an empty mailbox is a number that does not exist
                raise BadSequence("The mailbox is empty: there is no message *")
            a = n if lo is None else lo
            b = n if hi is None else hi
            if a > b:
                a, b = b, a
            if b > n:
                raise BadSequence(f"No message with sequence number {b} (there are {n})")
            picked.update(range(a - 1, b))
        return sorted(picked)

    # --- any state -----------------------------------------------------------------------------------

    async def cmd_CAPABILITY(self, cmd: Command) -> Done:
        self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        return Done("OK", "CAPABILITY completed")

    async def cmd_NOOP(self, cmd: Command) -> Done:
        return Done("OK", "NOOP completed")

    async def cmd_LOGOUT(self, cmd: Command) -> Done:
        self.untagged(f"BYE {SERVER_NAME} logging out")
        self.state = State.LOGOUT
        return Done("OK", "LOGOUT completed")

    async def cmd_ID(self, cmd: Command) -> Done:
        from engine import __version__
        # RFC 2971 §3.3
        self.untagged(b'ID ("name" "' + SERVER_NAME.encode() + b'" "version" ' + R.quoted(__version__.encode())
                      + b")")
        return Done("OK", "ID completed")

    # --- not authenticated -----------------------------------------------------------------------------

    async def cmd_STARTTLS(self, cmd: Command) -> Done:
        if self.conn.is_tls:
            return Done("BAD", "TLS is already active")
        if self.services.tls is None:
            return Done("NO", "TLS is not available on this server")
        self._tagged(cmd.tag, Done("OK", "Begin TLS negotiation now"))
        await self.flush()
        try:
            await self.conn.start_tls(self.services.tls, TLS_HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.info("STARTTLS with %s failed: %s", self.peer_ip, exc)
            raise ConnectionClosed from None
        raise _AlreadyAnswered

    async def cmd_LOGIN(self, cmd: Command) -> Done:
        if not self.secure:
            return Done("NO", "Use STARTTLS before logging in", "PRIVACYREQUIRED")
        user, password = cmd.args
        try:
            return await self._login(user.decode("utf-8"), password.decode("utf-8"))
        except UnicodeDecodeError:
            return Done("NO", "User name and password must be UTF-8", "AUTHENTICATIONFAILED")

    async def cmd_AUTHENTICATE(self, cmd: Command) -> Done:
        if not self.secure:
            return Done("NO", "Use STARTTLS before authenticating", "PRIVACYREQUIRED")
        mech, initial = cmd.args
        try:
            exchange = sasl.start(mech, initial)
            step = exchange.first
            while isinstance(step, sasl.Challenge):
                self.send(b"+ " + step.line + b"\r\n")
                await self.flush()
                line = await self._readline(sasl.MAX_LINE)
                step = exchange.step(line)
        except LineTooLong:
            return Done("BAD", "Authentication response too long")
        except sasl.SaslError as exc:
            if exc.cancelled:
                return Done("BAD", "AUTHENTICATE cancelled")       # RFC 3501 §6.2.2
            if "unsupported" in exc.reason:
                return Done("NO", exc.reason, "CANNOT")
            return Done("NO", exc.reason, "AUTHENTICATIONFAILED")
        return await self._login(step.username, step.password)

    async def _login(self, user: str, password: str) -> Done:
        limiter = self.services.limiter
        ip = self.peer_ip
        if limiter is not None and limiter.blocked(ip):
            return Done("NO", "Too many failed logins from your address; try again later", "UNAVAILABLE")
        account: Account | None = await asyncio.to_thread(self.services.directory.authenticate, user, password)
        if account is None or not account.enabled:
            if limiter is not None:
                limiter.failure(ip)
                delay = limiter.delay(ip)
                if delay > 0:
                    await asyncio.sleep(delay)
            return Done("NO", "Authentication failed", "AUTHENTICATIONFAILED")
        if limiter is not None:
            limiter.success(ip)
        if not self.listener.acquire_user(account.address, ip):
            return Done("NO", "Too many connections for this account from your address", "LIMIT")
        self._user_slot = (account.address, ip)
        try:
            self._mailbox = await asyncio.to_thread(self.services.store.mailbox, account.address)
        except StoreError as exc:
            self.release()
            return Done("NO", str(exc), "UNAVAILABLE")
        self.account = account
        self.state = State.AUTHENTICATED
        self.listener.register(self)
        return Done("OK", "Logged in", "CAPABILITY " + " ".join(self.capabilities()))

    # --- authenticated -----------------------------------------------------------------------------

    async def cmd_ENABLE(self, cmd: Command) -> Done:
        enabled: list[str] = []
        for cap in cmd.args[0]:
            if cap == "CONDSTORE":
                self._enable_condstore()
            elif cap == "QRESYNC":
                self.qresync = True
                self._enable_condstore()
            elif cap == "UTF8=ACCEPT":
                self.utf8 = True
            elif cap == "IMAP4REV2":
                self.rev2 = self.utf8 = True
            else:
                continue
            enabled.append("IMAP4rev2" if cap == "IMAP4REV2" else cap)
        self.untagged("ENABLED" + "".join(" " + c for c in enabled))
        return Done("OK", "ENABLE completed")

    async def cmd_NAMESPACE(self, cmd: Command) -> Done:
        # RFC 2342: one personal namespace, "/" as separator, no shared or other users' namespaces.
        self.untagged('NAMESPACE (("" "/")) NIL NIL')
        return Done("OK", "NAMESPACE completed")

    async def cmd_SELECT(self, cmd: Command) -> Done:
        return await self._select(cmd, readonly=False)

    async def cmd_EXAMINE(self, cmd: Command) -> Done:
        return await self._select(cmd, readonly=True)

    async def _select(self, cmd: Command, readonly: bool) -> Done:
        raw, condstore, qresync = cmd.args
        if qresync is not None and not self.qresync:
            return Done("BAD", "ENABLE QRESYNC first")              # RFC 7162 §3.2.5
        if self.view is not None:
            self.view = None
            self.state = State.AUTHENTICATED
            self.untagged("OK [CLOSED] Previous mailbox closed")   # RFC 7162 §3.2.11
        name = self.decode_name(raw)
        if condstore:
            self.condstore = True
        mb = self.mailbox
        account = self.account.address if self.account else ""
        snap = self.listener.snapshot(account, name)
        status, snapshot, recent = await self._store(load_view, mb, name, snap, not readonly)
        self.listener.remember(account, snapshot)
        uids = list(snapshot.uids)
        meta = dict(snapshot.meta)
        v = View(name=status.name, readonly=readonly, uidvalidity=status.uidvalidity,
                 uidnext=max(status.uidnext, (uids[-1] + 1) if uids else 1), modseq=snapshot.modseq,
                 uids=uids, meta=meta, recent=set() if self.rev2 else {u for u in recent if u in meta},
                 keywords=_keywords(meta.values()))
        self._send_flags(v)
        self.untagged(f"{len(uids)} EXISTS")
        if not self.rev2:
            self.untagged(f"{len(v.recent)} RECENT")
            first_unseen = next((i + 1 for i, u in enumerate(uids) if SEEN not in meta[u].flags), None)
            if first_unseen is not None:
                self.untagged(f"OK [UNSEEN {first_unseen}] First unseen message")
        else:
            self.untagged(b"LIST () \"/\" " + self.encode_name(v.name))
        self.untagged(f"OK [UIDVALIDITY {v.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {v.uidnext}] Predicted next UID")
        self.untagged(f"OK [HIGHESTMODSEQ {max(v.modseq, 1)}] Highest")
        self.view = v
        self.state = State.SELECTED
        self.last_refresh = time.monotonic()
        self.dirty = False
        if qresync is not None:
            await self._qresync(v, qresync)
        return Done("OK", ("EXAMINE" if readonly else "SELECT") + " completed",
                    "READ-ONLY" if readonly else "READ-WRITE")

    async def _qresync(self, v: View, params: QResyncParams) -> None:
        """RFC 7162 §3.2.5.1: what changed since the client's last known MODSEQ."""
        if params.uidvalidity != v.uidvalidity:
            return
        ch = await self._store(self.mailbox.changes_since, v.name, params.modseq)
        star = v.uids[-1] if v.uids else 0
        vanished = [u for u in ch.expunged if params.known_uids is None or params.known_uids.contains(u, star)]
        if vanished:
            self.untagged(f"VANISHED (EARLIER) {seqset_from_values(vanished)}")
        for m in ch.changed:
            if m.uid in v.meta and (params.known_uids is None or params.known_uids.contains(m.uid, star)):
                cur = v.meta[m.uid]
                self.send(b"* %d FETCH (UID %d FLAGS " % (v.seq_of(m.uid), m.uid) +
                          flag_bytes(cur.flags, m.uid in v.recent) + b" MODSEQ (%d))\r\n" % cur.modseq)

    async def cmd_CREATE(self, cmd: Command) -> Done:
        raw, use = cmd.args
        text = self.decode_name(raw, pattern=True)
        if text.endswith(SEPARATOR):
            text = text[:-1]          # RFC 3501 §6.3.3: a trailing separator only announces children
        name = check_name(text)
        if name.split(SEPARATOR)[0] == "INBOX" and name == "INBOX":
            return Done("NO", "INBOX always exists", "ALREADYEXISTS")
        if use is not None and use not in _SPECIAL_USES:
            return Done("NO", f"Unknown special use {use}", "USEATTR")
        await self._store(self._create_unsubscribed, name, use)
        return Done("OK", "CREATE completed")

    def _create_unsubscribed(self, name: str, use: str | None) -> None:
        """Blocking.  The store subscribes every folder it makes (what the desktop wants); an IMAP CREATE
        does not (RFC 3501 §6.3.3 leaves subscribing to SUBSCRIBE: clients send it themselves, and LSUB
        must show what they chose), nor do the parents it makes on the way.  A name subscribed before
        its folder existed (or after it was deleted) stays subscribed."""
        mb = self.mailbox
        before = {f.name for f in mb.folders()} | set(mb.subscriptions())
        mb.create_folder(name, use)
        for f in mb.folders():
            if f.name not in before and f.subscribed:
                with contextlib.suppress(NoSuchFolder):
                    mb.set_subscribed(f.name, False)

    async def cmd_DELETE(self, cmd: Command) -> Done:
        name = self.decode_name(cmd.args[0])
        if name == "INBOX":
            return Done("NO", "INBOX cannot be deleted", "CANNOT")
        if self.view is not None and self.view.name == name:
            return Done("NO", "Cannot delete the selected mailbox; select another first", "INUSE")
        await self._store(self.mailbox.delete_folder, name)
        return Done("OK", "DELETE completed")

    async def cmd_RENAME(self, cmd: Command) -> Done:
        old = self.decode_name(cmd.args[0])
        new = self.decode_name(cmd.args[1])
        if new == "INBOX":
            return Done("NO", "INBOX already exists", "ALREADYEXISTS")
        # RFC 3501 §6.3.5: renaming INBOX moves its messages into the new mailbox (the store does this).
        await self._store(self._rename, old, new)
        v = self.view
        if v is not None and old != "INBOX" and (v.name == old or v.name.startswith(old + SEPARATOR)):
            v.name = new + v.name[len(old):]        # the selected mailbox moved with its new name
        return Done("OK", "RENAME completed")

    def _rename(self, old: str, new: str) -> None:
        """Blocking.  A \\Noselect parent (only its children exist, e.g. after DELETE of a mailbox that had
        children) is renamed by renaming its topmost existing descendants: RFC 3501 §6.3.5 says inferior
        names MUST move with it, and Dovecot renames such names too."""
        mb = self.mailbox
        try:
            mb.rename_folder(old, new)
            return
        except NoSuchFolder:
            prefix = old + SEPARATOR
            below = sorted(f.name for f in mb.folders() if f.name.startswith(prefix))
            if not below:
                raise
        if any(f.name == new or f.name.startswith(new + SEPARATOR) for f in mb.folders()):
            raise FolderExists(f"Mailbox {new} already exists")
        tops = [n for n in below if not any(n.startswith(t + SEPARATOR) for t in below if t != n)]
        for name in tops:
            mb.rename_folder(name, new + name[len(old):])

    async def cmd_SUBSCRIBE(self, cmd: Command) -> Done:
        await self._store(self.mailbox.set_subscribed, self.decode_name(cmd.args[0]), True)
        return Done("OK", "SUBSCRIBE completed")

    async def cmd_UNSUBSCRIBE(self, cmd: Command) -> Done:
        await self._store(self.mailbox.set_subscribed, self.decode_name(cmd.args[0]), False)
        return Done("OK", "UNSUBSCRIBE completed")

    async def cmd_LIST(self, cmd: Command) -> Done:
        await self._list(cmd.args[0], lsub=False)
        return Done("OK", "LIST completed")

    async def cmd_LSUB(self, cmd: Command) -> Done:
        await self._list(cmd.args[0], lsub=True)
        return Done("OK", "LSUB completed")

    async def _list(self, lc: ListCommand, lsub: bool) -> None:
        """LIST (RFC 3501 §6.3.8, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819 LIST-STATUS)."""
        verb = "LSUB" if lsub else "LIST"
        ref = self.decode_name(lc.reference, pattern=True)
        patterns = [self.decode_name(p, pattern=True) for p in lc.patterns]
        if not lsub and not lc.extended and patterns == [""]:
            # RFC 3501 §6.3.8: the hierarchy delimiter and root name
            self.untagged(f'LIST (\\Noselect) "{SEPARATOR}" ""')
            return
        for item in lc.status_items:
            if item not in _STATUS_ITEMS:
                raise ParseErrorDone(f"Unknown STATUS item {item}")
        folders: list[FolderInfo] = await self._store(self.mailbox.folders)
        info = {f.name: f for f in folders}
        names = set(info)
        for n in list(names):
            names.update(parents_of(n))
        has_children = {p for n in names for p in parents_of(n)}
        regexes = [pattern_regex(ref + p) for p in patterns if p or ref]
        select_subscribed = "SUBSCRIBED" in lc.select_opts or lsub
        select_special = "SPECIAL-USE" in lc.select_opts
        return_subscribed = "SUBSCRIBED" in lc.return_opts or "SUBSCRIBED" in lc.select_opts
        recursive = "RECURSIVEMATCH" in lc.select_opts
        subscribed: set[str] = set()
        if select_subscribed or return_subscribed:
            subscribed = set(await self._store(self.mailbox.subscriptions))
        if select_subscribed:
            # subscribed names whose folder is gone (or never was) are listed too: \NonExistent in
            # LIST (SUBSCRIBED), \Noselect in LSUB (RFC 5258 §3.1, RFC 3501 §6.3.6)
            for n in subscribed:
                names.add(n)
                names.update(parents_of(n))
        ordered = sorted(names, key=lambda n: (n != "INBOX", n))
        statuses: list[tuple[str, tuple[str, ...]]] = []
        for name in ordered:
            if not any(rx.match(name) for rx in regexes):
                continue
            f = info.get(name)
            childinfo = False
            lsub_parent = False
            if select_subscribed and name not in subscribed:
                # a subscribed descendant the patterns do not reach themselves: RFC 5258 §3.5 (CHILDINFO) and
                # RFC 3501 §6.3.9 ("%" stops above a subscribed "foo/bar"; LSUB answers "foo" \Noselect)
                hidden = any(s.startswith(name + SEPARATOR) and not any(rx.match(s) for rx in regexes)
                             for s in subscribed)
                if recursive and hidden:
                    childinfo = True
                elif lsub and hidden:
                    lsub_parent = True
                else:
                    continue
            if select_special and (f is None or not f.special_use):
                continue
            attrs: list[str] = []
            if f is None or lsub_parent:
                attrs.append("\\NonExistent" if lc.extended and f is None else "\\Noselect")
            if not lsub or self.rev2:
                attrs.append("\\HasChildren" if name in has_children else "\\HasNoChildren")
            if f is not None and f.special_use and not lsub:
                attrs.append(f.special_use)
            if return_subscribed and name in subscribed and not lsub:
                attrs.append("\\Subscribed")
            line = f"{verb} ({' '.join(attrs)}) \"{SEPARATOR}\" ".encode() + self.encode_name(name)
            if childinfo:
                line += b' ("CHILDINFO" ("SUBSCRIBED"))'
            self.untagged(line)
            if lc.status_items and f is not None:
                statuses.append((name, lc.status_items))
        for name, items in statuses:
            try:
                await self._status_line(name, items)
            except StoreError:
                continue

    async def cmd_STATUS(self, cmd: Command) -> Done:
        name = self.decode_name(cmd.args[0])
        items: tuple[str, ...] = cmd.args[1]
        for item in items:
            if item not in _STATUS_ITEMS:
                return Done("BAD", f"Unknown STATUS item {item}")
        await self._status_line(name, items)
        return Done("OK", "STATUS completed")

    async def _status_line(self, name: str, items: Sequence[str]) -> None:
        """RFC 3501 §6.3.10 (+ RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 9051 DELETED)."""
        st = await self._store(self.mailbox.status, name)
        deleted = 0
        if "DELETED" in items:
            metas = await self._store(self.mailbox.messages, name)
            deleted = sum(1 for m in metas if "\\Deleted" in m.flags)
        values = {
            "MESSAGES": st.messages, "UIDNEXT": st.uidnext, "UIDVALIDITY": st.uidvalidity,
            "RECENT": st.recent + LEDGER.count((id(self.mailbox), st.name, st.uidvalidity)),
            "UNSEEN": st.unseen, "HIGHESTMODSEQ": max(st.highestmodseq, 1), "SIZE": st.size, "DELETED": deleted,
            "APPENDLIMIT": self.message_limit,
        }
        if "HIGHESTMODSEQ" in items:
            self._enable_condstore()
        body = " ".join(f"{item} {values[item]}" for item in items)
        self.untagged(b"STATUS " + self.encode_name(st.name) + f" ({body})".encode())

    async def cmd_APPEND(self, cmd: Command) -> Done:
        """RFC 3501 §6.3.11 with RFC 4315 APPENDUID."""
        raw, flags, date, data = cmd.args
        name = self.decode_name(raw)
        if not data:
            return Done("NO", "Refusing to store an empty message")
        flags = [f for f in flags if f != "\\Recent"]
        for f in flags:
            if f.startswith("\\") and f not in SYSTEM_FLAGS:
                return Done("BAD", f"Unknown system flag {f}")
        quota = self.account.quota if self.account else None
        try:
            uidvalidity, uid = await self._store(self._append_and_offer, name, data, flags, date, quota)
        except NoSuchFolder as exc:
            return Done("NO", str(exc), "TRYCREATE")
        if self.view is not None and self.view.name == name:
            self.dirty = True
        return Done("OK", "APPEND completed", f"APPENDUID {uidvalidity} {uid}")

    async def cmd_IDLE(self, cmd: Command) -> Done:
        """RFC 2177: push changes until the client says DONE."""
        self.send(b"+ idling\r\n")
        await self.refresh(allow_expunge=True, force=True)
        await self.flush()
        deadline = time.monotonic() + self.idle_timeout
        reader = asyncio.ensure_future(self.conn.readline(self.line_limit))
        self.idling = True
        try:
            while True:
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    waiter.cancel()
                    raise Hangup("Autologout; idle for too long")
                done, _ = await asyncio.wait({reader, waiter}, timeout=min(remaining, IDLE_POLL),
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader in done:
                    try:
                        line = reader.result()
                    except LineTooLong:
                        return Done("BAD", "Expected DONE")
                    if line.strip().upper() == b"DONE":
                        return Done("OK", "IDLE terminated")
                    return Done("BAD", "Expected DONE")
                await self.refresh(allow_expunge=True, force=True)
                await self.flush()
        finally:
            self.idling = False
            if not reader.done():
                reader.cancel()

    async def cmd_GETQUOTAROOT(self, cmd: Command) -> Done:
        """RFC 9208 §4.3.2: one quota root, "", covering the whole account."""
        name = self.decode_name(cmd.args[0])
        await self._store(self.mailbox.status, name)
        quota = self.account.quota if self.account else None
        if quota is None:
            self.untagged(b"QUOTAROOT " + self.encode_name(name))
            return Done("OK", "GETQUOTAROOT completed")
        self.untagged(b"QUOTAROOT " + self.encode_name(name) + b' ""')
        await self._quota_line(quota)
        return Done("OK", "GETQUOTAROOT completed")

    async def cmd_GETQUOTA(self, cmd: Command) -> Done:
        quota = self.account.quota if self.account else None
        if cmd.args[0] != b"" or quota is None:
            return Done("NO", "No such quota root", "NONEXISTENT")
        await self._quota_line(quota)
        return Done("OK", "GETQUOTA completed")

    async def cmd_SETQUOTA(self, cmd: Command) -> Done:
        return Done("NO", "Quotas are set by the administrator", "NOPERM")

    async def _quota_line(self, quota: int) -> None:
        used_fn: Any = getattr(self.mailbox, "used_bytes", None)
        if used_fn is not None:
            used = int(await self._store(used_fn))
        else:
            folders = await self._store(self.mailbox.folders)
            used = 0
            for f in folders:
                used += (await self._store(self.mailbox.status, f.name)).size
        self.untagged(f'QUOTA "" (STORAGE {used // 1024} {quota // 1024})')

    # --- selected ------------------------------------------------------------------------------------

    async def cmd_CHECK(self, cmd: Command) -> Done:
        return Done("OK", "CHECK completed")

    async def cmd_CLOSE(self, cmd: Command) -> Done:
        v = self.view
        assert v is not None
        if not v.readonly:
            await self._store(self.mailbox.expunge, v.name)     # silently (RFC 3501 §6.4.2)
        self.view = None
        self.state = State.AUTHENTICATED
        return Done("OK", "CLOSE completed")

    async def cmd_UNSELECT(self, cmd: Command) -> Done:
        self.view = None
        self.state = State.AUTHENTICATED
        return Done("OK", "UNSELECT completed")

    async def cmd_EXPUNGE(self, cmd: Command) -> Done:
        v = self.view
        assert v is not None
        if v.readonly:
            return Done("NO", "Mailbox is read-only", "READ-ONLY")
        uids: list[int] | None = None
        if cmd.uid:
            uids = [v.uids[i] for i in self._resolve(cmd.args[0], uid=True)]
            if not uids:
                return Done("OK", "UID EXPUNGE completed")
        gone = await self._store(self.mailbox.expunge, v.name, uids)
        v.pending_expunged.update(u for u in gone if u in v.meta)
        if v.pending_expunged:
            self._announce_expunged(sorted(v.pending_expunged))
        return Done("OK", ("UID " if cmd.uid else "") + "EXPUNGE completed")

    async def cmd_SEARCH(self, cmd: Command) -> Done:
        """RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162 §3.1.5 MODSEQ."""
        v = self.view
        assert v is not None
        program: SearchProgram = cmd.args[0]
        uses_modseq = _uses(program.key, "MODSEQ")
        if uses_modseq:
            self._enable_condstore()
        candidates = [search.Candidate(i + 1, v.meta[u], u in v.recent) for i, u in enumerate(v.uids)]
        max_uid = v.uids[-1] if v.uids else 0
        mb, folder, saved = self.mailbox, v.name, list(self.saved_uids)
        loader = storeaccess.Loader(mb, folder)
        if search.needs_message(program.key) or len(candidates) > 5000:
            found = await self._store(search.run, program.key, candidates, loader, max_uid=max_uid, saved=saved)
        else:
            found = search.run(program.key, candidates, loader, max_uid=max_uid, saved=saved)
        if self.view is not v:
            return Done("NO", "Mailbox closed during SEARCH")
        numbers = [c.meta.uid if cmd.uid else c.seq for c in found]
        modseq = max((c.meta.modseq for c in found), default=0)
        returns = program.returns
        if returns is None and self.rev2:
            returns = ("ALL",)
        if returns is None:
            text = "SEARCH" + "".join(f" {n}" for n in numbers)
            if uses_modseq and found:
                text += f" (MODSEQ {modseq})"
            self.untagged(text)
            return Done("OK", ("UID " if cmd.uid else "") + "SEARCH completed")
        # MIN/MAX without ALL or COUNT name only those messages: what SAVE keeps (RFC 5182 §2.4) and
        # whose MODSEQ is reported (RFC 4731 §3.2)
        chosen = found
        if ("MIN" in returns or "MAX" in returns) and "ALL" not in returns and "COUNT" not in returns:
            chosen = ([found[0]] if "MIN" in returns and found else []) + (
                [found[-1]] if "MAX" in returns and found else [])
        if "SAVE" in returns:
            self.saved_uids = sorted({c.meta.uid for c in chosen})
            if set(returns) == {"SAVE"}:
                return Done("OK", "SEARCH completed, result saved")
        parts = [f'ESEARCH (TAG "{cmd.tag}")']
        if cmd.uid:
            parts.append("UID")
        if "MIN" in returns and numbers:
            parts.append(f"MIN {numbers[0]}")
        if "MAX" in returns and numbers:
            parts.append(f"MAX {numbers[-1]}")
        if "ALL" in returns and numbers:
            parts.append(f"ALL {seqset_from_values(numbers)}")
        if "COUNT" in returns:
            parts.append(f"COUNT {len(numbers)}")
        if uses_modseq and chosen:
            parts.append(f"MODSEQ {max(c.meta.modseq for c in chosen)}")
        self.untagged(" ".join(parts))
        return Done("OK", ("UID " if cmd.uid else "") + "SEARCH completed")

    async def cmd_FETCH(self, cmd: Command) -> Done:
        """RFC 3501 §6.4.5 (+ RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED/MODSEQ)."""
        v = self.view
        assert v is not None
        seqs, atts, changedsince, vanished = cmd.args
        names = {a.name for a in atts}
        if vanished and not (cmd.uid and self.qresync and changedsince is not None):
            return Done("BAD", "VANISHED needs UID FETCH with CHANGEDSINCE after ENABLE QRESYNC")
        if "MODSEQ" in names or changedsince is not None:
            self._enable_condstore()
        idxs = self._resolve(seqs, cmd.uid)
        if vanished:
            ch = await self._store(self.mailbox.changes_since, v.name, changedsince)
            star = max(v.uidnext - 1, v.uids[-1] if v.uids else 0)
            gone = [u for u in ch.expunged if seqs.contains(u, star) or seqs.saved]
            if gone:
                self.untagged(f"VANISHED (EARLIER) {seqset_from_values(gone)}")
        targets = [(i + 1, v.uids[i]) for i in idxs]
        if changedsince is not None:
            targets = [(s, u) for s, u in targets if v.meta[u].modseq > changedsince]
        flags_changed: set[int] = set()
        sets_seen = any(a.name in _SETS_SEEN and (a.section is not None or a.name.startswith("RFC822"))
                        for a in atts)
        if sets_seen and not v.readonly:
            unseen = [u for _, u in targets if SEEN not in v.meta[u].flags and u not in v.pending_expunged]
            if unseen:
                changed, _ = await self._store(self.mailbox.set_flags, v.name, unseen, [SEEN], "add")
                for m in changed:
                    if m.uid in v.meta:
                        v.meta[m.uid] = m
                        flags_changed.add(m.uid)
                # the rows come back with every flag they have now, keywords other sessions set included
                self._announce_keywords(v, changed)
        plan = FetchPlan(atts=tuple(atts), want_uid=cmd.uid, want_modseq=changedsince is not None,
                         flags_changed=frozenset(flags_changed), condstore=self.condstore,
                         recent=frozenset(v.recent),
                         account=self.account.address if self.account else "", folder=v.name,
                         uidvalidity=v.uidvalidity)
        needs_store = any(a.name in _DATA_ATTS or a.name in _CACHED_ATTS for a in atts)
        reads_bodies = any(a.name in _DATA_ATTS or a.section is not None for a in atts)
        batch_size = FETCH_BATCH_DATA if reads_bodies else FETCH_BATCH_META
        missing: list[int] = []
        unknown_cte = False
        # A few small messages are cheaper to serve on the loop than to hand to a thread (the hop and the
        # GIL hand-back cost more than reading 100 KiB); anything bigger goes to a worker.
        inline = len(targets) <= INLINE_FETCH_COUNT and sum(
            v.meta[u].size for _, u in targets) <= INLINE_FETCH_BYTES
        for chunk in _batches(targets, v.meta, batch_size, reads_bodies):
            if needs_store and not inline:
                result = await self._store(fetch_batch, self.mailbox, plan, chunk)
            else:
                result = fetch_batch(self.mailbox, plan, chunk)
            missing += result.missing
            unknown_cte = unknown_cte or result.unknown_cte
            self.send(result.data)
            if self._out_size >= FLUSH_AT:
                await self.flush()          # big answers go out batch by batch; small ones ride with the OK
        verb = ("UID " if cmd.uid else "") + "FETCH"
        if unknown_cte:
            return Done("NO", "A part has a transfer encoding this server cannot decode", "UNKNOWN-CTE")
        if missing:
            return Done("NO", "Some messages were expunged and could not be fetched", "EXPUNGEISSUED")
        return Done("OK", f"{verb} completed")

    async def cmd_STORE(self, cmd: Command) -> Done:
        """RFC 3501 §6.4.6 with RFC 7162 §3.1.3 UNCHANGEDSINCE."""
        v = self.view
        assert v is not None
        seqs, action = cmd.args
        assert isinstance(action, StoreAction)
        if v.readonly:
            return Done("NO", "Mailbox is read-only", "READ-ONLY")
        if action.unchanged_since is not None:
            self._enable_condstore()
        idxs = self._resolve(seqs, cmd.uid)
        uids = [v.uids[i] for i in idxs if v.uids[i] not in v.pending_expunged]
        flags = [f for f in action.flags if f != "\\Recent"]
        for f in flags:
            if f.startswith("\\") and f not in SYSTEM_FLAGS:
                return Done("BAD", f"Unknown system flag {f}")
        if not uids:
            return Done("OK", "STORE completed")
        before = {u: v.meta[u].flags for u in uids}
        changed, failed, current = await self._store(self._set_flags_and_look, v.name, uids, flags, action.mode,
                                                     action.unchanged_since, v.modseq)
        # The answer is each message's flags as they are now, which may include what other sessions did
        # since this one last looked (RFC 3501 §6.4.6: "as if a FETCH FLAGS"), not the session's old copy.
        # Messages that failed UNCHANGEDSINCE get no reply line here, so their news (someone else's
        # change, the reason they failed) is left to the refresh after the command, which tells it.
        failed_set = set(failed)
        answered = [m for m in current.values() if m.uid in v.meta and m.uid not in failed_set]
        for m in answered:
            v.meta[m.uid] = m
        self._announce_keywords(v, answered)
        changed_uids = {m.uid for m in changed}
        for uid in uids:
            if uid in failed_set:
                continue
            m = v.meta[uid]
            if action.silent:
                conditional = self.condstore and uid in changed_uids and action.unchanged_since is not None
                # RFC 3501 §6.4.6: .SILENT still reports a change made by someone else
                external = _folded(m.flags) != _folded(_applied(action.mode, flags, before[uid]))
                if not external:
                    if conditional:
                        # RFC 7162 §3.1.3: a conditional .SILENT STORE still reports the new MODSEQ
                        self.send(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (v.seq_of(uid), uid, m.modseq))
                    continue
            extra = b" MODSEQ (%d)" % m.modseq if self.condstore else b""
            # RFC 7162 §3.1: once CONDSTORE is on, every untagged FETCH carries UID and MODSEQ
            self.send(b"* %d FETCH (" % v.seq_of(uid) + (b"UID %d " % uid if cmd.uid or self.condstore else b"")
                      + b"FLAGS "
                      + flag_bytes(m.flags, uid in v.recent) + extra + b")\r\n")
        if failed:
            numbers = sorted(failed) if cmd.uid else sorted(v.seq_of(u) for u in failed)
            return Done("OK", "Conditional STORE failed for some messages",
                        f"MODIFIED {seqset_from_values(numbers)}")
        return Done("OK", ("UID " if cmd.uid else "") + "STORE completed")

    async def cmd_COPY(self, cmd: Command) -> Done:
        return await self._copy(cmd, move=False)

    async def cmd_MOVE(self, cmd: Command) -> Done:
        v = self.view
        assert v is not None
        if v.readonly:
            return Done("NO", "Mailbox is read-only", "READ-ONLY")
        return await self._copy(cmd, move=True)

    async def _copy(self, cmd: Command, move: bool) -> Done:
        """COPY (RFC 3501 §6.4.7) and MOVE (RFC 6851), with COPYUID (RFC 4315)."""
        v = self.view
        assert v is not None
        seqs, raw = cmd.args
        target = self.decode_name(raw)
        verb = ("UID " if cmd.uid else "") + ("MOVE" if move else "COPY")
        uids = [v.uids[i] for i in self._resolve(seqs, cmd.uid)]
        uids = [u for u in uids if u not in v.pending_expunged]
        if not uids:
            return Done("OK", f"{verb} completed (nothing to do)")
        try:
            uidvalidity, pairs = await self._store(self._copy_and_offer, move, v.name, uids, target)
        except NoSuchFolder as exc:
            return Done("NO", str(exc), "TRYCREATE")
        if not pairs:
            return Done("NO", "The messages are gone", "EXPUNGEISSUED")
        code = f"COPYUID {uidvalidity} {seqset_from_values([s for s, _ in pairs])} " \
               f"{seqset_from_values([d for _, d in pairs])}"
        if target == v.name:
            self.dirty = True
        if not move:
            return Done("OK", f"{verb} completed", code)
        # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges
        self.untagged(f"OK [{code}] Moved")
        v.pending_expunged.update(s for s, _ in pairs if s in v.meta)
        self._announce_expunged(sorted(v.pending_expunged))
        return Done("OK", f"{verb} completed")

    def _set_flags_and_look(self, folder: str, uids: list[int], flags: list[str], mode: FlagMode,
                            unchanged_since: int | None,
                            since: int) -> tuple[list[MessageMeta], list[int], dict[int, MessageMeta]]:
        """Blocking: STORE, then the current state of the stored messages that changed since `since`
        (this STORE's own changes and any other session's)."""
        changed, failed = self.mailbox.set_flags(folder, uids, flags, mode, unchanged_since)
        wanted = set(uids)
        current = {m.uid: m for m in self.mailbox.changes_since(folder, since).changed if m.uid in wanted}
        # what this STORE made of a message it changed is its answer; a change another session made
        # after it is news for the refresh that follows the command
        current.update((m.uid, m) for m in changed)
        return changed, failed, current

    def _append_and_offer(self, name: str, data: bytes, flags: list[str], date: float | None,
                          quota: int | None) -> tuple[int, int]:
        """Blocking: APPEND.  A message stored with a system flag goes to cur/, where no session claims
        it, so it is offered as \\Recent like a copy (RFC 3501 §6.3.11: the Recent flag is also set)."""
        mb = self.mailbox
        append: Any = mb.append
        if quota is not None:
            uidvalidity, uid = append(name, data, flags, date, quota=quota)
        else:
            uidvalidity, uid = append(name, data, flags, date)
        if any(f.startswith("\\") for f in flags):
            LEDGER.offer((id(mb), canonical_name(name), uidvalidity), [uid])
        return uidvalidity, uid

    def _copy_and_offer(self, move: bool, folder: str, uids: list[int],
                        target: str) -> tuple[int, list[tuple[int, int]]]:
        """Blocking: COPY or MOVE, then the copies are \\Recent for the first session to see them
        (RFC 3501 §6.4.7), offered before this thread returns so a watching session's refresh finds them."""
        mb = self.mailbox
        uidvalidity, pairs = (mb.move if move else mb.copy)(folder, uids, target)
        if pairs:
            LEDGER.offer((id(mb), canonical_name(target), uidvalidity), [d for _, d in pairs])
        return uidvalidity, pairs


def _batches(targets: Sequence[tuple[int, int]], meta: dict[int, MessageMeta], count: int,
             by_size: bool) -> Iterable[list[tuple[int, MessageMeta]]]:
    """Worker-thread batches of at most `count` messages and, when bodies are read, FETCH_BATCH_BYTES."""
    chunk: list[tuple[int, MessageMeta]] = []
    size = 0
    for seq, uid in targets:
        m = meta[uid]
        if chunk and (len(chunk) >= count or (by_size and size + m.size > FETCH_BATCH_BYTES)):
            yield chunk
            chunk, size = [], 0
        chunk.append((seq, m))
        size += m.size
    if chunk:
        yield chunk


class _AlreadyAnswered(Exception):
    """STARTTLS has sent its tagged OK itself, before the handshake."""


class ParseErrorDone(BadSequence):
    """An argument problem found after parsing: tagged BAD."""


def _uses(key: SearchKey, op: str) -> bool:
    if key.op == op:
        return True
    return any(_uses(k, op) for k in key.children)
