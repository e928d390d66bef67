"""Batched access to the Mailbox protocol for whole-mailbox FETCH and SEARCH (blocking; run in a thread).

The protocol's per-message calls (`read`, `get_cached`, `set_cached`) each take the account lock and query
the index; over 10,000 messages that overhead dominates.  A store may offer bulk variants
(`read_many`, `get_cached_many`, `set_cached_many`); these helpers use them when present and fall back to
the per-message calls otherwise, so the session never needs to know which it has.  A process-wide memory
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
