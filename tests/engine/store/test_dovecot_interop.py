"""Dovecot reads the Maildir we write (names, flags, sizes, folders) and we pick up what it changes."""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from engine.store import MailStore

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot is not installed"),
]

USER = "alice"
ADDRESS = "alice@example.test"
PASSWORD = "pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, uid: int) -> str:
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {min(uid, 100)}
mail_location = maildir:{root}/mail/example.test/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def maildir_and_dovecot() -> Iterator[tuple[MailStore, int]]:
    # Not pytest's tmp_path: Dovecot's unprivileged auth and mail processes must traverse the path,
    # and pytest makes its base directory 0700.
    root = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
    root.chmod(0o755)
    uid = 65534 if os.geteuid() == 0 else os.geteuid()   # Dovecot will not serve mail as root
    for d in ("run", "state", f"home/{USER}"):
        (root / d).mkdir(parents=True)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (root / "users").chmod(0o644)
    port = _free_port()
    (root / "dovecot.conf").write_text(_config(root, port, uid))
    store = MailStore(root / "mail", hostname="mx.example.test")
    store.create_account(ADDRESS)
    proc: subprocess.Popen[bytes] | None = None

    def start() -> None:
        nonlocal proc
        if os.geteuid() == 0:
            for path in [root / "mail", *(root / "mail").rglob("*"), root / "home", *(root / "home").rglob("*")]:
                os.chown(path, uid, uid, follow_symlinks=False)
        proc = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("dovecot did not start") from None
                time.sleep(0.05)   # polling a port with a deadline, not sleeping as synchronisation

    store.start_dovecot = start  # type: ignore[attr-defined]
    try:
        yield store, port
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def test_dovecot_sees_our_messages_flags_sizes_and_folders(maildir_and_dovecot: tuple[MailStore, int]) -> None:
    store, port = maildir_and_dovecot
    box = store.mailbox(ADDRESS)
    one = b"Subject: one\r\nFrom: a@example.test\r\n\r\nbody one\r\n"
    two = b"Subject: two\r\n\r\nline\rwith bare CR\r\n"
    box.append("INBOX", one, ["\\Seen", "\\Flagged"])
    box.append("INBOX", two)
    box.create_folder("Work/Entwürfe")
    box.append("Work/Entwürfe", b"Subject: three\r\n\r\nx\r\n", ["\\Answered"])
    mark = box.status("INBOX").highestmodseq
    store.start_dovecot()  # type: ignore[attr-defined]

    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(USER, PASSWORD)
        _, listing = imap.list()
        names = {line.decode().rsplit(" ", 1)[-1] for line in listing if isinstance(line, bytes)}
        # Dovecot's Maildir++ separator is "."; the name is modified UTF-7 on the wire as on disk.
        assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Work", "Work.Entw&APw-rfe"} <= names
        imap.select("INBOX")
        _, data = imap.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[])")
        fetched = [part for part in data if isinstance(part, tuple)]
        assert len(fetched) == 2
        assert b"\\Seen" in fetched[0][0] and b"\\Flagged" in fetched[0][0]
        assert f"RFC822.SIZE {len(one)}".encode() in fetched[0][0]
        assert fetched[0][1] == one and fetched[1][1] == two
        imap.select('"Work.Entw&APw-rfe"')
        _, data = imap.fetch("1", "(FLAGS)")
        assert b"\\Answered" in cast(bytes, data[0])

        # Dovecot changes flags and expunges by renaming and unlinking files; the store follows.
        imap.select("INBOX")
        imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.uid("STORE", "2", "+FLAGS", "(\\Answered)")
    finally:
        imap.logout()
    changes = box.changes_since("INBOX", mark)
    assert list(changes.expunged) == [1]
    assert [(m.uid, m.flags) for m in changes.changed] == [(2, frozenset({"\\Answered"}))]
    assert box.read("INBOX", 2) == two
