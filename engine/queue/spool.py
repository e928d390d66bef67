"""The spool directory: one file per queued message, written so that a crash leaves all of it or none.

`spool/<queue id>` holds the message exactly as accepted.  A write goes to `spool/.<id>.tmp`, is fsynced,
renamed into place and the directory fsynced; only then may the queue row be committed (and SMTP answer
250).  A failed write (disk full, file-size limit) removes the temporary file and raises OSError.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def file(self, queue_id: str) -> Path:
        return self.path / queue_id

    def write(self, queue_id: str, data: bytes) -> None:
        """Durably stores the message; on any failure nothing of it remains and OSError is raised."""
        final = self.file(queue_id)
        temp = self.path / f"{TEMP_PREFIX}{queue_id}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            self._sync_dir()
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            with contextlib.suppress(OSError):
                if final.exists():
                    final.unlink()
            raise

    def _sync_dir(self) -> None:
        """The rename is durable only once the directory entry is (POSIX; Windows cannot open a directory)."""
        if os.name != "posix":
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, queue_id: str) -> bytes:
        return self.file(queue_id).read_bytes()

    def read_headers(self, queue_id: str, limit: int = 256 * 1024) -> bytes:
        """The header section (up to the first empty line), reading no more than `limit` bytes."""
        with open(self.file(queue_id), "rb") as f:
            head = f.read(limit)
        for sep in (b"\r\n\r\n", b"\n\n"):
            end = head.find(sep)
            if end >= 0:
                return head[:end + len(sep) // 2]
        return head

    def remove(self, queue_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.file(queue_id).unlink()

    def ids(self) -> set[str]:
        return {p.name for p in self.path.iterdir()
                if not p.name.startswith(TEMP_PREFIX) and p.is_file()}

    def sweep(self, known: set[str], older_than: float) -> list[str]:
        """Removes temp files and message files without a queue row, if older than `older_than` seconds.

        Such files are what a crash between spooling and committing leaves; the client never got its
        250 and will send again.  The age guard keeps a write in progress (this or another process) safe.
        """
        removed: list[str] = []
        cutoff = time.time() - older_than
        for entry in self.path.iterdir():
            try:
                if not entry.is_file() or entry.stat().st_mtime > cutoff:
                    continue
                if entry.name.startswith(TEMP_PREFIX) or entry.name not in known:
                    entry.unlink()
                    removed.append(entry.name)
            except FileNotFoundError:
                continue
        return removed
