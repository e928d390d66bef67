"""Issues 4 and 5 as they will be checked: mail delivered to the MX with swaks is read by the clients people
use — curl (IMAPS, POP3S), Python's imaplib (STARTTLS) and poplib (POP3S), mbsync (two-way), fetchmail
(POP3 with STLS, into an MDA) and getmail6 (POP3S, into a Maildir) — all against one `postroom serve`.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import poplib
import pwd
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from tests.e2e.conftest import ACCOUNTS, Server, copy_data_dir, serving
from tests.e2e.peers import needs_program

pytestmark = needs_program("swaks", "swaks")

# One account per client that changes the mailbox, so no test depends on another's order.
ALICE, BOB, CAROL, DAVE = ACCOUNTS
SUBJECTS = ("first message", "second message")


@dataclass
class Mailhost:
    server: Server
    cert: Path                       # the self-signed certificate serve made on first start

    def port(self, service: str) -> int:
        return self.server.ports[service]


def swaks_to_mx(server: Server, recipients: list[str], subject: str, body: str) -> None:
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.ports["smtp"]),
                          "--from", "sender@remote.test", "--to", ",".join(recipients),
                          "--header", f"Subject: {subject}", "--body", body],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def maildir_count(data: Path, address: str) -> int:
    user, domain = address.split("@")
    box = data / "mail" / domain / user
    return sum(1 for sub in ("new", "cur") for _ in (box / sub).iterdir())


@pytest.fixture(scope="module")
def mailhost(data_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailhost]:
    data = copy_data_dir(data_template, tmp_path_factory.mktemp("access") / "data")
    with serving(data) as server:
        for number, subject in enumerate(SUBJECTS, start=1):
            swaks_to_mx(server, list(ACCOUNTS), subject, f"Body number {number}.")
        assert all(maildir_count(data, a) == len(SUBJECTS) for a in ACCOUNTS)
        yield Mailhost(server, data / "tls" / "selfsigned.crt")
        server.stop()


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args[0]} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


# --- curl ------------------------------------------------------------------------------------------------

@needs_program("curl", "curl")
def test_curl_lists_and_fetches_over_imaps(mailhost: Mailhost) -> None:
    base = f"imaps://127.0.0.1:{mailhost.port('imaps')}/INBOX"
    login = ["-k", "-s", "-S", "--max-time", "20", "-u", f"{ALICE}:{ACCOUNTS[ALICE]}"]
    search = run(["curl", *login, base, "-X", "UID SEARCH ALL"]).stdout
    assert re.search(r"^\* SEARCH 1 2\s*$", search, re.M), search
    message = run(["curl", *login, f"{base};UID=1"]).stdout
    parsed = email.message_from_string(message, policy=email.policy.default)
    assert parsed["Subject"] == SUBJECTS[0]
    assert "Body number 1." in message


@needs_program("curl", "curl")
def test_curl_lists_and_retrieves_over_pop3s(mailhost: Mailhost) -> None:
    base = f"pop3s://127.0.0.1:{mailhost.port('pop3s')}/"
    login = ["-k", "-s", "-S", "--max-time", "20", "-u", f"{ALICE}:{ACCOUNTS[ALICE]}"]
    listing = run(["curl", *login, base]).stdout
    sizes = [line.split() for line in listing.splitlines() if line.strip()]
    assert [number for number, _ in sizes] == ["1", "2"], listing
    message = run(["curl", *login, f"{base}2"]).stdout
    assert email.message_from_string(message, policy=email.policy.default)["Subject"] == SUBJECTS[1]
    assert len(message.replace("\n", "\r\n").encode()) == int(sizes[1][1])     # RFC 1939: octets with CRLF
    uidl = run(["curl", *login, base, "-X", "UIDL"]).stdout.split()
    assert uidl[0::2] == ["1", "2"] and len(set(uidl[1::2])) == 2
    head = run(["curl", *login, base, "-X", "TOP 1 0"]).stdout
    assert f"Subject: {SUBJECTS[0]}" in head and "Body number 1." not in head


# --- Python's own clients ----------------------------------------------------------------------------------

def test_imaplib_over_starttls_searches_fetches_and_flags(mailhost: Mailhost) -> None:
    with imaplib.IMAP4("127.0.0.1", mailhost.port("imap"), timeout=20) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(insecure_context())
        assert "STARTTLS" not in imap.capabilities          # RFC 3501 §6.2.1: asked afresh after TLS
        imap.login(ALICE, ACCOUNTS[ALICE])
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"2"]
        typ, data = imap.uid("SEARCH", "SUBJECT", "second")
        assert data == [b"2"]
        typ, data = imap.uid("FETCH", "2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)")
        assert typ == "OK" and b"Subject: second message" in cast(tuple[bytes, bytes], data[0])[1]
        typ, data = imap.uid("STORE", "2", "+FLAGS", r"(\Flagged)")
        assert typ == "OK"
        typ, data = imap.uid("SEARCH", "FLAGGED")
        assert data == [b"2"]
        typ, data = imap.uid("STORE", "2", "-FLAGS", r"(\Flagged)")
        imap.close()


def test_poplib_over_pop3s_reads_without_deleting(mailhost: Mailhost) -> None:
    pop = poplib.POP3_SSL("127.0.0.1", mailhost.port("pop3s"), context=insecure_context(), timeout=20)
    try:
        pop.user(ALICE)
        pop.pass_(ACCOUNTS[ALICE])
        count, size = pop.stat()
        assert count == 2 and size > 0
        uidls = [line.split()[1] for line in pop.uidl()[1]]
        assert len(set(uidls)) == 2
        _, lines, _ = pop.retr(1)
        assert b"Subject: first message" in lines
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    assert maildir_count(mailhost.server.data_dir, ALICE) == 2


# --- sync and download programs ----------------------------------------------------------------------------

def imap_session(mailhost: Mailhost, address: str) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", mailhost.port("imaps"), ssl_context=insecure_context(), timeout=20)
    imap.login(address, ACCOUNTS[address])
    return imap


def server_view(mailhost: Mailhost, address: str) -> dict[str, set[str]]:
    """Subject -> flags of every message in the account's INBOX, as IMAP shows them."""
    imap = imap_session(mailhost, address)
    try:
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        view: dict[str, set[str]] = {}
        for part in data:
            if isinstance(part, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", part[0])
                subject = part[1].decode().partition(":")[2].strip()
                view[subject] = set(flags.group(1).decode().split()) if flags else set()
        return view
    finally:
        imap.logout()


@needs_program("mbsync", "isync")
def test_mbsync_syncs_both_ways(mailhost: Mailhost, tmp_path: Path) -> None:
    local = tmp_path / "Mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""\
IMAPAccount postroom
Host 127.0.0.1
Port {mailhost.port('imaps')}
User {BOB}
Pass {ACCOUNTS[BOB]}
SSLType IMAPS
CertificateFile {mailhost.cert}

IMAPStore remote
Account postroom

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel postroom
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
Sync All
""")
    rc.chmod(0o600)
    run(["mbsync", "-c", str(rc), "-a"])
    new_files = sorted((local / "INBOX" / "new").iterdir()) + sorted((local / "INBOX" / "cur").iterdir())
    subjects = {email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]: p
                for p in new_files}
    assert set(subjects) == set(SUBJECTS)

    # Near side changes: read and flag the first message, write a draft-like new one, delete the second.
    first = subjects[SUBJECTS[0]]
    first.rename(local / "INBOX" / "cur" / (first.name.split(":")[0] + ":2,FS"))
    subjects[SUBJECTS[1]].unlink()
    made = local / "INBOX" / "cur" / f"{int(time.time())}.M1P{os.getpid()}.near:2,S"
    made.write_bytes(b"From: bob@example.test\r\nTo: bob@example.test\r\nSubject: written offline\r\n"
                     b"Message-ID: <offline@example.test>\r\n\r\nWritten on the near side.\r\n")
    # Far side change meanwhile: new mail arrives.
    swaks_to_mx(mailhost.server, [BOB], "arrived meanwhile", "Third.")
    run(["mbsync", "-c", str(rc), "-a"])

    view = server_view(mailhost, BOB)
    assert set(view) == {SUBJECTS[0], "written offline", "arrived meanwhile"}, view
    assert {r"\Seen", r"\Flagged"} <= view[SUBJECTS[0]]
    assert r"\Seen" in view["written offline"]
    near = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
            for sub in ("new", "cur") for p in (local / "INBOX" / sub).iterdir()]
    assert sorted(near) == sorted(view), "both sides hold the same messages"

    run(["mbsync", "-c", str(rc), "-a"])            # a third run changes nothing and duplicates nothing
    assert server_view(mailhost, BOB) == view


@needs_program("fetchmail", "fetchmail")
def test_fetchmail_downloads_over_pop3_with_stls_into_an_mda(mailhost: Mailhost, tmp_path: Path) -> None:
    inbox = tmp_path / "fetched"
    inbox.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\nexec cat > "{inbox}/msg.$$"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""\
set no syslog
poll 127.0.0.1 port {mailhost.port('pop3')} protocol pop3 timeout 20
  user "{CAROL}" password "{ACCOUNTS[CAROL]}" is "carol" here
  sslproto "tls1.2+" sslcertck sslcertfile "{mailhost.cert}" sslcommonname "mx.example.test"
""")
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--idfile", str(tmp_path / "fetchids"),
                          "--pidfile", str(tmp_path / "fetchmail.pid"), "--mda", str(mda), "-v"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "STLS" in out.stdout + out.stderr, "fetchmail must have upgraded the session with STLS"
    got = sorted(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
                 for p in inbox.iterdir())
    assert got == sorted(SUBJECTS)
    # fetchmail deletes what it fetched (no `keep`): the POP3 DELE/QUIT reached the mailbox.
    assert maildir_count(mailhost.server.data_dir, CAROL) == 0


