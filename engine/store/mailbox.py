"""AccountMailbox: one account's Maildir++ folders and index, implementing engine.interfaces.Mailbox.

Locking: one RLock per account guards its SQLite connection and every index read or write; file
contents are read and written outside it.  New messages reach the index through a GroupCommit so
concurrent deliveries share the directory fsync and the index commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.events import Event, MailboxChanged, MessageStored
from engine.interfaces import (
    DEFAULT_FOLDERS,
    RECENT,
    SYSTEM_FLAGS,
    Changes,
    FlagMode,
    FolderExists,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    MessageSummary,
    NoSuchFolder,
    QuotaExceeded,
    StoreError,
)
from engine.store import index as idx
from engine.store.groupcommit import GroupCommit, Handoff
from engine.store.maildir import (
    NameMaker,
    disk_size_from_base,
    file_name,
    flags_to_info,
    fsync_dir,
    info_to_flags,
    make_maildir,
    split_name,
    to_disk,
    to_wire,
    wire_size,
    wire_size_from_base,
    write_synced,
)
from engine.store.names import (
    INBOX,
    InvalidName,
    folder_dirname,
    folder_from_dirname,
    is_descendant,
    normalize_folder,
    parents,
)
from engine.store.summary import MAX_HEADER_BYTES, HeaderSummary, body_text, summarize
from engine.store.workers import Workers

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
# _RECENT_COPIES: copies and moves always land in cur/.  \Recent for them comes from the IMAP side's
# ledger (engine/imap/recent.py) alone; one left in new/ would also be claimed by the first session to
# look there, and two sessions would both see it \Recent (RFC 3501 §2.3.2 allows one).
UIDVALIDITY_FILE = "postroom-uidvalidity"   # outside the index so a rebuilt index never reuses one
TRASH_PREFIX = "postroom-deleted-"          # a folder being deleted; not a Maildir++ name (no ".")
SORT_COLUMNS = {
    "date": "sort_date",
    "arrival": "uid",
    "sender": "sender COLLATE NOCASE",
    "subject": "subject COLLATE NOCASE",
    "size": "size",
}
_ATOM_SPECIALS = set('(){ %*"\\]')   # RFC 3501 §9 atom-specials (plus CTL, checked separately)
_SQL_CHUNK = 500

Notify = Callable[[Event], object]


class NoSuchMessage(StoreError):
    pass


class AccountOverQuota(QuotaExceeded):
    """QuotaExceeded naming the account, so a multi-recipient delivery can tell whom to refuse."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address


@dataclass
class _Folder:
    id: int
    name: str
    dirname: str
    path: Path
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    new_mtime: int | None
    cur_mtime: int | None


@dataclass(frozen=True)
class _Incoming:
    """A message file already renamed into new/ or cur/, waiting for its index row."""

    folder: str
    dirpath: str                 # the folder's directory (a str: the hot path skips pathlib)
    base: str
    subdir: str
    info: str
    keywords: str
    size: int
    internaldate: float
    summary: HeaderSummary


@dataclass(frozen=True)
class _Row:
    uid: int
    base: str
    subdir: str
    info: str
    keywords: str
    modseq: int
    size: int
    internaldate: float


_ROW_COLS = "uid, base, subdir, info, keywords, modseq, size, internaldate"
_FOLDER_COLS = "id, name, dirname, uidvalidity, uidnext, highestmodseq, special_use, new_mtime, cur_mtime"


def parse_flags(flags: Iterable[str]) -> tuple[set[str], set[str]]:
    """(system flags in canonical case, keywords); \\Recent is dropped (RFC 3501 §2.3.2: per session)."""
    system: set[str] = set()
    keywords: set[str] = set()
    canonical = {f.lower(): f for f in SYSTEM_FLAGS}
    for flag in flags:
        if flag.startswith("\\"):
            if flag.lower() == RECENT.lower():
                continue
            found = canonical.get(flag.lower())
            if found is None:
                raise StoreError(f"Unknown system flag {flag}")
            system.add(found)
        else:
            if not flag or any(ch in _ATOM_SPECIALS or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in flag):
                raise StoreError(f"Invalid keyword {flag!r}")
            keywords.add(flag)
    return system, keywords


