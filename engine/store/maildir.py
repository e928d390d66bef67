"""Maildir mechanics: unique file names, flags in the info suffix, line-end conversion, durable writes.

Pure helpers plus the few system calls that make a write durable (fsync of file and directory).
File names follow `<sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>,W=<crlf size>:2,<flags>` (the Maildir
spec at cr.yp.to/proto/maildir.html, Dovecot's S=/W= extensions and Q counter) so mutt and Dovecot read
the same directories we write.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from engine.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

# Maildir info separator; ":" cannot appear in Windows file names, where Dovecot and mutt use ";"/"!".
INFO_SEP = ";" if sys.platform == "win32" else ":"
INFO_PREFIX = INFO_SEP + "2,"

# Maildir spec "info" letters for the IMAP system flags, in the ASCII order the spec asks for.
FLAG_TO_LETTER = {DRAFT: "D", FLAGGED: "F", ANSWERED: "R", SEEN: "S", DELETED: "T"}
LETTER_TO_FLAG = {v: k for k, v in FLAG_TO_LETTER.items()}

_SIZE_FIELD = re.compile(r",S=(\d+)")
_WSIZE_FIELD = re.compile(r",W=(\d+)")


def sanitize_host(host: str) -> str:
    """The host part of a Maildir name: "/" and ":" must not appear (spec), "," would confuse S=/W=."""
    host = host or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054").replace(";", "\\073")


class NameMaker:
    """Produces file base names unique per message across threads, processes and restarts."""

    def __init__(self, host: str) -> None:
        self._host = sanitize_host(host)
        self._counter = itertools.count(1)   # next() on itertools.count is atomic under the GIL

    def make(self, disk_size: int, wire_size: int) -> str:
        usec_total = time.time_ns() // 1000
        sec, usec = divmod(usec_total, 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(self._counter)}.{self._host},S={disk_size},W={wire_size}"


def split_name(name: str) -> tuple[str, str]:
    """A Maildir file name -> (base, info letters); files without ":2," info have info ""."""
    base, sep, info = name.partition(INFO_SEP)
    if not sep:
        return name, ""
    return base, info[2:] if info.startswith("2,") else ""


def file_name(base: str, subdir: str, info: str) -> str:
    """new/ files carry no info (Maildir spec); cur/ files always do, even with no flags."""
    return base if subdir == "new" else f"{base}{INFO_PREFIX}{info}"


def wire_size_from_base(base: str) -> int | None:
    m = _WSIZE_FIELD.search(base)
    return int(m.group(1)) if m else None


def disk_size_from_base(base: str) -> int | None:
    m = _SIZE_FIELD.search(base)
    return int(m.group(1)) if m else None


def flags_to_info(flags: Iterable[str], keep: str = "") -> str:
    """Info letters for the system flags in `flags`, plus letters of `keep` we do not manage
    (Dovecot keyword letters a-z, "P" passed), sorted as the Maildir spec asks."""
    letters = {FLAG_TO_LETTER[f] for f in flags if f in FLAG_TO_LETTER}
    letters.update(ch for ch in keep if ch not in LETTER_TO_FLAG)
    return "".join(sorted(letters))


def info_to_flags(info: str) -> set[str]:
    return {LETTER_TO_FLAG[ch] for ch in info if ch in LETTER_TO_FLAG}


# --- line ends ------------------------------------------------------------------------------------------

_BARE_LF = re.compile(rb"(?<!\r)\n")


def to_disk(data: bytes) -> bytes:
    """Wire form -> stored form: CRLF becomes LF (the Unix Maildir habit); bare CRs stay as data."""
    return data.replace(b"\r\n", b"\n")


def to_wire(disk: bytes) -> bytes:
    """Stored form -> wire form (RFC 5322 §2.3 CRLF): every LF not already preceded by CR gets one,
    so files dropped in by hand with CRLF line ends are served unchanged (as Dovecot does)."""
    if b"\r" not in disk:
        return disk.replace(b"\n", b"\r\n")
    return _BARE_LF.sub(b"\r\n", disk)


def wire_size(disk: bytes) -> int:
    """len(to_wire(disk)) without building it: RFC822.SIZE (RFC 3501 §2.3.4)."""
    return len(disk) + disk.count(b"\n") - disk.count(b"\r\n")


# --- durable file system operations ---------------------------------------------------------------------


def write_synced(path: str | Path, data: bytes, mtime: float | None = None) -> None:
    """Creates `path` (never overwrites), writes, fsyncs: the data is on disk when this returns.
    When a step fails (a full disk) the partial file is removed: tmp/ never keeps half a message."""
    finish_synced(write_unsynced(path, data, mtime), path)


def write_unsynced(path: str | Path, data: bytes, mtime: float | None = None) -> int:
    """write_synced() up to its fsync, returning the open descriptor for finish_synced().
    Writing a whole batch before the first fsync lets one journal commit carry every file of it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if mtime is not None:
            # Dovecot and mutt take the received date (IMAP INTERNALDATE) from the file's mtime; set it
            # before the fsync so the date is as durable as the data.
            if os.utime in os.supports_fd:
                os.utime(fd, (mtime, mtime))
            else:
                os.utime(path, (mtime, mtime))
    except BaseException:
        os.close(fd)
        _remove(path)
        raise
    return fd


def finish_synced(fd: int, path: str | Path) -> None:
    """Fsyncs and closes a descriptor from write_unsynced(); if the fsync fails, `path` is removed."""
    try:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove(path)
        raise


def _remove(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fsync_dir(path: str | Path) -> None:
    """Makes renames/links into `path` durable (POSIX: the directory entry needs its own fsync)."""
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_maildir(path: Path, *, folder: bool) -> None:
    """cur/ new/ tmp/ (and the Maildir++ `maildirfolder` marker for subfolders)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)
    if folder:
        (path / "maildirfolder").touch(mode=0o600, exist_ok=True)
