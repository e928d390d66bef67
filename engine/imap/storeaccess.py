"""Batched access to the Mailbox protocol for whole-mailbox FETCH and SEARCH (blocking; run in a thread).

The protocol's per-message calls (`read`, `get_cached`, `set_cached`) each take the account lock and query
the index; over 10,000 messages that overhead dominates.  A store may offer bulk variants
(`read_many`, `get_cached_many`, `set_cached_many`); these helpers use them when present and fall back to
the per-message calls otherwise, so the session never needs to know which it has.  A process-wide memory
cache of ENVELOPE/BODYSTRUCTURE text sits in front of the store's cache: both are pure functions of a
message's immutable bytes, keyed by (account, folder, UIDVALIDITY, UID).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.interfaces import Mailbox, StoreError

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, int, int, str]


class MemoryCache:
    """Bounded by total size; oldest entries leave first.  Thread-safe."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._data: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: CacheKey) -> bytes | None:
        return self._data.get(key)

    def put(self, key: CacheKey, value: bytes) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes and self._data:
                _k, v = self._data.popitem(last=False)
                self._size -= len(v)

    def __len__(self) -> int:
        return len(self._data)


MEMORY = MemoryCache()


class IndexReader:
    """Read-only look-ups in engine.store's index.sqlite for whole batches (one query, not one per message).

    A stopgap until the Mailbox protocol has `read_many`/`get_cached_many`: it knows the store's schema
    (folders.name/dirname/id, messages.uid/base/subdir/info, cache.key/value), checks it once, and any
    surprise (another schema, an SQLite error, a file renamed since the query) falls back to the
    protocol's own per-message calls, which stay the source of truth.  It never writes.
    """

    def __init__(self, account_dir: Path) -> None:
        self.account_dir = account_dir
        self.db_path = account_dir / "index.sqlite"
        self._local = threading.local()
        self.usable = self._check()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
            self._local.db = db
        return db

    def _check(self) -> bool:
        try:
            db = self._db()
            cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
            fcols = {r[1] for r in db.execute("PRAGMA table_info(folders)")}
            ccols = {r[1] for r in db.execute("PRAGMA table_info(cache)")}
        except sqlite3.Error:
            return False
        return ({"fid", "uid", "base", "subdir", "info"} <= cols and {"id", "name", "dirname"} <= fcols
                and {"fid", "uid", "key", "value"} <= ccols)

    def _folder(self, db: sqlite3.Connection, folder: str) -> tuple[int, str] | None:
        row = db.execute("SELECT id, dirname FROM folders WHERE name = ?", (folder,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def paths(self, folder: str, uids: Sequence[int]) -> dict[int, Path]:
        from engine.store.maildir import file_name
        db = self._db()
        found = self._folder(db, folder)
        if found is None:
            return {}
        fid, dirname = found
        base_dir = self.account_dir / dirname if dirname else self.account_dir
        out: dict[int, Path] = {}
        for i in range(0, len(uids), 500):
            chunk = list(uids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for uid, base, subdir, info in db.execute(
                    f"SELECT uid, base, subdir, info FROM messages WHERE fid = ? AND uid IN ({marks})",
                    (fid, *chunk)):
                out[int(uid)] = base_dir / subdir / file_name(base, subdir, info)
        return out

    def cached(self, folder: str, uids: Sequence[int], key: str) -> dict[int, str]:
        db = self._db()
        found = self._folder(db, folder)
        if found is None:
            return {}
        out: dict[int, str] = {}
        for i in range(0, len(uids), 500):
            chunk = list(uids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for uid, value in db.execute(
                    f"SELECT uid, value FROM cache WHERE fid = ? AND key = ? AND uid IN ({marks})",
                    (found[0], key, *chunk)):
                out[int(uid)] = str(value)
        return out


_READERS: dict[str, IndexReader | None] = {}
_READERS_LOCK = threading.Lock()


def index_reader(mb: Mailbox) -> IndexReader | None:
    path: Any = getattr(mb, "path", None)
    if not isinstance(path, Path):
        return None
    try:
        inode = (path / "index.sqlite").stat().st_ino
    except OSError:
        return None
    key = f"{path}\0{inode}"            # a rebuilt index is a new file: a new reader
    with _READERS_LOCK:
        if key not in _READERS:
            if len(_READERS) > 256:
                _READERS.clear()
            reader = IndexReader(path)
            _READERS[key] = reader if reader.usable else None
            if not reader.usable:
                log.info("index of %s not readable in bulk; using per-message store calls", path)
        return _READERS[key]


def read_many(mb: Mailbox, folder: str, uids: Sequence[int]) -> Iterator[tuple[int, bytes | None]]:
    """(uid, bytes or None when the message is gone) in the order asked."""
    bulk: Any = getattr(mb, "read_many", None)
    if bulk is not None:
        yield from bulk(folder, uids)
        return
    # No resync first: message files are immutable, so a stale index can only point at a file that has
    # been renamed or removed since, and then the store's own read (which resyncs) is asked instead.
    paths: dict[int, Path] = {}
    reader = index_reader(mb)
    if reader is not None:
        try:
            paths = reader.paths(folder, uids)
        except sqlite3.Error:
            paths = {}
    if paths:
        from engine.store.maildir import to_wire
    for uid in uids:
        path = paths.get(uid)
        if path is not None:
            try:
                yield uid, to_wire(path.read_bytes())
                continue
            except OSError:
                pass                     # renamed (flags) or removed since the query: ask the store
        try:
            yield uid, mb.read(folder, uid)
        except StoreError:
            yield uid, None


class Loader:
    """`loader(uid) -> bytes` for SEARCH: the first call resolves every candidate's file in one index query,
    later calls just read files; anything unexpected falls back to `Mailbox.read`."""

    def __init__(self, mb: Mailbox, folder: str, uids: Sequence[int]) -> None:
        self.mb = mb
        self.folder = folder
        self.uids = uids
        self._paths: dict[int, Path] | None = None

    def __call__(self, uid: int) -> bytes:
        if self._paths is None:
            self._paths = {}
            reader = index_reader(self.mb)
            if reader is not None:
                try:
                    self._paths = reader.paths(self.folder, self.uids)
                except sqlite3.Error:
                    self._paths = {}
        path = self._paths.get(uid)
        if path is not None:
            from engine.store.maildir import to_wire
            try:
                return to_wire(path.read_bytes())
            except OSError:
                pass
        return self.mb.read(self.folder, uid)


def get_cached_many(mb: Mailbox, folder: str, uids: Sequence[int], key: str) -> dict[int, str]:
    bulk: Any = getattr(mb, "get_cached_many", None)
    if bulk is not None:
        return dict(bulk(folder, uids, key))
    reader = index_reader(mb)
    if reader is not None and len(uids) > 1:
        try:
            return reader.cached(folder, uids, key)
        except sqlite3.Error:
            pass
    out: dict[int, str] = {}
    for uid in uids:
        try:
            value = mb.get_cached(folder, uid, key)
        except StoreError:
            continue
        if value is not None:
            out[uid] = value
    return out


def set_cached_many(mb: Mailbox, folder: str, key: str, values: Iterable[tuple[int, str]]) -> None:
    items = list(values)
    if not items:
        return
    bulk: Any = getattr(mb, "set_cached_many", None)
    if bulk is not None:
        bulk(folder, key, items)
        return
    for uid, value in items:
        try:
            mb.set_cached(folder, uid, key, value)
        except StoreError:
            continue