class AccountMailbox:
    """One account: `<root>/<domain>/<user>/` (Maildir++) and its index.sqlite."""

    # Seconds after our own change to a folder before one full rescan double-checks it (directory
    # mtimes cannot tell our change from another program's made in between).
    verify_after: float = 120.0

    def __init__(self, address: str, path: Path, names: NameMaker, notify: Notify | None = None,
                 fsync_pool: Workers | None = None, *, handoff: Handoff | None = None) -> None:
        self.address = address
        self._fsync_pool = fsync_pool
        self.path = path
        self._path_text = str(path)
        self._names = names
        self._notify = notify
        self._lock = threading.RLock()
        self._inflight: set[tuple[str, str]] = set()   # (folder dir, base) renamed in, not yet indexed
        self._inflight_lock = threading.Lock()
        self._flag_cache: dict[tuple[str, str], frozenset[str]] = {}
        self._status_cache: dict[int, tuple[tuple[object, ...], FolderStatus]] = {}
        # fid -> when we first recorded our own directory change since the last full rescan
        self._unverified: dict[int, float] = {}
        self._recent_version = 0   # bumped whenever files move between new/ and cur/ without a MODSEQ
        self._closed = False
        make_maildir(path, folder=False)
        self._cleanup_leftovers()
        index_path = path / INDEX_FILE
        fresh = not index_path.exists()
        try:
            self._db = idx.connect(index_path)
        except sqlite3.DatabaseError:
            log.exception("index of %s unreadable; rebuilding it from the Maildir", address)
            self._discard_index(index_path)
            fresh = True
            self._db = idx.connect(index_path)
        if fresh:
            log.info("building the index of %s from its Maildir", address)
        # The group-commit leader writes new rows through its own connection, so its durable commit
        # (an fsync) never holds the account lock that readers and other writers need; SQLite (WAL)
        # serialises the two writers.  Only one flush runs at a time, so this connection is never
        # used by two threads at once.
        self._commit_db = idx.connect(index_path, durable=True)
        self._committer: GroupCommit[_Incoming, tuple[int, int] | StoreError] = GroupCommit(
            self._flush, handoff)
        events: list[Event] = []
        with self._lock:
            self._sync_folder_list(events, force=True)
            # A crash between "renamed into new/" and "index committed" leaves files the index does not
            # know; catch them now, before any new delivery takes the next UID.
            for f in self._all_folders():
                with contextlib.suppress(NoSuchFolder):
                    self._sync(f, events)
        self._emit(events)

    # --- plumbing ---------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._commit_db.close()

    def _emit(self, events: list[Event]) -> None:
        if self._notify is None:
            return
        for event in events:
            try:
                self._notify(event)
            except Exception:
                log.exception("store event listener failed on %s", event.kind)

    def _discard_index(self, index_path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = index_path.with_name(index_path.name + suffix)
            if p.exists():
                p.rename(p.with_name(p.name + f".broken-{int(time.time())}"))

    def _cleanup_leftovers(self) -> None:
        """Removes half-deleted folders and tmp/ files older than 36 hours (Maildir spec)."""
        now = time.time()
        for entry in os.scandir(self.path):
            if entry.name.startswith(TRASH_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        tmp = self.path / "tmp"
        for entry in os.scandir(tmp):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > 36 * 3600:
                    os.unlink(entry.path)

    def _allocate_uidvalidity(self) -> int:
        """Strictly increasing per account, remembered outside the index (RFC 3501 §2.3.1.1: a name
        must never see the same UIDVALIDITY with different UIDs, even after the index is rebuilt)."""
        side = self.path / UIDVALIDITY_FILE
        try:
            last = int(side.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        value = max(int(time.time()), last + 1) & 0xFFFFFFFF or 1
        # Not fsynced: the values are time-based, so losing this write in a crash cannot make a
        # later allocation repeat one unless the clock also went backwards.
        replace_file(side.with_name(side.name + ".tmp"), side, str(value).encode())
        return value

    def _folder_from_row(self, row: tuple[object, ...]) -> _Folder:
        fid, name, dirname, uidv, uidnext, hms, special, new_m, cur_m = row
        assert isinstance(dirname, str) and isinstance(name, str)
        return _Folder(
            id=int(fid),  # type: ignore[call-overload]
            name=name,
            dirname=dirname,
            path=self.path / dirname if dirname else self.path,
            uidvalidity=int(uidv),  # type: ignore[call-overload]
            uidnext=int(uidnext),  # type: ignore[call-overload]
            highestmodseq=int(hms),  # type: ignore[call-overload]
            special_use=special if isinstance(special, str) else None,
            new_mtime=new_m if isinstance(new_m, int) else None,
            cur_mtime=cur_m if isinstance(cur_m, int) else None,
        )

    def _all_folders(self) -> list[_Folder]:
        rows = self._db.execute(f"SELECT {_FOLDER_COLS} FROM folders ORDER BY name != 'INBOX', name")
        return [self._folder_from_row(r) for r in rows.fetchall()]

    def _find_folder(self, name: str, db: sqlite3.Connection | None = None) -> _Folder | None:
        row = (db or self._db).execute(f"SELECT {_FOLDER_COLS} FROM folders WHERE name = ?", (name,)).fetchone()
        return self._folder_from_row(row) if row else None

    def _folder(self, name: str) -> _Folder:
        """The folder row, or NoSuchFolder (RFC 3501 §6.3.1 NO [NONEXISTENT] territory)."""
        canonical = normalize_folder(name)
        f = self._find_folder(canonical)
        if f is None:
            raise NoSuchFolder(f"Mailbox {canonical} does not exist")
        return f

    def _insert_folder(self, name: str, special_use: str | None) -> None:
        """Every folder the store makes or adopts starts subscribed (what the desktop and most clients
        want); IMAP CREATE takes that back (engine/imap/session.py)."""
        self._db.execute(
            "INSERT INTO folders (name, dirname, uidvalidity, uidnext, highestmodseq, special_use, "
            "subscribed) VALUES (?, ?, ?, 1, 1, ?, 1)",
            (name, folder_dirname(name), self._allocate_uidvalidity(), special_use),
        )
        self._db.execute("INSERT OR IGNORE INTO subscriptions (name) VALUES (?)", (name,))

    def _subscribed_names(self) -> set[str]:
        return {name for (name,) in self._db.execute("SELECT name FROM subscriptions")}

    def _sync_folder_list(self, events: list[Event], *, force: bool = False) -> None:
        """Adopts folder directories made by other tools; forgets folders whose directory vanished."""
        root_mtime = os.stat(self.path).st_mtime_ns
        row = self._db.execute("SELECT value FROM meta WHERE key = 'root_mtime'").fetchone()
        if not force and row is not None and row[0] == str(root_mtime):
            return
        on_disk: dict[str, str] = {"": INBOX}
        for entry in os.scandir(self.path):
            if not entry.name.startswith(".") or entry.name in (".", ".."):
                continue
            if not entry.is_dir(follow_symlinks=False) or not os.path.isdir(os.path.join(entry.path, "cur")):
                continue
            try:
                on_disk[entry.name] = folder_from_dirname(entry.name)
            except InvalidName:
                log.warning("ignoring %s/%s: not a folder name we can represent", self.path, entry.name)
        known = {f.dirname: f for f in self._all_folders()}
        with idx.transaction(self._db):
            for dirname, name in on_disk.items():
                if dirname not in known:
                    if self._find_folder(name) is not None:
                        continue
                    self._insert_folder(name, DEFAULT_FOLDERS.get(name))
                    events.append(MailboxChanged(self.address, name))
            for dirname, f in known.items():
                if dirname not in on_disk:
                    self._forget_folder(f)
                    events.append(MailboxChanged(self.address, f.name))
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('root_mtime', ?)",
                             (str(root_mtime),))

    def _note_root_changed(self) -> None:
        """After our own folder operation: the root directory mtime now reflects it."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('root_mtime', ?)",
                         (str(os.stat(self.path).st_mtime_ns),))

    def _forget_folder(self, f: _Folder) -> None:
        for table in ("messages", "expunged", "cache"):
            self._db.execute(f"DELETE FROM {table} WHERE fid = ?", (f.id,))
        self._db.execute("DELETE FROM folders WHERE id = ?", (f.id,))

    # --- resync with the Maildir ---------------------------------------------------------------------

    def _dir_mtimes(self, f: _Folder) -> tuple[int, int]:
        return (os.stat(f.path / "new").st_mtime_ns, os.stat(f.path / "cur").st_mtime_ns)

    def _sync(self, f: _Folder, events: list[Event]) -> _Folder:
        """Cheap check (two stat calls); rescans the folder when new/ or cur/ changed behind our back."""
        try:
            mtimes = self._dir_mtimes(f)
        except FileNotFoundError:
            if f.name == INBOX:
                make_maildir(self.path, folder=False)
                mtimes = self._dir_mtimes(f)
            else:
                with idx.transaction(self._db):
                    self._forget_folder(f)
                events.append(MailboxChanged(self.address, f.name))
                raise NoSuchFolder(f"Mailbox {f.name} does not exist") from None
        if mtimes == (f.new_mtime, f.cur_mtime):
            since = self._unverified.get(f.id)
            if since is None or time.monotonic() - since < self.verify_after:
                return f
        self._rescan(f, mtimes, events)
        refreshed = self._find_folder(f.name)
        assert refreshed is not None
        return refreshed

    def _synced(self, name: str, events: list[Event]) -> _Folder:
        return self._sync(self._folder(name), events)

    def _rescan(self, f: _Folder, mtimes: tuple[int, int], events: list[Event]) -> None:
        """Makes the index match the directory: new files get new UIDs (never reused), vanished files
        become expunges, changed info suffixes become flag changes (with a new MODSEQ)."""
        self._unverified.pop(f.id, None)
        on_disk: dict[str, tuple[str, str]] = {}
        for sub in ("cur", "new"):
            for entry in os.scandir(f.path / sub):
                if entry.name.startswith("."):
                    continue
                base, info = split_name(entry.name)
                on_disk.setdefault(base, (sub, info))
        rows = {r.base: r for r in self._rows(f.id)}
        dirkey = str(f.path)
        with self._inflight_lock:
            inflight = {b for d, b in self._inflight if d == dirkey}
        fresh = sorted((b for b in on_disk if b not in rows and b not in inflight), key=_arrival_key)
        # Read the new files before opening the write transaction.
        new_entries: list[tuple[str, str, str, int, float, HeaderSummary]] = []
        for base in fresh:
            sub, info = on_disk[base]
            path = f.path / sub / file_name(base, sub, info)
            try:
                size, internaldate, summary = _describe_file(path, base)
            except FileNotFoundError:
                del on_disk[base]
                continue
            new_entries.append((base, sub, info, size, internaldate, summary))
        gone = sorted(r.uid for b, r in rows.items() if b not in on_disk)
        changed = [(r, on_disk[b]) for b, r in rows.items() if b in on_disk and on_disk[b] != (r.subdir, r.info)]
        with idx.transaction(self._db, durable=bool(new_entries)):
            cur = self._find_folder(f.name)
            assert cur is not None
            modseq = cur.highestmodseq
            uidnext = cur.uidnext
            if gone:
                modseq += 1
                self._delete_rows(f.id, gone, modseq)
            flag_changed = False
            for r, (sub, info) in changed:
                if info != r.info:
                    if not flag_changed:
                        modseq += 1
                        flag_changed = True
                    self._db.execute(
                        "UPDATE messages SET subdir = ?, info = ?, seen = ?, modseq = ? WHERE fid = ? AND uid = ?",
                        (sub, info, int("S" in info), modseq, f.id, r.uid),
                    )
                else:
                    self._db.execute("UPDATE messages SET subdir = ? WHERE fid = ? AND uid = ?",
                                     (sub, f.id, r.uid))
                    self._recent_version += 1
            for base, sub, info, size, internaldate, summary in new_entries:
                if self._db.execute("SELECT 1 FROM messages WHERE fid = ? AND base = ?", (f.id, base)).fetchone():
                    continue   # indexed by a delivery that committed after we listed the rows
                modseq += 1
                self._insert_message(f.id, uidnext, base, sub, info, "", modseq, size, internaldate, summary)
                events.append(MessageStored(self.address, f.name, uidnext))
                uidnext += 1
            self._db.execute(
                "UPDATE folders SET uidnext = ?, highestmodseq = ?, new_mtime = ?, cur_mtime = ? WHERE id = ?",
                (uidnext, modseq, mtimes[0], mtimes[1], f.id),
            )
        if gone or flag_changed:
            events.append(MailboxChanged(self.address, f.name))
        if gone or changed or new_entries:
            log.info("%s %s: rescan found %d new, %d gone, %d changed", self.address, f.name,
                     len(new_entries), len(gone), len(changed))

    def _note_dir_changed(self, f: _Folder, db: sqlite3.Connection | None = None) -> None:
        """After our own change to new/ or cur/: record their mtimes so it is not mistaken for a
        change by another program.  A folder never scanned yet (NULL) stays due for its scan."""
        if f.new_mtime is None or f.cur_mtime is None:
            return
        # Recording our own change hides any change another program made to the same directory
        # since the last scan; such a folder gets one full rescan `verify_after` seconds later.
        self._unverified.setdefault(f.id, time.monotonic())
        with contextlib.suppress(FileNotFoundError):
            new_m, cur_m = self._dir_mtimes(f)
            (db or self._db).execute("UPDATE folders SET new_mtime = ?, cur_mtime = ? WHERE id = ?",
                                     (new_m, cur_m, f.id))

    # --- row helpers ---------------------------------------------------------------------------------

    def _rows(self, fid: int, uids: Iterable[int] | None = None) -> list[_Row]:
        if uids is None:
            cur = self._db.execute(f"SELECT {_ROW_COLS} FROM messages WHERE fid = ? ORDER BY uid", (fid,))
            return [_Row(*r) for r in cur.fetchall()]
        wanted = sorted(set(uids))
        out: list[_Row] = []
        for i in range(0, len(wanted), _SQL_CHUNK):
            chunk = wanted[i:i + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT {_ROW_COLS} FROM messages WHERE fid = ? AND uid IN ({marks}) ORDER BY uid", (fid, *chunk)
            )
            out.extend(_Row(*r) for r in cur.fetchall())
        return out

    def _flags_of(self, info: str, keywords: str) -> frozenset[str]:
        key = (info, keywords)
        flags = self._flag_cache.get(key)
        if flags is None:
            flags = frozenset(info_to_flags(info) | set(keywords.split()))
            if len(self._flag_cache) < 4096:
                self._flag_cache[key] = flags
        return flags

    def _meta(self, r: _Row) -> MessageMeta:
        return MessageMeta(uid=r.uid, flags=self._flags_of(r.info, r.keywords), modseq=r.modseq,
                           size=r.size, internaldate=r.internaldate)

    def _insert_message(self, fid: int, uid: int, base: str, subdir: str, info: str, keywords: str,
                        modseq: int, size: int, internaldate: float, s: HeaderSummary,
                        db: sqlite3.Connection | None = None) -> None:
        (db or self._db).execute(
            "INSERT INTO messages (fid, uid, base, subdir, info, keywords, seen, modseq, size, internaldate, "
            "date, sort_date, sender, subject, message_id, in_reply_to, refs, has_attachments) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fid, uid, base, subdir, info, keywords, int("S" in info), modseq, size, internaldate,
             s.date, s.date if s.date is not None else internaldate, s.sender, s.subject, s.message_id,
             s.in_reply_to, s.references, int(s.has_attachments)),
        )

    def _delete_rows(self, fid: int, uids: Sequence[int], modseq: int) -> None:
        for i in range(0, len(uids), _SQL_CHUNK):
            chunk = list(uids[i:i + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM messages WHERE fid = ? AND uid IN ({marks})", (fid, *chunk))
            self._db.execute(f"DELETE FROM cache WHERE fid = ? AND uid IN ({marks})", (fid, *chunk))
        # RFC 7162 §3.2.10 (QRESYNC VANISHED): remember what went away and when.
        self._db.executemany("INSERT OR REPLACE INTO expunged (fid, uid, modseq) VALUES (?, ?, ?)",
                             [(fid, uid, modseq) for uid in uids])

    def _path(self, f: _Folder, r: _Row) -> Path:
        return f.path / r.subdir / file_name(r.base, r.subdir, r.info)

    def _check_quota(self, quota: int | None, size: int) -> None:
        if quota is None:
            return
        used = idx.used_bytes(self._db)
        if used + size > quota:
            raise AccountOverQuota(self.address, f"Mailbox {self.address} is over its quota "
                                                 f"({int(used)} + {size} > {quota} octets)")

    # --- folders -------------------------------------------------------------------------------------

    def folders(self) -> list[FolderInfo]:
        events: list[Event] = []
        with self._lock:
            self._sync_folder_list(events)
            subscribed = self._subscribed_names()
            out = [FolderInfo(f.name, f.special_use, f.name in subscribed) for f in self._all_folders()]
        self._emit(events)
        return out

    def create_folder(self, name: str, special_use: str | None = None) -> None:
        """RFC 3501 §6.3.3: a trailing separator only declares intent to create children; missing
        parents are created too (so every listed name is selectable)."""
        if isinstance(name, str) and name.endswith("/") and len(name) > 1:
            name = name[:-1]
        canonical = normalize_folder(name)
        events: list[Event] = []
        with self._lock:
            self._sync_folder_list(events)
            if self._find_folder(canonical) is not None:
                raise FolderExists(f"Mailbox {canonical} already exists")
            with idx.transaction(self._db):
                for n in [*parents(canonical), canonical]:
                    if self._find_folder(n) is not None:
                        continue
                    make_maildir(self.path / folder_dirname(n), folder=True)
                    self._insert_folder(n, special_use if n == canonical else None)
                    events.append(MailboxChanged(self.address, n))
                fsync_dir(self.path)
                self._note_root_changed()
        self._emit(events)

    def delete_folder(self, name: str) -> None:
        """RFC 3501 §6.3.4; children stay (as in Dovecot's Maildir++), INBOX cannot be deleted."""
        canonical = normalize_folder(name)
        if canonical == INBOX:
            raise StoreError("INBOX cannot be deleted")
        events: list[Event] = []
        with self._lock:
            f = self._folder(canonical)
            trash = self.path / f"{TRASH_PREFIX}{time.time_ns()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(f.path, trash)
            fsync_dir(self.path)
            with idx.transaction(self._db):
                self._forget_folder(f)
                self._note_root_changed()
            events.append(MailboxChanged(self.address, canonical))
        shutil.rmtree(trash, ignore_errors=True)
        self._emit(events)

    def rename_folder(self, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: children move along; renaming INBOX moves its messages to a new folder and
        leaves INBOX (and INBOX's children) in place."""
        src = normalize_folder(old)
        dst = normalize_folder(new)
        if dst in (INBOX, src):
            raise FolderExists(f"Mailbox {dst} already exists")
        if is_descendant(dst, src):
            raise StoreError("A mailbox cannot be moved into itself")
        if src == INBOX:
            self._rename_inbox(dst)
            return
        events: list[Event] = []
        with self._lock:
            f = self._folder(src)
            if self._find_folder(dst) is not None:
                raise FolderExists(f"Mailbox {dst} already exists")
            moving = [f] + [g for g in self._all_folders() if is_descendant(g.name, src)]
            renames = [(g, dst + g.name[len(src):]) for g in moving]
            for _, n in renames:
                normalize_folder(n)
                if self._find_folder(n) is not None:
                    raise FolderExists(f"Mailbox {n} already exists")
            with idx.transaction(self._db):
                for n in parents(dst):
                    if self._find_folder(n) is None:
                        make_maildir(self.path / folder_dirname(n), folder=True)
                        self._insert_folder(n, None)
                        events.append(MailboxChanged(self.address, n))
                for g, n in renames:
                    os.rename(g.path, self.path / folder_dirname(n))
                    self._db.execute("UPDATE folders SET name = ?, dirname = ? WHERE id = ?",
                                     (n, folder_dirname(n), g.id))
                    # its subscription moves with it, as Cyrus does (a client renamed it; nobody
                    # wants the folder to drop out of their list)
                    self._db.execute("UPDATE OR IGNORE subscriptions SET name = ? WHERE name = ?", (n, g.name))
                    self._db.execute("DELETE FROM subscriptions WHERE name = ?", (g.name,))
                    events.append(MailboxChanged(self.address, g.name))
                    events.append(MailboxChanged(self.address, n))
                fsync_dir(self.path)
                self._note_root_changed()
        self._emit(events)

    def _rename_inbox(self, dst: str) -> None:
        self.create_folder(dst)
        events: list[Event] = []
        with self._lock:
            inbox = self._synced(INBOX, events)
            target = self._synced(dst, events)
            rows = self._rows(inbox.id)
            moved: list[tuple[_Row, str]] = []
            for r in rows:
                name = file_name(r.base, r.subdir, r.info)
                try:
                    os.rename(inbox.path / r.subdir / name, target.path / r.subdir / name)
                except FileNotFoundError:
                    continue
                moved.append((r, r.subdir))
            for d in (inbox.path, target.path):
                fsync_dir(d / "new")
                fsync_dir(d / "cur")
            self._commit_moves(inbox, target, moved, events)
        self._emit(events)

    def subscriptions(self) -> list[str]:
        """Subscribed names, folders or not (RFC 3501 §6.3.6: deleting a folder keeps its name here)."""
        with self._lock:
            return sorted(self._subscribed_names())

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        """Subscribing needs a valid name, not an existing folder (as in Dovecot); unsubscribing a name
        that is neither subscribed nor a folder is NoSuchFolder."""
        canonical = normalize_folder(name)
        with self._lock, idx.transaction(self._db):
            if subscribed:
                self._db.execute("INSERT OR IGNORE INTO subscriptions (name) VALUES (?)", (canonical,))
                return
            gone = self._db.execute("DELETE FROM subscriptions WHERE name = ?", (canonical,)).rowcount
            if not gone and self._find_folder(canonical) is None:
                raise NoSuchFolder(f"Mailbox {canonical} does not exist")

    def status(self, folder: str) -> FolderStatus:
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            # Every change to the counted columns moves UIDNEXT or HIGHESTMODSEQ, except new/ -> cur/
            # moves, which bump _recent_version; so an unchanged key means unchanged counts and a
            # 100,000-message folder answers STATUS without scanning its rows each time.
            key = (f.id, f.name, f.uidvalidity, f.uidnext, f.highestmodseq, self._recent_version)
            cached = self._status_cache.get(f.id)
            if cached is not None and cached[0] == key:
                status = cached[1]
            else:
                count, size, seen, recent = self._db.execute(
                    "SELECT count(*), total(size), total(seen), total(subdir = 'new') FROM messages WHERE fid = ?",
                    (f.id,),
                ).fetchone()
                status = FolderStatus(name=f.name, uidvalidity=f.uidvalidity, uidnext=f.uidnext,
                                      highestmodseq=f.highestmodseq, messages=count, unseen=count - int(seen),
                                      recent=int(recent), size=int(size))
                self._status_cache[f.id] = (key, status)
        self._emit(events)
        return status

    # --- adding messages -----------------------------------------------------------------------------

    def append(self, folder: str, data: bytes, flags: Iterable[str] = (),
               internaldate: float | None = None, quota: int | None = None) -> tuple[int, int]:
        """RFC 3501 §6.3.11: durable (file and directory fsynced, index committed) before returning."""
        system, keywords = parse_flags(flags)
        canonical = normalize_folder(folder)
        disk = to_disk(data)
        size = wire_size(disk)
        with self._lock:
            f = self._folder(canonical)
            self._check_quota(quota, size)
        info = flags_to_info(system)
        subdir = "cur" if info else "new"
        base = self._names.make(len(disk), size)
        when = time.time() if internaldate is None else internaldate
        item = _Incoming(f.name, str(f.path), base, subdir, info, " ".join(sorted(keywords)), size, when,
                         summarize(disk))
        tmp = os.path.join(item.dirpath, "tmp", base)
        write_synced(tmp, disk, mtime=when)
        self.place(item, tmp, link=False)
        result = self._committer.run(item)
        if isinstance(result, StoreError):
            raise result
        return result

    def place(self, item: _Incoming, source: str, *, link: bool) -> None:
        """Moves (or hard-links) a synced tmp file into new/ or cur/, marked in flight until indexed."""
        dest = os.path.join(item.dirpath, item.subdir, file_name(item.base, item.subdir, item.info))
        key = (item.dirpath, item.base)
        with self._inflight_lock:
            self._inflight.add(key)
        try:
            if not link:
                os.rename(source, dest)
                return
            try:
                os.link(source, dest)
            except OSError:
                # Another file system, or links not allowed: a private copy, synced before it appears.
                tmp = os.path.join(item.dirpath, "tmp", f"{item.base}.copy")
                shutil.copyfile(source, tmp)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, dest)
        except BaseException:
            with self._inflight_lock:
                self._inflight.discard(key)
            raise

    def unplace(self, item: _Incoming) -> None:
        """Undoes place() when a multi-recipient delivery fails before anything was indexed."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(item.dirpath, item.subdir, file_name(item.base, item.subdir, item.info)))
        with self._inflight_lock:
            self._inflight.discard((item.dirpath, item.base))

    def incoming(self, folder: str, base: str, disk_len: int, size: int, summary: HeaderSummary,
                 when: float, quota: int | None) -> _Incoming:
        """Prepares a delivery into `folder` (created when missing), checking the quota."""
        if folder == INBOX and quota is None:
            # The delivery hot path: INBOX is the account directory itself and always exists, so
            # there is nothing to look up (the flush still checks the folder against the index).
            return _Incoming(INBOX, self._path_text, base, "new", "", "", size, when, summary)
        canonical = normalize_folder(folder)
        with self._lock:
            f = self._find_folder(canonical)
            if f is None:
                self.create_folder(canonical)
                f = self._folder(canonical)
            self._check_quota(quota, size)
        return _Incoming(f.name, str(f.path), base, "new", "", "", size, when, summary)

    def _flush(self, items: list[_Incoming]) -> list[tuple[int, int] | StoreError]:
        """Makes a whole batch durable with one fsync per directory and one durable index commit.

        The directory fsyncs run on the fsync pool while this thread commits the index, so the two
        reach the disk together: a caller waits for one round of syncing after its file's own fsync,
        not two.  Their order does not matter for safety: nobody returns before both are done, and a
        crash in between leaves either an index row without a durable name (the next resync expunges
        it; SMTP never said 250) or a durable file without a row (the next resync indexes it)."""
        events: list[Event] = []
        results: list[tuple[int, int] | StoreError] = []
        dirs = {os.path.join(i.dirpath, i.subdir) for i in items}
        pending: list[Callable[[], None]] = []
        try:
            if self._fsync_pool is not None:
                pending = [_in_background(self._fsync_pool, fsync_dir, d) for d in dirs]
            else:
                for d in dirs:
                    fsync_dir(d)
            folders: dict[str, _Folder | None] = {}
            with idx.transaction(self._commit_db) as db:
                indexed: dict[str, dict[str, int]] = {}
                for item in items:
                    if item.folder not in folders:
                        folders[item.folder] = g = self._find_folder(item.folder, db)
                        if g is not None:
                            bases = [i.base for i in items if i.folder == item.folder]
                            indexed[item.folder] = self._indexed_bases(db, g.id, bases)
                    f = folders[item.folder]
                    if f is None or str(f.path) != item.dirpath:
                        results.append(NoSuchFolder(f"Mailbox {item.folder} does not exist"))
                        continue
                    known = indexed[item.folder].get(item.base)
                    if known is not None:   # a rescan indexed it already
                        results.append((f.uidvalidity, known))
                        continue
                    f.highestmodseq += 1
                    uid = f.uidnext
                    f.uidnext += 1
                    self._insert_message(f.id, uid, item.base, item.subdir, item.info, item.keywords,
                                         f.highestmodseq, item.size, item.internaldate, item.summary, db)
                    results.append((f.uidvalidity, uid))
                    events.append(MessageStored(self.address, f.name, uid))
                for f in folders.values():
                    if f is not None:
                        db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                                   (f.uidnext, f.highestmodseq, f.id))
                        self._note_dir_changed(f, db)
        finally:
            for wait in pending:
                wait()
            with self._inflight_lock:
                for item in items:
                    self._inflight.discard((item.dirpath, item.base))
        self._emit(events)
        return results

    def _indexed_bases(self, db: sqlite3.Connection, fid: int, bases: list[str]) -> dict[str, int]:
        """base -> uid for files of a batch that a rescan indexed while they were in flight."""
        found: dict[str, int] = {}
        for n in range(0, len(bases), _SQL_CHUNK):
            chunk = bases[n:n + _SQL_CHUNK]
            rows = db.execute(
                f"SELECT base, uid FROM messages WHERE fid = ? AND base IN ({','.join('?' * len(chunk))})",
                (fid, *chunk),
            ).fetchall()
            found.update({base: uid for base, uid in rows})
        return found

    # --- reading -------------------------------------------------------------------------------------

    def messages(self, folder: str) -> list[MessageMeta]:
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = self._db.execute(
                "SELECT uid, info, keywords, modseq, size, internaldate FROM messages WHERE fid = ? ORDER BY uid",
                (f.id,),
            ).fetchall()
        self._emit(events)
        flags_of = self._flags_of
        return [MessageMeta(uid, flags_of(info, kw), modseq, size, idate)
                for uid, info, kw, modseq, size, idate in rows]

    def summaries(self, folder: str, offset: int = 0, limit: int | None = None,
                  sort: str = "date", descending: bool = True) -> list[MessageSummary]:
        column = SORT_COLUMNS.get(sort)
        if column is None:
            raise StoreError(f"Cannot sort by {sort!r}; use one of {', '.join(SORT_COLUMNS)}")
        direction = "DESC" if descending else "ASC"
        order = f"{column} {direction}" + ("" if column == "uid" else f", uid {direction}")
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = self._db.execute(
                "SELECT uid, info, keywords, size, internaldate, date, sender, subject, message_id, "
                f"in_reply_to, refs, has_attachments FROM messages WHERE fid = ? ORDER BY {order} "
                "LIMIT ? OFFSET ?",
                (f.id, -1 if limit is None else max(0, limit), max(0, offset)),
            ).fetchall()
            out = [
                MessageSummary(uid=r[0], flags=self._flags_of(r[1], r[2]), size=r[3], internaldate=r[4],
                               date=r[5], sender=r[6], subject=r[7], message_id=r[8], in_reply_to=r[9],
                               references=r[10], has_attachments=bool(r[11]))
                for r in rows
            ]
        self._emit(events)
        return out

    def changes_since(self, folder: str, modseq: int) -> Changes:
        """RFC 7162 §3.1.4.1 CHANGEDSINCE and §3.2.5.2 VANISHED: rows with a newer MODSEQ and expunges."""
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            changed = [
                self._meta(_Row(*r)) for r in self._db.execute(
                    f"SELECT {_ROW_COLS} FROM messages WHERE fid = ? AND modseq > ? ORDER BY uid", (f.id, modseq)
                ).fetchall()
            ]
            expunged = [r[0] for r in self._db.execute(
                "SELECT uid FROM expunged WHERE fid = ? AND modseq > ? ORDER BY uid", (f.id, modseq)
            ).fetchall()]
        self._emit(events)
        return Changes(highestmodseq=f.highestmodseq, changed=changed, expunged=expunged)

    def path_of(self, folder: str, uid: int) -> Path:
        """Where the message file is right now (for tools; it moves when its flags change)."""
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = self._rows(f.id, [uid])
            if not rows:
                raise NoSuchMessage(f"No message with UID {uid} in {f.name}")
            path = self._path(f, rows[0])
        self._emit(events)
        return path

    def read(self, folder: str, uid: int) -> bytes:
        """The message with CRLF line ends: exactly its RFC822.SIZE octets (RFC 3501 §6.4.5)."""
        for attempt in range(2):
            path = self.path_of(folder, uid)
            try:
                disk = path.read_bytes()
            except FileNotFoundError:
                if attempt:
                    break
                # Renamed by another program (flags) or removed: resync, then look again.
                events: list[Event] = []
                with self._lock:
                    f = self._folder(folder)
                    self._rescan(f, self._dir_mtimes(f), events)
                self._emit(events)
                continue
            return to_wire(disk)
        raise NoSuchMessage(f"Message {uid} in {folder} is gone")

    def read_many(self, folder: str, uids: Sequence[int]) -> Iterator[tuple[int, bytes | None]]:
        """(uid, message or None when gone) in the order asked: one index query for the whole batch
        (a FETCH of 10,000 bodies), files read outside the lock."""
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            paths = {r.uid: self._path(f, r) for r in self._rows(f.id, uids)}
        self._emit(events)
        for uid in uids:
            path = paths.get(uid)
            if path is None:
                yield uid, None
                continue
            try:
                yield uid, to_wire(path.read_bytes())
            except FileNotFoundError:
                try:
                    yield uid, self.read(folder, uid)   # renamed meanwhile: the slow path resyncs
                except StoreError:
                    yield uid, None

    def search_text(self, folder: str, text: str) -> list[int]:
        """Sender and subject from the index, then decoded text parts of each remaining message."""
        needle = text.casefold()
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = self._db.execute(
                "SELECT uid, base, subdir, info, sender, subject FROM messages WHERE fid = ? ORDER BY uid",
                (f.id,),
            ).fetchall()
        self._emit(events)
        found: list[int] = []
        for uid, base, subdir, info, sender, subject in rows:
            if needle in sender.casefold() or needle in subject.casefold():
                found.append(uid)
                continue
            try:
                disk = (f.path / subdir / file_name(base, subdir, info)).read_bytes()
            except FileNotFoundError:
                continue
            if needle in body_text(disk).casefold():
                found.append(uid)
        return found

    # --- flags ---------------------------------------------------------------------------------------

    def set_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str], mode: FlagMode,
                  unchanged_since: int | None = None) -> tuple[list[MessageMeta], list[int]]:
        """RFC 3501 §6.4.6 STORE with RFC 7162 §3.1.3 UNCHANGEDSINCE; system flags are renamed into
        the file name (new/ files move to cur/), keywords live in the index only."""
        if mode not in ("set", "add", "remove"):
            raise StoreError(f"Unknown flag mode {mode!r}")
        system, keywords = parse_flags(flags)
        events: list[Event] = []
        changed: list[MessageMeta] = []
        failed: list[int] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = self._rows(f.id, uids)
            updates: list[tuple[_Row, str, str, str]] = []
            for r in rows:
                if unchanged_since is not None and r.modseq > unchanged_since:
                    failed.append(r.uid)
                    continue
                old_sys = info_to_flags(r.info)
                old_kw = set(r.keywords.split())
                if mode == "set":
                    new_sys, new_kw = set(system), set(keywords)
                elif mode == "add":
                    new_sys, new_kw = old_sys | system, old_kw | keywords
                else:
                    new_sys, new_kw = old_sys - system, old_kw - keywords
                if new_sys == old_sys and new_kw == old_kw:
                    continue
                new_info = flags_to_info(new_sys, keep=r.info)
                new_sub = r.subdir if new_info == r.info else "cur"
                if (new_sub, new_info) != (r.subdir, r.info):
                    try:
                        os.rename(self._path(f, r), f.path / new_sub / file_name(r.base, new_sub, new_info))
                    except FileNotFoundError:
                        continue   # gone or renamed by another program; the next resync sorts it out
                updates.append((r, new_sub, new_info, " ".join(sorted(new_kw))))
            if updates:
                with idx.transaction(self._db):
                    # read under the write lock: a delivery committed from the group-commit connection
                    # (or the delivery agent) since _synced() has moved HIGHESTMODSEQ on, and a MODSEQ
                    # must never repeat or go back (RFC 7162 §3.1)
                    modseq = self._db.execute("SELECT highestmodseq FROM folders WHERE id = ?",
                                              (f.id,)).fetchone()[0] + 1
                    for r, sub, info, kw in updates:
                        self._db.execute(
                            "UPDATE messages SET subdir = ?, info = ?, keywords = ?, seen = ?, modseq = ? "
                            "WHERE fid = ? AND uid = ?",
                            (sub, info, kw, int("S" in info), modseq, f.id, r.uid),
                        )
                        changed.append(MessageMeta(uid=r.uid, flags=self._flags_of(info, kw), modseq=modseq,
                                                   size=r.size, internaldate=r.internaldate))
                    self._db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, f.id))
                    self._note_dir_changed(f)
                events.append(MailboxChanged(self.address, f.name))
        self._emit(events)
        return changed, failed

    def recent_uids(self, folder: str) -> set[int]:
        """Still in new/: recent for whoever claims them, and for every read-only look meanwhile."""
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            uids = {uid for (uid,) in self._db.execute(
                "SELECT uid FROM messages WHERE fid = ? AND subdir = 'new'", (f.id,))}
        self._emit(events)
        return uids

    def claim_recent(self, folder: str, upto: int | None = None) -> set[int]:
        """RFC 3501 §2.3.2 \\Recent: whoever moves a message from new/ to cur/ is the one session that
        sees it as recent.  Not a flag change, so no MODSEQ.  `upto`: only UIDs the caller already knows
        of, so mail arriving meanwhile stays recent for whoever announces it."""
        events: list[Event] = []
        claimed: set[int] = set()
        with self._lock:
            f = self._synced(folder, events)
            rows = [
                _Row(*r) for r in self._db.execute(
                    f"SELECT {_ROW_COLS} FROM messages WHERE fid = ? AND subdir = 'new' AND uid <= ? ORDER BY uid",
                    (f.id, upto if upto is not None else 2**62),
                ).fetchall()
            ]
            moved: list[int] = []
            for r in rows:
                try:
                    os.rename(self._path(f, r), f.path / "cur" / file_name(r.base, "cur", r.info))
                except FileNotFoundError:
                    continue
                moved.append(r.uid)
            if moved:
                with idx.transaction(self._db):
                    self._db.executemany("UPDATE messages SET subdir = 'cur' WHERE fid = ? AND uid = ?",
                                         [(f.id, uid) for uid in moved])
                    self._recent_version += 1
                    self._note_dir_changed(f)
                claimed.update(moved)
        self._emit(events)
        return claimed

    # --- copy, move, expunge -------------------------------------------------------------------------

    def copy(self, folder: str, uids: Sequence[int], target: str) -> tuple[int, list[tuple[int, int]]]:
        """RFC 3501 §6.4.7 with RFC 4315 COPYUID data: hard links under fresh names, new UIDs."""
        events: list[Event] = []
        with self._lock:
            src = self._synced(folder, events)
            dst = self._synced(target, events)
            copied: list[tuple[_Row, str, str, str]] = []
            for r in self._rows(src.id, uids):
                info = flags_to_info(info_to_flags(r.info))
                sub = "cur"          # see _RECENT_COPIES
                source = self._path(src, r)
                disk_len = disk_size_from_base(r.base)
                if disk_len is None:
                    try:
                        disk_len = source.stat().st_size
                    except FileNotFoundError:
                        continue
                base = self._names.make(disk_len, r.size)
                dest = dst.path / sub / file_name(base, sub, info)
                try:
                    _link_or_copy(source, dest, dst.path / "tmp" / base)
                except FileNotFoundError:
                    continue
                copied.append((r, base, sub, info))
            for sub in {c[2] for c in copied}:
                fsync_dir(dst.path / sub)
            pairs: list[tuple[int, int]] = []
            if copied:
                with idx.transaction(self._db, durable=True):
                    cur = self._find_folder(dst.name)
                    assert cur is not None
                    uid, modseq = cur.uidnext, cur.highestmodseq
                    for r, base, sub, info in copied:
                        modseq += 1
                        self._copy_row(src.id, r.uid, dst.id, uid, base, sub, info, modseq)
                        pairs.append((r.uid, uid))
                        events.append(MessageStored(self.address, dst.name, uid))
                        uid += 1
                    self._db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                                     (uid, modseq, dst.id))
                    self._note_dir_changed(dst)
        self._emit(events)
        return dst.uidvalidity, pairs

    def _copy_row(self, src_fid: int, src_uid: int, dst_fid: int, uid: int, base: str, sub: str, info: str,
                  modseq: int) -> None:
        self._db.execute(
            "INSERT INTO messages (fid, uid, base, subdir, info, keywords, seen, modseq, size, internaldate, "
            "date, sort_date, sender, subject, message_id, in_reply_to, refs, has_attachments) "
            "SELECT ?, ?, ?, ?, ?, keywords, ?, ?, size, internaldate, date, sort_date, sender, subject, "
            "message_id, in_reply_to, refs, has_attachments FROM messages WHERE fid = ? AND uid = ?",
            (dst_fid, uid, base, sub, info, int("S" in info), modseq, src_fid, src_uid),
        )
        # Same bytes, same ENVELOPE/BODYSTRUCTURE: carry the IMAP caches along.
        self._db.execute(
            "INSERT OR REPLACE INTO cache (fid, uid, key, value) SELECT ?, ?, key, value FROM cache "
            "WHERE fid = ? AND uid = ?", (dst_fid, uid, src_fid, src_uid),
        )

    def move(self, folder: str, uids: Sequence[int], target: str) -> tuple[int, list[tuple[int, int]]]:
        """RFC 6851 MOVE: one rename per file, then one transaction that expunges the sources and
        indexes the targets (a crash in between is repaired by the next resync of both folders)."""
        events: list[Event] = []
        with self._lock:
            src = self._synced(folder, events)
            dst = self._synced(target, events)
            moved: list[tuple[_Row, str]] = []
            for r in self._rows(src.id, uids):
                try:
                    _move_file(src.path / r.subdir / file_name(r.base, r.subdir, r.info),
                               dst.path / "cur" / file_name(r.base, "cur", r.info),     # see _RECENT_COPIES
                               dst.path / "tmp" / r.base)
                except FileNotFoundError:
                    continue
                moved.append((r, "cur"))
            if moved:
                fsync_dir(dst.path / "cur")
                for sub in {r.subdir for r, _ in moved}:
                    if (src.id, sub) != (dst.id, "cur"):
                        fsync_dir(src.path / sub)
            pairs = self._commit_moves(src, dst, moved, events)
        self._emit(events)
        return dst.uidvalidity, pairs

    def _commit_moves(self, src: _Folder, dst: _Folder, moved: list[tuple[_Row, str]],
                      events: list[Event]) -> list[tuple[int, int]]:
        pairs: list[tuple[int, int]] = []
        if not moved:
            return pairs
        with idx.transaction(self._db, durable=True):
            s = self._find_folder(src.name)
            assert s is not None
            expunge_modseq = s.highestmodseq + 1
            self._db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (expunge_modseq, src.id))
            # Read the rows to carry over before the source rows go away.
            carried = []
            for r, sub in moved:
                row = self._db.execute(
                    "SELECT keywords, date, sort_date, sender, subject, message_id, in_reply_to, refs, "
                    "has_attachments FROM messages WHERE fid = ? AND uid = ?", (src.id, r.uid)).fetchone()
                cache = self._db.execute("SELECT key, value FROM cache WHERE fid = ? AND uid = ?",
                                         (src.id, r.uid)).fetchall()
                carried.append((r, sub, row, cache))
            self._delete_rows(src.id, [r.uid for r, _ in moved], expunge_modseq)
            d = self._find_folder(dst.name)
            assert d is not None
            uid, modseq = d.uidnext, d.highestmodseq
            for r, sub, row, cache in carried:
                modseq += 1
                self._db.execute(
                    "INSERT INTO messages (fid, uid, base, subdir, info, keywords, seen, modseq, size, "
                    "internaldate, date, sort_date, sender, subject, message_id, in_reply_to, refs, "
                    "has_attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (dst.id, uid, r.base, sub, r.info, row[0], int("S" in r.info), modseq, r.size,
                     r.internaldate, *row[1:]),
                )
                self._db.executemany("INSERT INTO cache (fid, uid, key, value) VALUES (?, ?, ?, ?)",
                                     [(dst.id, uid, k, v) for k, v in cache])
                pairs.append((r.uid, uid))
                events.append(MessageStored(self.address, dst.name, uid))
                uid += 1
            self._db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                             (uid, modseq, dst.id))
            self._note_dir_changed(self._find_folder(src.name) or src)
            self._note_dir_changed(dst)
        events.append(MailboxChanged(self.address, src.name))
        return pairs

    def expunge(self, folder: str, uids: Iterable[int] | None = None) -> list[int]:
        """RFC 3501 §6.4.3 EXPUNGE / RFC 4315 UID EXPUNGE: only messages flagged \\Deleted."""
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            rows = [r for r in self._rows(f.id, uids) if "T" in r.info]
            gone = self._remove_rows(f, rows, events)
        self._emit(events)
        return gone

    def remove(self, folder: str, uids: Iterable[int]) -> list[int]:
        events: list[Event] = []
        with self._lock:
            f = self._synced(folder, events)
            gone = self._remove_rows(f, self._rows(f.id, uids), events)
        self._emit(events)
        return gone

    def _remove_rows(self, f: _Folder, rows: list[_Row], events: list[Event]) -> list[int]:
        """Files first, index second: a crash in between leaves an index row without a file, which the
        next resync turns into an expunge (the other order could resurrect a deleted message)."""
        if not rows:
            return []
        for r in rows:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(f, r))
        for sub in {r.subdir for r in rows}:
            fsync_dir(f.path / sub)
        uids = [r.uid for r in rows]
        with idx.transaction(self._db):
            cur = self._find_folder(f.name)
            assert cur is not None
            modseq = cur.highestmodseq + 1
            self._delete_rows(f.id, uids, modseq)
            self._db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, f.id))
            self._note_dir_changed(f)
        events.append(MailboxChanged(self.address, f.name))
        return uids

    # --- caches --------------------------------------------------------------------------------------

    def get_cached(self, folder: str, uid: int, key: str) -> str | None:
        with self._lock:
            f = self._folder(folder)
            row = self._db.execute("SELECT value FROM cache WHERE fid = ? AND uid = ? AND key = ?",
                                   (f.id, uid, key)).fetchone()
        return None if row is None else str(row[0])

    def set_cached(self, folder: str, uid: int, key: str, value: str) -> None:
        with self._lock:
            f = self._folder(folder)
            with idx.transaction(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO cache (fid, uid, key, value) SELECT ?, ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM messages WHERE fid = ? AND uid = ?)",
                    (f.id, uid, key, value, f.id, uid),
                )

    def get_cached_many(self, folder: str, uids: Sequence[int], key: str) -> dict[int, str]:
        out: dict[int, str] = {}
        wanted = sorted(set(uids))
        with self._lock:
            f = self._folder(folder)
            for i in range(0, len(wanted), _SQL_CHUNK):
                chunk = wanted[i:i + _SQL_CHUNK]
                rows = self._db.execute(
                    f"SELECT uid, value FROM cache WHERE fid = ? AND key = ? AND uid IN ({','.join('?' * len(chunk))})",
                    (f.id, key, *chunk),
                ).fetchall()
                out.update({int(uid): str(value) for uid, value in rows})
        return out

    def set_cached_many(self, folder: str, key: str, values: Iterable[tuple[int, str]]) -> None:
        """One transaction for a batch (cache values are rebuilt on loss, so no fsync is spent on them)."""
        items = list(values)
        if not items:
            return
        with self._lock:
            f = self._folder(folder)
            with idx.transaction(self._db):
                self._db.executemany(
                    "INSERT OR REPLACE INTO cache (fid, uid, key, value) SELECT ?, ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM messages WHERE fid = ? AND uid = ?)",
                    [(f.id, uid, key, value, f.id, uid) for uid, value in items],
                )

    def used_bytes(self) -> int:
        """Sum of RFC822.SIZE over all folders (what quotas count)."""
        with self._lock:
            return idx.used_bytes(self._db)


# --- file helpers ---------------------------------------------------------------------------------------


def _in_background(pool: Workers, fn: Callable[[str], None], arg: str) -> Callable[[], None]:
    """Starts `fn(arg)` on `pool`; the returned function waits for it and raises what it raised.

    A plain lock released by the job is all the waiting needs (no Future, no Condition)."""
    finished = threading.Lock()
    finished.acquire()
    error: list[BaseException] = []

    def job() -> None:
        try:
            fn(arg)
        except BaseException as exc:
            error.append(exc)
        finally:
            finished.release()

    try:
        pool.submit(job)
    except RuntimeError:          # the pool is shut down (the store is closing): do it here
        job()

    def wait() -> None:
        with finished:
            pass
        if error:
            raise error[0]

    return wait


def _arrival_key(base: str) -> tuple[int, str]:
    head = base.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, base)


def _describe_file(path: Path, base: str) -> tuple[int, float, HeaderSummary]:
    """(RFC822.SIZE, internaldate, summary) of a file found on disk; reads the whole file only when its
    name lacks W= (files from other programs)."""
    st = path.stat()
    size = wire_size_from_base(base)
    with open(path, "rb") as fh:
        if size is None:
            disk = fh.read()
            size = wire_size(disk)
            head = disk[:MAX_HEADER_BYTES]
        else:
            head = fh.read(MAX_HEADER_BYTES)
    return size, st.st_mtime, summarize(head)


def _link_or_copy(source: Path, dest: Path, tmp: Path) -> None:
    try:
        os.link(source, dest)
    except FileNotFoundError:
        raise
    except OSError:
        write_synced(tmp, source.read_bytes(), mtime=source.stat().st_mtime)
        os.rename(tmp, dest)


def _move_file(source: Path, dest: Path, tmp: Path) -> None:
    try:
        os.rename(source, dest)
    except FileNotFoundError:
        raise
    except OSError:
        _link_or_copy(source, dest, tmp)
        os.unlink(source)


def replace_file(tmp: Path, dest: Path, data: bytes) -> None:
    """Atomically replaces `dest` with `data` (write tmp, rename); not fsynced, see the caller."""
    tmp.write_bytes(data)
    os.replace(tmp, dest)
