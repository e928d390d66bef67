"""Process-wide write locks, one per SQLite file, shared by the components that write `state.sqlite`.

Two connections of one process contending for SQLite's write lock do not queue: the loser's busy handler
sleeps (1, 2, 5 ... up to 100 ms) and tries again, which stalls whoever waits, often the event loop.
Taking this lock around every write transaction first makes in-process writers queue in order instead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


def write_lock(path: Path | str) -> threading.RLock:
    key = os.path.realpath(path)
    with _guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.RLock()
        return lock
