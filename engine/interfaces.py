"""The seams between protocol servers and the stores, as typing.Protocols and the values that cross them.

SMTP, IMAP, POP3, the queue, the CLI and the desktop all talk to mail and accounts only through these.
The store methods are synchronous and thread-safe (they do file and SQLite I/O); protocol code on the
engine loop calls the slow ones through `asyncio.to_thread` so a big FETCH never stalls another session.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

# IMAP system flags (RFC 3501 §2.3.2).  \Recent is per session and never stored.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
RECENT = "\\Recent"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

# Special-use attributes (RFC 6154) of the folders every account is created with.
DEFAULT_FOLDERS: dict[str, str] = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

FlagMode = Literal["set", "add", "remove"]


class StoreError(Exception):
    """A store operation that cannot be done; str() is a sentence fit for a protocol NO reply."""


class NoSuchFolder(StoreError):
    pass


class FolderExists(StoreError):
    pass


class QuotaExceeded(StoreError):
    pass


@dataclass(frozen=True)
class MessageMeta:
    """What the index knows of one message without opening its file."""

    uid: int
    flags: frozenset[str]
    modseq: int
    size: int                 # RFC822.SIZE: octets as served, with CRLF line ends
    internaldate: float       # seconds since the epoch, UTC


@dataclass(frozen=True)
class MessageSummary:
    """Header fields cached at delivery for list views (the desktop viewer sorts 100,000 of these)."""

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    date: float | None        # parsed Date: header, None when missing or unparseable
    sender: str               # decoded From: as shown to a person
    subject: str              # decoded Subject:
    message_id: str
    in_reply_to: str
    references: str
    has_attachments: bool


@dataclass(frozen=True)
class FolderInfo:
    name: str                 # IMAP name with "/" as hierarchy separator; "INBOX" for the inbox
    special_use: str | None   # "\\Sent", ... or None
    subscribed: bool


@dataclass(frozen=True)
class FolderStatus:
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    recent: int               # messages still in new/ (not yet claimed by any session)
    size: int                 # sum of RFC822.SIZE


@dataclass(frozen=True)
class Changes:
    """What changed in a folder after a given MODSEQ: the basis of IDLE, NOOP and CONDSTORE/QRESYNC."""

    highestmodseq: int
    changed: Sequence[MessageMeta]    # added or flag-changed, ascending UID
    expunged: Sequence[int]           # UIDs expunged after the given MODSEQ, ascending


class Mailbox(Protocol):
    """One account's folders and messages (Maildir++ plus index.sqlite)."""

    address: str

    # folders
    def folders(self) -> list[FolderInfo]: ...
    def create_folder(self, name: str, special_use: str | None = None) -> None: ...
    def delete_folder(self, name: str) -> None: ...
    def rename_folder(self, old: str, new: str) -> None: ...
    def subscriptions(self) -> list[str]: ...
    def set_subscribed(self, name: str, subscribed: bool) -> None: ...
    def status(self, folder: str) -> FolderStatus: ...

    # messages
    def append(self, folder: str, data: bytes, flags: Iterable[str] = (),
               internaldate: float | None = None) -> tuple[int, int]:
        """Stores durably (fsynced) before returning (uidvalidity, uid)."""
        ...

    def messages(self, folder: str) -> list[MessageMeta]: ...
    def summaries(self, folder: str, offset: int = 0, limit: int | None = None,
                  sort: str = "date", descending: bool = True) -> list[MessageSummary]: ...
    def changes_since(self, folder: str, modseq: int) -> Changes: ...
    def read(self, folder: str, uid: int) -> bytes:
        """The whole message with CRLF line ends, exactly RFC822.SIZE octets."""
        ...

    def set_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str], mode: FlagMode,
                  unchanged_since: int | None = None) -> tuple[list[MessageMeta], list[int]]:
        """Returns (messages whose flags changed, UIDs not changed because of UNCHANGEDSINCE)."""
        ...

    def copy(self, folder: str, uids: Sequence[int], target: str) -> tuple[int, list[tuple[int, int]]]:
        """Returns (target uidvalidity, [(source uid, new uid)])."""
        ...

    def move(self, folder: str, uids: Sequence[int], target: str) -> tuple[int, list[tuple[int, int]]]: ...
    def expunge(self, folder: str, uids: Iterable[int] | None = None) -> list[int]:
        """Removes messages flagged \\Deleted (only among `uids` when given); returns expunged UIDs."""
        ...

    def remove(self, folder: str, uids: Iterable[int]) -> list[int]:
        """Removes messages whatever their flags (POP3 DELE at QUIT, delete-for-good in the viewer)."""
        ...

    def recent_uids(self, folder: str) -> set[int]:
        """The messages claim_recent() would take now, left unclaimed (for EXAMINE)."""
        ...
    def claim_recent(self, folder: str, upto: int | None = None) -> set[int]:
        """UIDs that are \\Recent for the caller (moved new/ -> cur/ so no other session gets them)."""
        ...

    def read_many(self, folder: str, uids: Sequence[int]) -> Iterator[tuple[int, bytes | None]]:
        """(uid, message or None when gone) in the order asked, one index query per batch: a FETCH of
        10,000 bodies must not pay a lookup per message."""
        ...

    def get_cached(self, folder: str, uid: int, key: str) -> str | None: ...
    def set_cached(self, folder: str, uid: int, key: str, value: str) -> None: ...
    def get_cached_many(self, folder: str, uids: Sequence[int], key: str) -> dict[int, str]: ...
    def set_cached_many(self, folder: str, key: str, values: Iterable[tuple[int, str]]) -> None: ...
    def path_of(self, folder: str, uid: int) -> Path:
        """Where the message file is now (it moves when its flags change): for tools, not protocols."""
        ...

    def used_bytes(self) -> int:
        """Sum of RFC822.SIZE over all folders: what a quota counts."""
        ...
    def search_text(self, folder: str, text: str) -> list[int]:
        """UIDs whose sender, subject or decoded body contains `text` (case-insensitive)."""
        ...


class MailStoreAPI(Protocol):
    def create_account(self, address: str) -> None: ...
    def remove_account(self, address: str, delete_files: bool = False) -> None: ...
    def mailbox(self, address: str) -> Mailbox: ...
    async def deliver(self, addresses: Sequence[str], data: bytes,
                      folder: str = "INBOX") -> dict[str, int]:
        """Durable delivery of one message to several accounts; returns uid per address."""
        ...


@dataclass(frozen=True)
class Account:
    address: str              # user@domain, lower-case domain
    enabled: bool
    quota: int | None         # bytes, None = unlimited


@dataclass(frozen=True)
class Alias:
    source: str               # user@domain, or @domain for the catch-all
    targets: tuple[str, ...]


class DirectoryAPI(Protocol):
    """Domains, accounts and aliases in state.sqlite; every lookup sees the CLI's changes at once."""

    def is_local_domain(self, domain: str) -> bool: ...
    def resolve(self, address: str) -> list[str]:
        """Local accounts a recipient address delivers to; [] when nobody here takes it."""
        ...

    def authenticate(self, username: str, password: str) -> Account | None: ...
    def may_send_as(self, account: str, address: str) -> bool: ...
