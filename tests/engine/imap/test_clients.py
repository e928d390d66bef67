"""Real clients (imaplib) on real sockets: what a mail program sees, including two at once."""

from __future__ import annotations

import imaplib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeAlias, cast

import pytest

from engine.auth import AuthFailureLimiter
from engine.config import Limits

from .conftest import ALICE, ALICE_PW, BOB, BOB_PW, TIMEOUT, IMAPServer, Raw, message

# What imaplib's fetch() answers, as typeshed has it: (envelope, literal) pairs and plain lines.
FetchData: TypeAlias = list[None] | list[bytes | tuple[bytes, bytes]]


@pytest.fixture
def alice(server: IMAPServer) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT)
    client.login(ALICE, ALICE_PW)
    try:
        yield client
    finally:
        client.shutdown()


def test_a_new_account_lists_its_special_use_folders(alice: imaplib.IMAP4) -> None:
    typ, lines = alice.list()
    assert typ == "OK"
    listed = {line.decode().rsplit(" ", 1)[-1]: line.decode() for line in lines}  # type: ignore[union-attr]
    assert set(listed) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert f"\\{name}" in listed[name]
    typ, lines = alice.lsub()
    assert typ == "OK" and len(lines) == 6


def test_implicit_tls_and_starttls(server: IMAPServer) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=server.client_tls, timeout=TIMEOUT) as c:
        assert c.login(BOB, BOB_PW)[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
    with imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT) as c:
        assert c.starttls(ssl_context=server.client_tls)[0] == "OK"
        assert c.login(BOB, BOB_PW)[0] == "OK"


def test_append_fetch_store_copy_move_expunge(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    when = imaplib.Time2Internaldate(1_700_000_000)
    data: list[bytes] | FetchData
    typ, data = alice.append("Drafts", "(\\Draft $Later)", when, message("draft"))
    assert typ == "OK" and b"APPENDUID" in data[0]
    assert alice.select("Drafts") == ("OK", [b"1"])
    typ, data = alice.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE)")
    text = cast(bytes, data[0]).decode()
    assert "\\Draft" in text and "$Later" in text
    assert imaplib.Internaldate2tuple(cast(bytes, data[0])) == time.localtime(1_700_000_000)
    assert f"RFC822.SIZE {len(message('draft'))}" in text
    typ, data = alice.fetch("1", "(RFC822)")
    assert cast(tuple[bytes, bytes], data[0])[1] == message("draft")
    assert alice.store("1", "+FLAGS", "(\\Seen)")[0] == "OK"
    typ, _ = alice.copy("1", "Sent")
    assert typ == "OK" and alice.response("COPYUID")[1][0] is not None
    typ, _ = alice.uid("MOVE", "1", "Trash")
    assert typ == "OK"
    assert alice.select("Drafts", readonly=True) == ("OK", [b"0"])
    assert alice.select("Trash") == ("OK", [b"1"])
    assert alice.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    typ, data = alice.expunge()
    assert (typ, data) == ("OK", [b"1"])
    assert alice.status("Sent", "(MESSAGES UNSEEN)") == ("OK", [b"Sent (MESSAGES 1 UNSEEN 0)"])


