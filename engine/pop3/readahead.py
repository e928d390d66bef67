"""Messages read from the store ahead of the client's RETR/TOP, in batches, off the event loop.

Every store call goes through a worker thread, and on a busy two-core machine the hop to the thread and
back costs more than reading a 20 KiB message.  POP3 clients fetch in order (RETR, or TOP n 99999999 as
fetchmail does), so after the first fetch the next messages are read in one thread call per batch while
the client is still busy with earlier ones; the hop is then paid once per batch instead of per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.interfaces import Mailbox, MessageMeta

INBOX = "INBOX"
BATCH_BYTES = 1024 * 1024     # at most this much message data per batch (and per session held ready)
BATCH_COUNT = 32              # and at most this many messages

Result = bytes | Exception     # the message (CRLF lines), or why it could not be read
RunBlocking = Callable[..., Awaitable[Any]]


def read_messages(mailbox: Mailbox, uids: Sequence[tuple[int, int]]) -> dict[int, Result]:
    """Runs in a worker thread: messages for (message number, uid) pairs; one failure spoils no other."""
    out: dict[int, Result] = {}
    for number, uid in uids:
        try:
            out[number] = mailbox.read(INBOX, uid)
        except Exception as exc:
            out[number] = exc
    return out


class ReadAhead:
    """The messages of one session that are read, or being read, before they are asked for."""

    def __init__(self, mailbox: Mailbox, messages: Sequence[MessageMeta], run_blocking: RunBlocking) -> None:
        self._mailbox = mailbox
        self._messages = messages
        self._run = run_blocking
        self._ready: dict[int, Result] = {}
        self._pending: tuple[frozenset[int], asyncio.Future[dict[int, Result]]] | None = None
        self._next = 1                       # the first message number not yet read or planned

    async def message(self, number: int, deleted: set[int]) -> bytes:
        """Message `number` (1-based) as `Mailbox.read` returns it; raises what the store raised."""
        result = self._ready.pop(number, None)
        if result is None and self._pending is not None and number in self._pending[0]:
            result = (await self._collect()).pop(number, None)
        if result is None:
            # Not the message the client was expected to want: start over from here.
            self.clear()
            meta = self._messages[number - 1]
            result = await self._run(self._mailbox.read, INBOX, meta.uid)
            self._next = number + 1
        for old in [n for n in self._ready if n < number]:
            del self._ready[old]
        self._plan(deleted)
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, bytes)
        return result

    async def _collect(self) -> dict[int, Result]:
        assert self._pending is not None
        future = self._pending[1]
        self._pending = None
        self._ready.update(await future)
        return self._ready

    def _plan(self, deleted: set[int]) -> None:
        """Starts the next batch once fewer than half a batch of replies wait ready."""
        if self._pending is not None or len(self._ready) >= BATCH_COUNT // 2:
            return
        batch: list[tuple[int, int]] = []
        size = 0
        number = self._next
        while number <= len(self._messages) and len(batch) < BATCH_COUNT:
            meta = self._messages[number - 1]
            if number not in deleted:
                # A big message is read only when asked for, never held in memory on speculation.
                if size + meta.size > BATCH_BYTES:
                    break
                batch.append((number, meta.uid))
                size += meta.size
            number += 1
        self._next = number
        if batch:
            future = asyncio.ensure_future(self._run(read_messages, self._mailbox, batch))
            self._pending = (frozenset(n for n, _ in batch), future)

    def clear(self) -> None:
        """Forgets everything read ahead (QUIT, a jump elsewhere, the end of the session)."""
        self._ready.clear()
        if self._pending is not None:
            future = self._pending[1]
            self._pending = None
            future.cancel()
            # A cancelled thread call still finishes; collect its outcome so nothing is reported.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
