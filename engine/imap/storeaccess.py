"""Batched access to the Mailbox protocol for whole-mailbox FETCH and SEARCH (blocking; run in a thread).

The protocol's per-message calls (`read`, `get_cached`, `set_cached`) each take the account lock and query
the index; over 10,000 messages that overhead dominates.  engine.store offers bulk variants
(`read_many`, `get_cached_many`, `set_cached_many`); these helpers use them when present and fall back to
the per-message calls otherwise (a store that implements only the protocol still works).  A process-wide memory
cache of ENVELOPE/BODYSTRUCTURE text sits in front of the store's cache: both are pure functions of a
message's immutable bytes, keyed by (account, folder, UIDVALIDITY, UID).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from engine.interfaces import Mailbox, StoreError

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


def read_many(mb: Mailbox, folder: str, uids: Sequence[int]) -> Iterator[tuple[int, bytes | None]]:
    """(uid, bytes or None when the message is gone) in the order asked."""
    bulk: Any = getattr(mb, "read_many", None)
    if bulk is not None:
        yield from bulk(folder, uids)
        return
    for uid in uids:
        try:
            yield uid, mb.read(folder, uid)
        except StoreError:
            yield uid, None


class Loader:
    """`loader(uid) -> bytes` for SEARCH.  After `prefetch(uids)` (the messages a search will open, in
    order) it reads them in batches with `read_many`, so a body search over 10,000 messages costs 160 index
    look-ups, not 10,000."""

    BATCH = 32

    def __init__(self, mb: Mailbox, folder: str) -> None:
        self.mb = mb
        self.folder = folder
        self._order: list[int] = []
        self._pos: dict[int, int] = {}
        self._ready: dict[int, bytes | None] = {}

    def prefetch(self, uids: Sequence[int]) -> None:
        self._order = list(uids)
        self._pos = {u: i for i, u in enumerate(self._order)}
        self._ready.clear()

    def __call__(self, uid: int) -> bytes:
        if uid not in self._ready and uid in self._pos:
            i = self._pos[uid]
            self._ready = dict(read_many(self.mb, self.folder, self._order[i:i + self.BATCH]))
        data = self._ready.pop(uid, None)
        if data is None:
            return self.mb.read(self.folder, uid)
        return data


def get_cached_many(mb: Mailbox, folder: str, uids: Sequence[int], key: str) -> dict[int, str]:
    bulk: Any = getattr(mb, "get_cached_many", None)
    if bulk is not None:
        return dict(bulk(folder, uids, key))
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
