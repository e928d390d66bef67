"""Third-party clients against the server: curl (IMAPS and STARTTLS) and mbsync (two-way folder sync)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.interfaces import DELETED, SEEN

from .conftest import ALICE, ALICE_PW, IMAPServer, message

pytestmark = pytest.mark.peers


def curl(server: IMAPServer, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--cacert", str(server.ca_file), "-u", f"{ALICE}:{ALICE_PW}", url, *args],
                          capture_output=True, timeout=20, check=False)


def test_curl_over_imaps_and_starttls(server: IMAPServer) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    got = curl(server, f"imaps://localhost:{server.tls_port}/INBOX", "-X", "UID SEARCH ALL")
    assert (got.returncode, got.stdout) == (0, b"* SEARCH 1 2 3\r\n"), got.stderr
    got = curl(server, f"imaps://localhost:{server.tls_port}/INBOX;UID=2")
    assert got.stdout == message("m1")
    got = curl(server, f"imap://localhost:{server.port}/", "--ssl-reqd")
    assert got.returncode == 0 and b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n' in got.stdout


def _mbsync(rc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60, check=False)


def test_mbsync_two_way_sync_of_every_folder(server: IMAPServer, tmp_path: Path) -> None:
    if shutil.which("mbsync") is None:
        pytest.skip("mbsync (isync) is not installed")
    for i in range(3):
        server.deliver(ALICE, message(f"inbox {i}"))
    server.deliver(ALICE, message("sent one"), folder="Sent")
    server.store.mailbox(ALICE).create_folder("Projects/Postroom")
    server.deliver(ALICE, message("nested"), folder="Projects/Postroom")
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount postroom
Host localhost
Port {server.tls_port}
User {ALICE}
Pass "{ALICE_PW}"
SSLType IMAPS
CertificateFile {server.ca_file}

IMAPStore remote
Account postroom

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    first = _mbsync(rc)
    assert first.returncode == 0, first.stderr

    def files(folder: str) -> list[Path]:
        return sorted(p for sub in ("cur", "new") for p in (local / folder / sub).iterdir())

    assert [len(files(f)) for f in ("INBOX", "Sent", "Projects/Postroom", "Drafts")] == [3, 1, 1, 0]
    # local changes: one read, one deleted, one new message in Drafts, a new folder with a message
    inbox = files("INBOX")
    base0 = inbox[0].name.split(":2,")[0]
    base1 = inbox[1].name.split(":2,")[0]
    os.rename(inbox[0], local / "INBOX" / "cur" / (base0 + ":2,S"))
    os.rename(inbox[1], local / "INBOX" / "cur" / (base1 + ":2,T"))
    (local / "Drafts" / "new" / "1700000000.local1.host:2,").write_bytes(message("draft from mutt"))
    for sub in ("cur", "new", "tmp"):
        (local / "Local" / sub).mkdir(parents=True)
    (local / "Local" / "new" / "1700000001.local2.host:2,").write_bytes(message("made offline"))
    second = _mbsync(rc)
    assert second.returncode == 0, second.stderr

    mb = server.store.mailbox(ALICE)
    flags = {m.uid: m.flags for m in mb.messages("INBOX")}
    assert sum(1 for f in flags.values() if SEEN in f) == 1
    assert len(flags) == 2 or any(DELETED in f for f in flags.values())     # Expunge Both removes it
    assert mb.status("Drafts").messages == 1
    assert "Local" in {f.name for f in mb.folders()}
    assert mb.status("Local").messages == 1
    # and back again: a server-side change reaches the Maildir
    server.deliver(ALICE, message("late arrival"))
    third = _mbsync(rc)
    assert third.returncode == 0, third.stderr
    assert len(files("INBOX")) == 3
