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


MIXED = (b'From: "Joe Q. Public" <john.q.public@example.com>\r\nTo: Mary <mary@x.test>, jdoe@example.org\r\n'
         b"Cc: undisclosed-recipients:;\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
         b"Message-ID: <1234@local.machine.example>\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n--XX\r\n'
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"Hello caf=C3=A9\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@b.test\r\nSubject: inner\r\n\r\n"
         b"inner body\r\n--XX\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n"
         b"Content-Type: text/plain\r\n\r\nplain\r\n--a\r\nContent-Type: text/html\r\n"
         b"Content-Disposition: inline\r\nContent-Language: en, de\r\n\r\n<b>x</b>\r\n--a--\r\n--XX--\r\n")


def test_structure_answers_match_dovecot(server: IMAPServer) -> None:
    """The same Maildir served by Dovecot: BODYSTRUCTURE, BODY and sections agree octet for octet."""
    import tempfile

    # Dovecot's unprivileged processes must reach the files: not under pytest's 0700 temp tree
    with tempfile.TemporaryDirectory(prefix="imap-dovecot-") as tmp:
        os.chmod(tmp, 0o755)
        _compare_with_dovecot(server, Path(tmp))


def _compare_with_dovecot(server: IMAPServer, tmp_path: Path) -> None:
    import signal
    import socket
    import time

    from .conftest import Raw

    template = Path("/work/shared/peers/dovecot.conf.in")
    if shutil.which("dovecot") is None or not template.exists() or os.geteuid() != 0:
        pytest.skip("needs dovecot, its config template and root (to hand the Maildir to nobody)")
    server.deliver(ALICE, MIXED)
    server.deliver(ALICE, message("plain one"))
    root = tmp_path / "dovecot"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = template.read_text().replace("@ROOT@", str(root)).replace("port = 11143", f"port = {port}")
    conf = conf.replace("port = 11110", "port = 0")
    for sub in ("run", "state", "log"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot.conf").write_text(conf)
    (root / "users").write_text("alice:{PLAIN}pw\n")
    shutil.copytree(server.store.account_path(ALICE), root / "mail" / "alice" / "Maildir",
                    ignore=shutil.ignore_patterns("index.sqlite*", "postroom-*"))
    subprocess.run(["chown", "-R", "65534:65534", str(root / "mail")], check=True)
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dovecot did not start"
                time.sleep(0.05)
        command = (b"UID FETCH 1:* (BODYSTRUCTURE BODY BODY.PEEK[1] BODY.PEEK[2.HEADER] BODY.PEEK[3.2.MIME] "
                   b"BODY.PEEK[3.1] BINARY.PEEK[1] BODY.PEEK[HEADER.FIELDS (FROM TO)])")
        answers = []
        for p, (user, password) in ((server.port, (ALICE, ALICE_PW)), (port, ("alice", "pw"))):
            raw = Raw(p)
            try:
                raw.login(user, password)
                raw.cmd(b"s", b"EXAMINE INBOX")
                answers.append(raw.cmd(b"f", command)[:-1])
            finally:
                raw.close()
        for ours, theirs in zip(answers[0], answers[1], strict=True):
            if ours != theirs:
                at = next(i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i])
                raise AssertionError(f"differs at {at}: {ours[at - 80:at + 80]!r} vs {theirs[at - 80:at + 80]!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