def test_uids_never_repeat(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    first = server.deliver(ALICE, message("one"))
    alice.select("INBOX")
    alice.store("1", "+FLAGS", "(\\Deleted)")
    alice.expunge()
    second = server.deliver(ALICE, message("two"))
    assert second > first
    alice.close()
    alice.select("INBOX")
    assert alice.uid("SEARCH", "ALL") == ("OK", [str(second).encode()])


def test_create_rename_delete_and_rename_inbox(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    assert alice.create("Projects/2024/")[0] == "OK"       # trailing separator: RFC 3501 §6.3.3
    assert alice.rename("Projects", "Work")[0] == "OK"
    names = [line.decode().rsplit(" ", 1)[-1] for line in alice.list()[1]]  # type: ignore[union-attr]
    assert "Work/2024" in names and "Projects" not in names
    assert alice.create("Work")[0] == "NO"
    assert alice.delete("INBOX")[0] == "NO"
    assert alice.delete("Work/2024")[0] == "OK"
    server.deliver(ALICE, message("old inbox mail"))
    assert alice.rename("INBOX", "Old")[0] == "OK"       # RFC 3501 §6.3.5: messages move, INBOX stays
    assert alice.status("INBOX", "(MESSAGES)") == ("OK", [b"INBOX (MESSAGES 0)"])
    assert alice.status("Old", "(MESSAGES)") == ("OK", [b"Old (MESSAGES 1)"])
    typ, data = alice.append("Nowhere", None, None, message("x"))
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")


def test_search_with_charset_and_body_text(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    server.deliver(ALICE, message("Grüße", body="Die Straße ist naß.\r\n", extra="Content-Type: text/plain; "
                                  "charset=utf-8\r\nMIME-Version: 1.0\r\n").replace(
        "Grüße".encode(), b"=?utf-8?q?Gr=C3=BC=C3=9Fe?="))
    server.deliver(ALICE, message("plain", body="nothing here\r\n"))
    alice.select("INBOX")
    alice.literal = "straße".encode()  # type: ignore[assignment]  # typeshed says str; imaplib sends bytes
    assert alice.search("UTF-8", "BODY") == ("OK", [b"1"])
    alice.literal = "GRÜSSE".encode()  # type: ignore[assignment]
    assert alice.search("UTF-8", "SUBJECT") == ("OK", [b"1"])   # full Unicode case folding: ß is ss
    alice.literal = "grüße".encode()  # type: ignore[assignment]
    assert alice.search("UTF-8", "SUBJECT") == ("OK", [b"1"])
    assert alice.search(None, "TEXT", "nothing") == ("OK", [b"2"])


def test_binary_fetch(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    server.deliver(ALICE, (b"From: a@b.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
                           b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\n"
                           b"hi\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
                           b"\r\n\r\nAAECAw==\r\n--q--\r\n"))
    alice.select("INBOX")
    typ, data = alice.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2])")
    assert typ == "OK"
    assert b"BINARY.SIZE[2] 4" in cast(tuple[bytes, bytes], data[0])[0]
    assert cast(tuple[bytes, bytes], data[0])[1] == b"\x00\x01\x02\x03"


def test_two_sessions_see_each_others_changes(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    server.deliver(ALICE, message("shared"))
    other = imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        other.login(ALICE, ALICE_PW)
        alice.select("INBOX")
        other.select("INBOX")
        other.store("1", "+FLAGS", "(\\Flagged)")
        alice.noop()
        fetches = alice.untagged_responses.get("FETCH", [])
        assert any(b"\\Flagged" in f for f in fetches if isinstance(f, bytes))
        other.untagged_responses.pop("EXISTS", None)
        server.deliver(ALICE, message("new one"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not other.untagged_responses.get("EXISTS"):
            other.noop()
        assert other.untagged_responses.pop("EXISTS", None) == [b"2"]
    finally:
        other.logout()


def test_idle_wakes_on_delivery_within_a_second(server: IMAPServer) -> None:
    raw = Raw(server.port)
    try:
        raw.login()
        raw.cmd(b"s", b"SELECT INBOX")
        raw.send(b"i IDLE\r\n")
        assert raw.line() == b"+ idling\r\n"
        started = time.monotonic()
        server.deliver(ALICE, message("pushed"))
        assert raw.line() == b"* 1 EXISTS\r\n"
        assert time.monotonic() - started < 1.0
        assert raw.line() == b"* 1 RECENT\r\n"
        # a flag change by another session is pushed as well
        with imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT) as other:
            other.login(ALICE, ALICE_PW)
            other.select("INBOX")
            other.store("1", "+FLAGS", "(\\Seen)")
            assert raw.line() == b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n"
            other.store("1", "+FLAGS", "(\\Deleted)")
            raw.line()
            other.expunge()
            assert raw.line() == b"* 1 EXPUNGE\r\n"
        raw.send(b"DONE\r\n")
        assert raw.line() == b"i OK IDLE terminated\r\n"
    finally:
        raw.close()


def test_autologout_after_idle_timeout(tmp_path: Path) -> None:
    srv = IMAPServer(tmp_path, idle_timeout=0.3, login_timeout=0.3)
    try:
        raw = Raw(srv.port)
        raw.line()
        assert raw.line() == b"* BYE Autologout; idle for too long\r\n"
        raw.close()
        raw = Raw(srv.port)
        raw.login()
        raw.send(b"i IDLE\r\n")
        assert raw.line() == b"+ idling\r\n"
        assert raw.line() == b"* BYE Autologout; idle for too long\r\n"
        raw.close()
    finally:
        srv.close()


def test_connection_limits(tmp_path: Path) -> None:
    limits = replace(Limits(), connections_per_ip=3, connections_per_user=2)
    srv = IMAPServer(tmp_path, limits=limits)
    clients: list[Raw] = []
    try:
        for _ in range(2):
            c = Raw(srv.port)
            clients.append(c)
            c.login()
        third = Raw(srv.port)
        clients.append(third)
        third.line()
        assert third.cmd(b"l", b'LOGIN bob@example.test "bob-secret"')[-1].startswith(b"l OK")
        fourth = Raw(srv.port)
        clients.append(fourth)
        assert fourth.line() == b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
        clients[0].close()
        clients.pop(0)
        deadline = time.monotonic() + 5
        while srv.imap.session_count > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        c = Raw(srv.port)
        clients.append(c)
        c.line()
        assert c.cmd(b"l", b'LOGIN alice@example.test "alice secret"')[-1].startswith(b"l OK")
    finally:
        for c in clients:
            c.close()
        srv.close()


def test_per_user_limit(tmp_path: Path) -> None:
    srv = IMAPServer(tmp_path, limits=replace(Limits(), connections_per_user=1))
    a, b = Raw(srv.port), Raw(srv.port)
    try:
        a.login()
        b.line()
        assert b.cmd(b"l", b'LOGIN alice@example.test "alice secret"') == [
            b"l NO [LIMIT] Too many connections for this account from your address\r\n"]
    finally:
        a.close()
        b.close()
        srv.close()


def test_repeated_failures_are_refused(tmp_path: Path) -> None:
    limiter = AuthFailureLimiter(max_failures=3, window=300.0, free_failures=2, base_delay=0.01)
    srv = IMAPServer(tmp_path, limiter=limiter)
    raw = Raw(srv.port)
    try:
        raw.line()
        for _ in range(3):
            assert raw.cmd(b"l", b'LOGIN alice@example.test wrong')[-1] == (
                b"l NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
        assert raw.cmd(b"l", b'LOGIN alice@example.test "alice secret"') == [
            b"l NO [UNAVAILABLE] Too many failed logins from your address; try again later\r\n"]
    finally:
        raw.close()
        srv.close()


def test_hostile_messages_are_served_quickly(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    nested = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(2000))
    parts = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n" + b"".join(
        b"--zz\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(20000)) + b"--zz--\r\n"
    headers = b"From: a@b.test\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100000)) + b"\r\nbody\r\n"
    data: bytes | FetchData
    for data in (nested, parts, headers):
        server.deliver(ALICE, data)
    alice.select("INBOX")
    for n in (1, 2, 3):
        started = time.monotonic()
        typ, data = alice.fetch(str(n), "(BODYSTRUCTURE ENVELOPE)")
        assert typ == "OK", data
        assert time.monotonic() - started < 2.0
    assert alice.noop()[0] == "OK"


def test_quota_and_id(server: IMAPServer, alice: imaplib.IMAP4) -> None:
    assert alice.xatom("ID", '("name" "pytest")')[0] == "OK"
    assert re.match(rb'\("name" "Postroom"', cast(bytes, alice.untagged_responses.pop("ID")[0]))
    assert alice.getquotaroot("INBOX") == ("OK", [[b"INBOX"], [None]])   # no quota, no root
    server.directory.set_quota(ALICE, 10 * 1024 * 1024)
    server.deliver(ALICE, message("x", body="y" * 4096))
    with imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT) as c:
        c.login(ALICE, ALICE_PW)
        assert c.getquotaroot("INBOX") == ("OK", [[b'INBOX ""'], [b'"" (STORAGE 4 10240)']])
        assert c.getquota('""') == ("OK", [b'"" (STORAGE 4 10240)'])


def test_socket_closed_mid_command_leaves_the_server_well(server: IMAPServer) -> None:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    s.recv(1000)
    s.sendall(b"a LOGIN alice@example.test {100}\r\n")
    s.recv(1000)
    s.sendall(b"partial")
    s.close()
    with imaplib.IMAP4("127.0.0.1", server.port, timeout=TIMEOUT) as c:
        assert c.login(ALICE, ALICE_PW)[0] == "OK"
