"""MailStore: the accounts under the mail root and durable local delivery (engine.interfaces.MailStoreAPI).

Delivery is the SMTP hot path: the message is written and fsynced once, renamed (or, for several
recipients, hard-linked) into new/, and indexed through each account's group commit, all on a private
thread pool so the engine loop never blocks on a disk; results come back to the loop in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from engine.interfaces import DEFAULT_FOLDERS, StoreError
from engine.store.agent import DeliveryAgent
from engine.store.groupcommit import Done, Waiter
from engine.store.mailbox import AccountMailbox, Notify, _Incoming
from engine.store.maildir import (
    NameMaker,
    finish_synced,
    make_maildir,
    to_disk,
    wire_size,
    write_synced,
    write_unsynced,
)
from engine.store.names import account_parts, folder_dirname
from engine.store.summary import summarize
from engine.store.workers import Workers

log = logging.getLogger(__name__)

Quota = int | Mapping[str, int | None] | None
# Files a delivery batch keeps open between writing and fsyncing them.
BATCH_FILES = 128


class MailStore:
    """`<root>/<domain>/<user>/` Maildir++ per account, each with its own index.sqlite."""

    def __init__(self, root: Path | str, notify: Notify | None = None, hostname: str | None = None,
                 *, max_workers: int = 32) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._notify = notify
        self._names = NameMaker(hostname or socket.gethostname())
        self._lock = threading.Lock()
        self._boxes: dict[str, AccountMailbox] = {}
        self._opening: dict[str, threading.Lock] = {}
        # Deliveries block in fsync; many cheap threads let the files of concurrent SMTP sessions reach
        # the disk together and join the same group commit instead of queueing behind each other.
        self._executor = Workers(max_workers, "postroom-store")
        # Only ever runs fsync(2) on directories and never waits for anything else, so the commit
        # leaders that wait on it cannot deadlock however busy the delivery pool is.
        self._fsync_pool = Workers(4, "postroom-fsync")
        # Group-commit flushes handed off by a thread that has its own work to do.  Not the delivery
        # pool: its threads may all be blocked in deliver_sync() waiting for exactly these flushes.
        # Flushing waits only for the fsync pool and SQLite, so this pool always makes progress.
        self._commit_pool = Workers(4, "postroom-commit")
        self._keys: dict[str, str] = {}      # address as given -> "user@domain" (see _account_key)
        self._notifiers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopNotifier] = (
            weakref.WeakKeyDictionary())
        self._agent: DeliveryAgent | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Waits for deliveries in progress, then closes every index."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=True)
        self._commit_pool.shutdown(wait=True)
        self._fsync_pool.shutdown(wait=True)
        with self._lock:
            boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            box.close()

    def attach_agent(self, agent: DeliveryAgent | None) -> None:
        """From now on deliver() on the agent's loop goes through the agent process (None: all in here)."""
        self._agent = agent

    def __enter__(self) -> MailStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- accounts ------------------------------------------------------------------------------------

    def account_path(self, address: str) -> Path:
        domain, user = account_parts(address)
        return self.root / domain / user

    def has_account(self, address: str) -> bool:
        return (self.account_path(address) / "cur").is_dir()

    def create_account(self, address: str) -> None:
        """Idempotent: the Maildir++ with INBOX and the special-use folders (RFC 6154), and its index."""
        path = self.account_path(address)
        make_maildir(path, folder=False)
        for name in DEFAULT_FOLDERS:
            make_maildir(path / folder_dirname(name), folder=True)
        self.mailbox(address)

    def remove_account(self, address: str, delete_files: bool = False) -> None:
        key = "@".join(reversed(account_parts(address)))
        with self._lock:
            box = self._boxes.pop(key, None)
        if box is not None:
            box.close()
        if self._agent is not None:
            self._agent.forget(key)
        if delete_files:
            path = self.account_path(address)
            if path.exists():
                doomed = path.with_name(f".{path.name}.deleted-{time.time_ns()}")
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)

    def mailbox(self, address: str) -> AccountMailbox:
        """The account's mailbox, creating its Maildir when missing (the directory decides who exists)."""
        domain, user = account_parts(address)
        key = f"{user}@{domain}"
        with self._lock:
            if self._closed:
                raise StoreError("The mail store is closed")
            if len(self._keys) >= 10_000:
                self._keys.clear()
            self._keys[address] = key       # lets deliver() find this account without re-parsing
            box = self._boxes.get(key)
            if box is not None:
                return box
            opening = self._opening.setdefault(key, threading.Lock())
        # Opening may rebuild a large index; do it outside the store-wide lock so deliveries to
        # other accounts carry on, and under a per-account lock so it happens once.
        with opening:
            with self._lock:
                box = self._boxes.get(key)
            if box is not None:
                return box
            path = self.root / domain / user
            fresh = not path.exists()
            box = AccountMailbox(key, path, self._names, self._notify, self._fsync_pool,
                                 handoff=self._commit_pool.submit)
            if fresh:
                for name, special in DEFAULT_FOLDERS.items():
                    with contextlib.suppress(StoreError):
                        box.create_folder(name, special)
            with self._lock:
                self._opening.pop(key, None)
                if self._closed:
                    box.close()
                    raise StoreError("The mail store is closed")
                self._boxes[key] = box
        return box

    # --- delivery ------------------------------------------------------------------------------------

    async def deliver(self, addresses: Sequence[str], data: bytes, folder: str = "INBOX",
                      *, quota: Quota = None) -> dict[str, int]:
        """Durable delivery to several accounts: returns only once every copy is fsynced and indexed.

        One job on the store's threads writes, fsyncs and places the file, then queues it for each
        account's group commit and is free again; whoever flushes the batch hands the results back to
        this loop, many per wakeup.  The work runs to completion even if the awaiting task is cancelled,
        so a dropped SMTP connection never leaves a half-indexed message."""
        loop = asyncio.get_running_loop()
        agent = self._agent
        if agent is not None and agent.loop is loop:
            # The agent's threads do the disk work without waiting for this process's GIL behind the
            # SMTP sessions (measured: every delivery there beats keeping lone ones here).
            return await agent.deliver(addresses, data, folder, quota)
        return await self._deliver_here(loop, addresses, data, folder, quota)

    async def _deliver_here(self, loop: asyncio.AbstractEventLoop, addresses: Sequence[str], data: bytes,
                            folder: str, quota: Quota) -> dict[str, int]:
        accounts = self._open_accounts(addresses)
        if accounts is None:
            # An account to open first, which may rebuild its index from disk: the whole delivery is
            # then one blocking job (rare: the first delivery to an account since the engine started).
            return await self._off_loop(
                loop, functools.partial(self.deliver_sync, addresses, data, folder, quota=quota))
        boxes, given = accounts
        if not boxes:
            return {}
        notifier = self._notifier(loop)
        futures: dict[str, asyncio.Future[_Result]] = {}
        dones: dict[str, Done[_Result]] = {}
        for account in boxes:
            fut: asyncio.Future[_Result] = loop.create_future()
            futures[account] = fut
            dones[account] = functools.partial(notifier.post, fut)
        try:
            self._executor.submit(functools.partial(self._store, boxes, given, data, folder, quota, dones))
        except RuntimeError as exc:
            raise StoreError("The mail store is closed") from exc
        if len(futures) == 1:
            ((account, fut),) = futures.items()
            return self._answer({account: await fut}, given)
        outcomes = await asyncio.gather(*futures.values(), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return self._answer(dict(zip(futures, outcomes, strict=True)), given)  # type: ignore[arg-type]

    def deliver_sync(self, addresses: Sequence[str], data: bytes, folder: str = "INBOX",
                     *, quota: Quota = None) -> dict[str, int]:
        """deliver() for a caller on its own thread: blocks until every copy is fsynced and indexed."""
        boxes, given = self._accounts(addresses)
        if not boxes:
            return {}
        waiters: dict[str, Waiter[_Result]] = {account: Waiter() for account in boxes}
        self._store(boxes, given, data, folder, quota, dict(waiters))
        return self._answer({account: w.wait() for account, w in waiters.items()}, given)

    def deliver_batch(self, requests: Sequence[DeliveryRequest]) -> list[dict[str, int] | Exception]:
        """Several deliveries from one thread, for the delivery agent (engine/store/agent.py), which has
        no other work and no GIL to share.

        Every file of the batch is written before the first fsync, so one journal commit carries most
        of them; each is fsynced before it is renamed into new/, as deliver() does; then every account
        commits its share once (one directory fsync, one durable index transaction).  The outcome of
        each request is its UIDs, or the exception deliver() would have raised for it."""
        outcomes: list[dict[str, int] | Exception | None] = [None] * len(requests)
        answers: list[tuple[Mapping[str, str], dict[str, _Result]]] = [({}, {}) for _ in requests]
        shares: dict[str, tuple[AccountMailbox, list[tuple[int, _Incoming]]]] = {}
        for first in range(0, len(requests), BATCH_FILES):
            written: list[tuple[int, list[tuple[AccountMailbox, _Incoming]], str, int]] = []
            for n in range(first, min(first + BATCH_FILES, len(requests))):
                addresses, data, folder, quota = requests[n]
                try:
                    boxes, given = self._accounts(addresses)
                    answers[n] = (given, {})
                    if not boxes:
                        continue
                    items, tmp, disk, when = self._prepare(boxes, given, data, folder, quota)
                    written.append((n, items, tmp, write_unsynced(tmp, disk, mtime=when)))
                except Exception as exc:
                    outcomes[n] = exc
            for n, items, tmp, fd in written:
                try:          # each step removes the tmp/ file when it fails
                    finish_synced(fd, tmp)
                    placed = self._place(items, tmp)
                except Exception as exc:
                    outcomes[n] = exc
                    continue
                for box, item in placed:
                    shares.setdefault(box.address, (box, []))[1].append((n, item))
        for account, (box, share) in shares.items():
            try:
                flushed: list[_Result] = list(box._flush([item for _, item in share]))
            except Exception as exc:   # the files are in new/: the next resync indexes them
                flushed = [StoreError(f"Could not index the message: {exc}")] * len(share)
            for (n, _), result in zip(share, flushed, strict=True):
                answers[n][1][account] = result
        for n, (spelled, by_account) in enumerate(answers):
            if outcomes[n] is None:
                try:
                    outcomes[n] = self._answer(by_account, spelled)
                except StoreError as exc:
                    outcomes[n] = exc
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _answer(results: Mapping[str, _Result], given: Mapping[str, str]) -> dict[str, int]:
        """UIDs keyed by the addresses as the caller spelled them, or the first account's failure."""
        for result in results.values():
            if isinstance(result, StoreError):
                raise result
        return {address: results[account][1] for address, account in given.items()}  # type: ignore[index]

    def _open_accounts(self, addresses: Sequence[str]) -> _Accounts | None:
        """_accounts() without touching the disk, or None when an account still has to be opened."""
        boxes: dict[str, AccountMailbox] = {}
        given: dict[str, str] = {}
        with self._lock:
            if self._closed:
                raise StoreError("The mail store is closed")
            for address in addresses:
                key = self._keys.get(address)
                if key is None:
                    return None       # _accounts() checks the address and remembers its key
                box = self._boxes.get(key)
                if box is None:
                    return None
                boxes.setdefault(box.address, box)
                given[address] = box.address
        return boxes, given

    def _accounts(self, addresses: Sequence[str]) -> _Accounts:
        """(account -> mailbox, address as the caller spelled it -> account), opening what is needed."""
        boxes: dict[str, AccountMailbox] = {}
        given: dict[str, str] = {}
        for address in addresses:
            box = self.mailbox(address)
            boxes.setdefault(box.address, box)
            given[address] = box.address
        return boxes, given

    async def _off_loop(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], _T]) -> _T:
        """fn() on the store's threads, awaited; it runs to its end even if the awaiting task is cancelled."""
        future: asyncio.Future[_T] = loop.create_future()

        def settle(result: _T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, None, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                loop.call_soon_threadsafe(settle, result, None)

        try:
            self._executor.submit(job)
        except RuntimeError as exc:   # shut down by close()
            raise StoreError("The mail store is closed") from exc
        return await future

    def _notifier(self, loop: asyncio.AbstractEventLoop) -> _LoopNotifier:
        with self._lock:
            notifier = self._notifiers.get(loop)
            if notifier is None:
                notifier = self._notifiers[loop] = _LoopNotifier(loop)
            return notifier

    def _store(self, boxes: Mapping[str, AccountMailbox], given: Mapping[str, str], data: bytes, folder: str,
               quota: Quota, dones: Mapping[str, Done[_Result]]) -> None:
        """On a store thread: write once, place in every account, queue each for its group commit.

        Every `done` is called exactly once: with the account's (UIDVALIDITY, UID) or StoreError after
        its flush, or with the error that stopped the delivery before anything was indexed."""
        try:
            placed = self._write_and_place(boxes, given, data, folder, quota)
        except BaseException as exc:
            for done in dones.values():
                done(None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        # Queue everywhere first, then flush: batches of different accounts flush in parallel.
        leading = [box for box, item in placed if box._committer.enqueue(item, dones[box.address])]
        for box in leading[1:]:
            try:
                self._commit_pool.submit(box._committer.drain)
            except RuntimeError:     # shutting down: flush here instead
                box._committer.drain()
        if leading:
            leading[0]._committer.drain()

    def _write_and_place(self, boxes: Mapping[str, AccountMailbox], given: Mapping[str, str], data: bytes,
                         folder: str, quota: Quota) -> list[tuple[AccountMailbox, _Incoming]]:
        """Quota checks, then the file: written and fsynced in tmp/, then renamed (one account) or
        hard-linked (several) into new/; nothing is left behind when a step fails."""
        items, tmp, disk, when = self._prepare(boxes, given, data, folder, quota)
        write_synced(tmp, disk, mtime=when)
        return self._place(items, tmp)

    def _prepare(self, boxes: Mapping[str, AccountMailbox], given: Mapping[str, str], data: bytes, folder: str,
                 quota: Quota) -> tuple[list[tuple[AccountMailbox, _Incoming]], str, bytes, float]:
        """(each account's incoming item, the tmp/ path, the bytes to write, the arrival time), after the
        quota checks; nothing is written yet."""
        disk = to_disk(data)
        size = wire_size(disk)
        summary = summarize(disk)
        when = time.time()
        base = self._names.make(len(disk), size)
        items: list[tuple[AccountMailbox, _Incoming]] = []
        for address, box in boxes.items():
            if isinstance(quota, Mapping):
                spellings = [a for a, account in given.items() if account == address and a in quota]
                limit = quota[spellings[0]] if spellings else quota.get(address)
            else:
                limit = quota
            items.append((box, box.incoming(folder, base, len(disk), size, summary, when, limit)))
        return items, os.path.join(items[0][1].dirpath, "tmp", base), disk, when

    @staticmethod
    def _place(items: list[tuple[AccountMailbox, _Incoming]], tmp: str) -> list[tuple[AccountMailbox, _Incoming]]:
        """Moves the synced tmp/ file into new/ (or links it into every account's new/)."""
        if len(items) == 1:
            box, item = items[0]
            try:
                box.place(item, tmp, link=False)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return items
        placed: list[tuple[AccountMailbox, _Incoming]] = []
        try:
            for box, item in items:
                box.place(item, tmp, link=True)
                placed.append((box, item))
        except BaseException:
            for box, item in placed:
                box.unplace(item)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return placed


_T = TypeVar("_T")
_Result = tuple[int, int] | StoreError
# (addresses, message, folder, quota) as deliver() takes them.
DeliveryRequest = tuple[Sequence[str], bytes, str, Quota]
_Accounts = tuple[dict[str, AccountMailbox], dict[str, str]]


class _LoopNotifier:
    """Hands delivery results from store threads to one event loop: a flush finishing twenty deliveries
    wakes the loop once, not twenty times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Future[_Result], _Result | None, BaseException | None]] = []
        self._scheduled = False

    def post(self, future: asyncio.Future[_Result], result: _Result | None, error: BaseException | None) -> None:
        """Thread-safe: sets the future's outcome on its loop soon."""
        with self._lock:
            self._pending.append((future, result, error))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:      # the loop is closed: nobody is waiting for these any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
        for future, result, error in pending:
            if future.done():          # the awaiting task was cancelled; the delivery went on anyway
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]
