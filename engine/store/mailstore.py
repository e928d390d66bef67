"""MailStore: the accounts under the mail root and durable local delivery (engine.interfaces.MailStoreAPI).

Delivery is the SMTP hot path: the message is written and fsynced once, hard-linked into every
recipient's new/, and indexed through each account's group commit, all on a private thread pool so
the engine loop never blocks on a disk.
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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from engine.interfaces import DEFAULT_FOLDERS, StoreError
from engine.store.mailbox import AccountMailbox, Notify, _Incoming
from engine.store.maildir import NameMaker, make_maildir, to_disk, wire_size, write_synced
from engine.store.names import account_parts, folder_dirname
from engine.store.summary import summarize

log = logging.getLogger(__name__)

Quota = int | Mapping[str, int | None] | None


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
        # Deliveries block in fsync and in group-commit waits; many cheap threads let concurrent SMTP
        # sessions join the same flush instead of queueing behind each other.
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="postroom-store")
        # Only ever runs fsync(2) on directories and never waits for anything else, so the commit
        # leaders that wait on it cannot deadlock however busy the delivery pool is.
        self._fsync_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="postroom-fsync")
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Waits for deliveries in progress, then closes every index."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=True)
        self._fsync_pool.shutdown(wait=True)
        with self._lock:
            boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            box.close()

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
            box = AccountMailbox(key, path, self._names, self._notify, self._fsync_pool)
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

        Runs to completion on the store's threads even if the awaiting task is cancelled, so a dropped
        SMTP connection never leaves a half-indexed message."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self.deliver_sync, addresses, data, folder, quota=quota)
        try:
            future = loop.run_in_executor(self._executor, job)
        except RuntimeError as exc:   # executor shut down by close()
            raise StoreError("The mail store is closed") from exc
        return await asyncio.shield(future)

    def deliver_sync(self, addresses: Sequence[str], data: bytes, folder: str = "INBOX",
                     *, quota: Quota = None) -> dict[str, int]:
        """The blocking half of deliver(): write once, link everywhere, group-commit per account."""
        boxes: dict[str, AccountMailbox] = {}
        given: dict[str, str] = {}   # address as the caller spelled it -> account
        for address in addresses:
            box = self.mailbox(address)
            boxes.setdefault(box.address, box)
            given[address] = box.address
        if not boxes:
            return {}
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
        first = items[0][1]
        tmp = first.dirpath / "tmp" / base
        write_synced(tmp, disk, mtime=when)
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
        # Enqueue everywhere first, then wait: batches of different accounts flush in parallel.
        slots = [(box, item, box._committer.enqueue(item)) for box, item in placed]
        uids: dict[str, int] = {}
        errors: list[StoreError] = []
        for box, _item, slot in slots:
            result = box._committer.wait(slot)
            if isinstance(result, StoreError):
                errors.append(result)
            else:
                uids[box.address] = result[1]
        if errors:
            raise errors[0]
        return {address: uids[account] for address, account in given.items()}
