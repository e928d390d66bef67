"""offlineimap (offlineimap3) two-way sync over implicit TLS: messages, flags and deletions travel both
ways, a folder made offline appears on the server, and nothing is copied twice."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.interfaces import DELETED, FLAGGED, SEEN

from .conftest import ALICE, ALICE_PW, IMAPServer, message

pytestmark = pytest.mark.peers


def _offlineimap(rc: Path) -> subprocess.CompletedProcess[str]:
    # -o: one sync and exit; -u quiet: errors only; -1: one connection (faster start, same protocol)
    return subprocess.run(["offlineimap", "-c", str(rc), "-o", "-1", "-u", "quiet"], capture_output=True,
                          text=True, timeout=60, check=False)


def _files(local: Path, folder: str) -> dict[str, Path]:
    """Local messages of a folder by their Subject line."""
    out = {}
    for sub in ("cur", "new"):
        for p in (local / folder / sub).iterdir():
            subject = next(line for line in p.read_bytes().splitlines() if line.startswith(b"Subject: "))
            out[subject[9:].decode()] = p
    return out


def _flags(path: Path) -> str:
    return path.name.rsplit(":2,", 1)[1]


def test_offlineimap_two_way_sync_with_flags_and_deletions(server: IMAPServer, tmp_path: Path) -> None:
    if shutil.which("offlineimap") is None:
        pytest.skip("offlineimap (Debian offlineimap3) is not installed")
    mb = server.store.mailbox(ALICE)
    for name in ("keep", "read me", "delete me remotely", "delete me locally"):
        server.deliver(ALICE, message(name))
    server.deliver(ALICE, message("sent one"), folder="Sent")
    local = tmp_path / "local"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""[general]
accounts = A
metadata = {tmp_path / "meta"}

[Account A]
localrepository = L
remoterepository = R

[Repository L]
type = Maildir
localfolders = {local}
sep = /

[Repository R]
type = IMAP
remotehost = localhost
remoteport = {server.tls_port}
remoteuser = {ALICE}
remotepass = {ALICE_PW}
ssl = yes
sslcacertfile = {server.ca_file}
""")
    first = _offlineimap(rc)
    assert first.returncode == 0, first.stdout + first.stderr
    inbox = _files(local, "INBOX")
    assert set(inbox) == {"keep", "read me", "delete me remotely", "delete me locally"}
    assert set(_files(local, "Sent")) == {"sent one"}

    # offline: read and flag one, delete one, write a new one, make a folder
    read = inbox["read me"]
    os.rename(read, local / "INBOX" / "cur" / (read.name.rsplit(":2,", 1)[0] + ":2,FS"))
    inbox["delete me locally"].unlink()
    (local / "INBOX" / "new" / "1700000000.offline1.host:2,").write_bytes(message("written offline"))
    for sub in ("cur", "new", "tmp"):
        (local / "Offline" / sub).mkdir(parents=True)
    (local / "Offline" / "new" / "1700000001.offline2.host:2,S").write_bytes(message("filed offline"))
    # meanwhile on the server: one flagged, one expunged, one arrives
    by_subject = {mb.read("INBOX", m.uid).split(b"Subject: ")[1].split(b"\r\n")[0].decode(): m.uid
                  for m in mb.messages("INBOX")}
    mb.set_flags("INBOX", [by_subject["keep"]], [FLAGGED], "add")
    mb.set_flags("INBOX", [by_subject["delete me remotely"]], [DELETED], "add")
    mb.expunge("INBOX")
    server.deliver(ALICE, message("arrived meanwhile"))

    second = _offlineimap(rc)
    assert second.returncode == 0, second.stdout + second.stderr
    # the server has the local changes ...
    remote = {mb.read("INBOX", m.uid).split(b"Subject: ")[1].split(b"\r\n")[0].decode(): m.flags
              for m in mb.messages("INBOX")}
    assert set(remote) == {"keep", "read me", "written offline", "arrived meanwhile"}
    assert remote["read me"] == {SEEN, FLAGGED}
    assert remote["keep"] == {FLAGGED}
    assert "Offline" in {f.name for f in mb.folders()}
    assert [m.flags for m in mb.messages("Offline")] == [frozenset({SEEN})]
    # ... and the Maildir has the server's
    inbox = _files(local, "INBOX")
    assert set(inbox) == set(remote)
    assert _flags(inbox["keep"]) == "F" and _flags(inbox["read me"]) == "FS"

    # a third run with nothing new changes nothing and copies nothing twice
    third = _offlineimap(rc)
    assert third.returncode == 0, third.stdout + third.stderr
    assert mb.status("INBOX").messages == 4 and len(_files(local, "INBOX")) == 4
