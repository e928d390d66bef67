"""\\Recent for messages COPY and MOVE put into a mailbox (RFC 3501 §6.4.7: "the Recent flag SHOULD be set,
in the copy") and for APPENDs with a system flag, which the store cannot express: it keeps \\Recent as
"still in new/", Maildir allows only flagless files there, and the store files every copy and move in cur/
(so that no copy is claimed twice, once from new/ and once from here).  This process-wide ledger holds
such UIDs until the first session that selects (or is watching) the mailbox read-write claims them, just
as the store's new/ -> cur/ claim works for delivered mail.
Shared by every listener (imap and imaps) of one store (the store keeps one Mailbox object per account);
bounded; lost on restart, as \\Recent may be.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

MAX_FOLDERS = 1000          # mailboxes with unclaimed copies remembered at once (oldest forgotten first)
MAX_PER_FOLDER = 10000      # unclaimed UIDs remembered per mailbox

Key = tuple[int, str, int]     # (id of the account's Mailbox object, folder, UIDVALIDITY)


class RecentLedger:
    """Thread-safe: sessions run their store calls in worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: OrderedDict[Key, set[int]] = OrderedDict()

    def offer(self, key: Key, uids: Iterable[int]) -> None:
        """New UIDs in a mailbox that should be \\Recent for whoever sees them first."""
        with self._lock:
            pending = self._pending.pop(key, set())
            pending.update(uids)
            if len(pending) > MAX_PER_FOLDER:
                pending = set(sorted(pending)[-MAX_PER_FOLDER:])
            self._pending[key] = pending
            while len(self._pending) > MAX_FOLDERS:
                self._pending.popitem(last=False)

    def claim(self, key: Key, upto: int) -> set[int]:
        """The unclaimed UIDs up to `upto` (those the caller already knows of); nobody else gets them."""
        with self._lock:
            pending = self._pending.get(key)
            if not pending:
                return set()
            mine = {u for u in pending if u <= upto}
            pending -= mine
            if not pending:
                del self._pending[key]
            return mine

    def peek(self, key: Key, upto: int) -> set[int]:
        """What claim() would give, left in place: a read-only (EXAMINE) session sees these as \\Recent
        without taking them from the next read-write one (RFC 3501 §2.3.2)."""
        with self._lock:
            return {u for u in self._pending.get(key, ()) if u <= upto}

    def count(self, key: Key) -> int:
        with self._lock:
            return len(self._pending.get(key, ()))


LEDGER = RecentLedger()
