"""What the viewer asks of the engine, as coroutines for the bridge: read, save, flag, move, delete, folders.

Each runs on the engine loop with its blocking store or file work in a worker thread (the store methods
are thread-safe, engine.interfaces), so the window never waits on a disk.  Errors are StoreError
sentences or OSError, which the bridge turns into words.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from desktop.viewer.compose import Draft, build_message
from desktop.viewer.html import text_document
from desktop.viewer.message import MessageView, parse, part_content, read_message
from desktop.viewer.sendtest import SendResult, send_message
from desktop.viewer.text import safe_filename, unique_path
from engine.interfaces import ANSWERED, SEEN, Mailbox, StoreError

# Inline parts bigger than this are not pre-decoded for the HTML view (they are not shown inline).
MAX_INLINE_PART = 16 * 1024 * 1024


@dataclass(frozen=True)
class LoadedMessage:
    folder: str
    uid: int
    raw: bytes
    view: MessageView
    message: EmailMessage
    inline: dict[int, tuple[bytes, str]]      # decoded cid: parts, served to the HTML view
    text_html: str                            # the plain-text body as clickable HTML (made off the GUI thread)

    def part(self, number: int) -> tuple[bytes, str]:
        return self.inline[number]


def _load(mailbox: Mailbox, folder: str, uid: int, authserv_id: str) -> LoadedMessage:
    raw = mailbox.read(folder, uid)
    view = read_message(raw, authserv_id)
    message = parse(raw)
    inline: dict[int, tuple[bytes, str]] = {}
    for number in set(view.cids.values()):
        with contextlib.suppress(KeyError):
            data, ctype = part_content(message, number)
            if len(data) <= MAX_INLINE_PART:
                inline[number] = (data, ctype)
    return LoadedMessage(folder, uid, raw, view, message, inline, text_document(view.text or ""))


async def load_message(mailbox: Mailbox, folder: str, uid: int, authserv_id: str) -> LoadedMessage:
    """Reads and parses one message off the GUI thread (a 25 MiB message parses in a worker)."""
    return await asyncio.to_thread(_load, mailbox, folder, uid, authserv_id)


def write_new_file(path: Path, data: bytes) -> None:
    """Writes through a temporary name in the same folder, then renames: a half-written attachment
    never appears under the real name.  The person chose `path` in a save dialog (overwrite agreed)."""
    tmp = path.with_name(f".{path.name}.postroom-partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def target_path(chosen: str | Path, fallback: str) -> Path:
    """Whatever name came back from the dialog, saved as a plain name in the folder chosen."""
    chosen = Path(chosen)
    return chosen.parent / safe_filename(chosen.name, fallback=fallback)


def _save(message: EmailMessage, part: int, path: Path) -> Path:
    data, _ctype = part_content(message, part)
    write_new_file(path, data)
    return path


async def save_part(message: EmailMessage, part: int, path: Path) -> Path:
    return await asyncio.to_thread(_save, message, part, path)


def _save_all(message: EmailMessage, parts: Sequence[tuple[int, str]], folder: Path) -> list[Path]:
    saved = []
    for number, name in parts:
        saved.append(_save(message, number, unique_path(folder, safe_filename(name))))
    return saved


async def save_parts(message: EmailMessage, parts: Sequence[tuple[int, str]], folder: Path) -> list[Path]:
    """Several attachments into one folder, each under a plain name that overwrites nothing."""
    return await asyncio.to_thread(_save_all, message, list(parts), folder)


async def set_flag(mailbox: Mailbox, folder: str, uids: Sequence[int], flag: str, on: bool) -> None:
    await asyncio.to_thread(mailbox.set_flags, folder, list(uids), [flag], "add" if on else "remove")


async def move(mailbox: Mailbox, folder: str, uids: Sequence[int], target: str) -> int:
    _validity, pairs = await asyncio.to_thread(mailbox.move, folder, list(uids), target)
    return len(pairs)


def _to_trash(mailbox: Mailbox, folder: str, uids: Sequence[int], trash: str) -> int:
    if trash not in {f.name for f in mailbox.folders()}:
        mailbox.create_folder(trash, "\\Trash")
    return len(mailbox.move(folder, list(uids), trash)[1])


async def move_to_trash(mailbox: Mailbox, folder: str, uids: Sequence[int], trash: str) -> int:
    """RFC 6154 \\Trash: "delete" in a mail program means "move there" (the folder is made if missing)."""
    return await asyncio.to_thread(_to_trash, mailbox, folder, uids, trash)


async def remove(mailbox: Mailbox, folder: str, uids: Sequence[int]) -> int:
    """Deleted for good (asked first by the panel)."""
    return len(await asyncio.to_thread(mailbox.remove, folder, list(uids)))


async def send_draft(engine: Any, mailbox: Mailbox, account: str, password: str, draft: Draft,
                     sent_folder: str | None, answered: tuple[str, int] | None) -> SendResult:
    """Builds and sends a written message, then files a copy in Sent (\\Seen, as mail programs do) and
    marks the message replied to \\Answered (RFC 3501 §2.3.2)."""
    data, recipients = await asyncio.to_thread(build_message, account, draft, engine.config.hostname)
    result = await send_message(engine, account, password, recipients, data)
    if sent_folder:
        try:
            await asyncio.to_thread(mailbox.append, sent_folder, data, [SEEN])
        except StoreError as exc:
            return SendResult(result.route, f"{result.words} (No copy in {sent_folder}: {exc})")
    if answered is not None:
        folder, uid = answered
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(mailbox.set_flags, folder, [uid], [ANSWERED], "add")
    return result


async def create_folder(mailbox: Mailbox, name: str) -> None:
    await asyncio.to_thread(mailbox.create_folder, name)


async def rename_folder(mailbox: Mailbox, old: str, new: str) -> None:
    await asyncio.to_thread(mailbox.rename_folder, old, new)


async def delete_folder(mailbox: Mailbox, name: str) -> None:
    await asyncio.to_thread(mailbox.delete_folder, name)