@needs_program("getmail", "getmail6")
def test_getmail_downloads_over_pop3s_into_a_maildir(mailhost: Mailhost, tmp_path: Path) -> None:
    # getmail refuses to deliver as root, so it writes as `nobody` into a directory nobody may enter.
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="postroom-getmail-"))
    try:
        shared.chmod(0o755)
        maildir = shared / "Maildir"
        for sub in ("", "new", "cur", "tmp"):
            (maildir / sub).mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(maildir / sub, nobody.pw_uid, nobody.pw_gid)
        rc = tmp_path / "getmailrc"
        user_line = "user = nobody\n" if os.geteuid() == 0 else ""
        rc.write_text(f"""\
[retriever]
type = SimplePOP3SSLRetriever
server = 127.0.0.1
port = {mailhost.port('pop3s')}
username = {DAVE}
password = {ACCOUNTS[DAVE]}

[destination]
type = Maildir
path = {maildir}/
{user_line}
[options]
delete = false
read_all = false
verbose = 1
""")
        run(["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)], timeout=60)
        got = sorted(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
                     for p in (maildir / "new").iterdir())
        assert got == sorted(SUBJECTS)
        # A second run fetches nothing new (UIDL remembered), and `delete = false` left the mailbox alone.
        run(["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)], timeout=60)
        assert len(list((maildir / "new").iterdir())) == len(SUBJECTS)
        assert maildir_count(mailhost.server.data_dir, DAVE) == len(SUBJECTS)
    finally:
        shutil.rmtree(shared)
