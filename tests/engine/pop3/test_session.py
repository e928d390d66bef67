"""Byte-exact POP3 transcripts over real loopback sockets against the real store and directory."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import pytest

from engine.pop3 import session as pop3_session

from .conftest import ALICE, ALICE_PW, BOB, BOB_PW, POP3Server, Wire, message

DOTTED = (b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
          b".leading dot\r\n..two dots\r\n.\r\nmiddle . line\r\n.\r\n")


def test_greeting_and_capabilities_on_the_plain_port(wire: Any) -> None:
    w = wire()
    assert w.greeting.startswith(b"+OK ")
    _, body = w.multi("CAPA")
    caps = body.decode().split("\r\n")[:-2]
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert cap in caps
    assert any(c.startswith("SASL ") and "PLAIN" in c.split() for c in caps)
    assert any(c.startswith("IMPLEMENTATION ") for c in caps)


def test_implicit_tls_port_offers_no_stls(server: POP3Server, wire: Any) -> None:
    w = wire(server.tls_port, tls=server.client_tls)
    assert w.greeting.startswith(b"+OK")
    _, body = w.multi("CAPA")
    assert b"STLS" not in body and b"USER" in body
    assert w.cmd("STLS").startswith(b"-ERR")


def test_login_stat_list_uidl_retr_top(server: POP3Server, wire: Any) -> None:
    first = message("one")
    server.deliver(ALICE, first)
    server.deliver(ALICE, DOTTED)
    uv = server.uidvalidity()
    uid1, uid2 = server.uids()
    w = wire()
    total = len(first) + len(DOTTED)
    assert w.login() == f"+OK maildrop has 2 messages ({total} octets)\r\n".encode()
    assert w.cmd("STAT") == f"+OK 2 {total}\r\n".encode()
    assert w.multi("LIST")[1] == f"1 {len(first)}\r\n2 {len(DOTTED)}\r\n.\r\n".encode()
    assert w.cmd("LIST 2") == f"+OK 2 {len(DOTTED)}\r\n".encode()
    assert w.multi("UIDL")[1] == f"1 {uv}.{uid1}\r\n2 {uv}.{uid2}\r\n.\r\n".encode()
    assert w.cmd("UIDL 1") == f"+OK 1 {uv}.{uid1}\r\n".encode()

    status, body = w.multi("RETR 2")
    assert status == f"+OK {len(DOTTED)} octets\r\n".encode()
    # RFC 1939 §3 byte-stuffing, exactly:
    assert body == (b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
                    b"..leading dot\r\n...two dots\r\n..\r\nmiddle . line\r\n..\r\n.\r\n")

    _, top = w.multi("TOP 2 1")
    assert top == b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n..leading dot\r\n.\r\n"
    _, top0 = w.multi("TOP 1 0")
    assert top0.endswith(b"\r\n\r\n.\r\n") and b"Hello" not in top0
    assert w.cmd("QUIT").startswith(b"+OK")
    assert w.closed()


def test_retr_does_not_set_seen(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("unseen"))
    w = wire()
    w.login()
    w.multi("RETR 1")
    assert w.cmd("QUIT").startswith(b"+OK")
    assert w.closed()
    (meta,) = server.store.mailbox(ALICE).messages("INBOX")
    assert "\\Seen" not in meta.flags


def test_wrong_password_is_auth_error_and_the_session_goes_on(wire: Any) -> None:
    w = wire()
    assert w.login(password="wrong") == b"-ERR [AUTH] authentication failed\r\n"
    assert w.cmd("STAT").startswith(b"-ERR")                  # still not logged in
    assert w.cmd("PASS " + ALICE_PW) == b"-ERR send USER first\r\n"
    assert w.login().startswith(b"+OK maildrop has 0 messages")


def test_password_with_spaces_and_unknown_user(wire: Any) -> None:
    w = wire()
    assert w.login(user="nobody@example.test", password="x").startswith(b"-ERR [AUTH]")
    assert w.login(ALICE, ALICE_PW).startswith(b"+OK")        # "alice secret" contains a space


def test_commands_in_the_wrong_state_unknown_commands_and_bad_numbers(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("only"))
    w = wire()
    for cmd in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP"):
        assert w.cmd(cmd).startswith(b"-ERR "), cmd
    assert w.cmd("XYZ") == b"-ERR unknown command XYZ\r\n"
    assert w.cmd("XYZZY") == b"-ERR unknown command\r\n"
    w.login()
    assert w.cmd("USER bob").startswith(b"-ERR ")
    assert w.cmd("STLS").startswith(b"-ERR ")
    for cmd in ("RETR 0", "RETR 2", "RETR", "RETR x", "RETR -1", "LIST 99", "DELE 2", "TOP 1", "TOP 1 x",
                "UIDL 5", "STAT 1", "NOOP now"):
        reply = w.cmd(cmd)
        assert reply.startswith(b"-ERR "), (cmd, reply)
    assert w.cmd("NOOP") == b"+OK\r\n"
    assert w.cmd("STAT").startswith(b"+OK 1 ")


def test_a_command_line_over_512_octets_is_refused_and_the_next_one_works(wire: Any) -> None:
    w = wire()
    assert w.cmd("USER " + "a" * 600) == b"-ERR command line longer than 512 octets\r\n"
    assert w.cmd("USER " + "b" * 100_000) == b"-ERR command line longer than 512 octets\r\n"
    assert w.login().startswith(b"+OK")


def test_binary_garbage_gets_an_error_not_a_hangup(wire: Any) -> None:
    w = wire()
    w.send(b"\xff\xfe\x00\x01\r\n")
    assert w.line().startswith(b"-ERR")
    assert w.cmd("NOOP").startswith(b"-ERR")                  # valid only after login, but answered


def test_dele_applies_only_at_quit(server: POP3Server, wire: Any) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    uids = server.uids()
    w = wire()
    w.login()
    assert w.cmd("DELE 2") == b"+OK message 2 deleted\r\n"
    assert w.cmd("DELE 2") == b"-ERR message 2 already deleted\r\n"
    assert w.cmd("RETR 2") == b"-ERR message 2 already deleted\r\n"
    assert w.cmd("STAT").startswith(b"+OK 2 ")
    assert w.multi("LIST")[1].startswith(b"1 ") and b"\r\n2 " not in w.multi("LIST")[1]
    assert server.uids() == uids                              # nothing removed yet
    assert w.cmd("QUIT") == b"+OK Postroom POP3 server signing off (2 messages left)\r\n"
    assert w.closed()
    assert server.uids() == [uids[0], uids[2]]


def test_rset_undoes_dele(server: POP3Server, wire: Any) -> None:
    for i in range(2):
        server.deliver(ALICE, message(f"m{i}"))
    uids = server.uids()
    w = wire()
    w.login()
    w.cmd("DELE 1")
    w.cmd("DELE 2")
    assert w.cmd("STAT") == b"+OK 0 0\r\n"
    assert w.cmd("RSET").startswith(b"+OK maildrop has 2 messages")
    assert w.cmd("QUIT").startswith(b"+OK")
    assert w.closed()
    assert server.uids() == uids


def test_a_dropped_connection_deletes_nothing(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("keep me"))
    w = wire()
    w.login()
    w.cmd("DELE 1")
    w.close()
    # The lock is released when the server notices the close; then a new session sees the message.
    w2 = wire()
    _wait_for_login(w2)
    assert w2.cmd("STAT").startswith(b"+OK 1 ")


def _wait_for_login(w: Wire, within: float = 10.0) -> None:
    """Logs in, retrying while an old session of ours still holds the maildrop (until a deadline)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        reply = w.login()
        if reply.startswith(b"+OK"):
            return
        assert reply.startswith(b"-ERR [IN-USE]"), reply
    raise AssertionError("maildrop stayed locked")


def test_second_session_is_refused_in_use_until_the_first_quits(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("hello"))
    first = wire()
    assert first.login().startswith(b"+OK")
    second = wire()
    assert second.login().startswith(b"-ERR [IN-USE] ")
    tls_session = wire(server.tls_port, tls=server.client_tls)   # pop3s shares the lock
    assert tls_session.login().startswith(b"-ERR [IN-USE] ")
    other_user = wire()
    assert other_user.login(BOB, BOB_PW).startswith(b"+OK")      # the lock is per maildrop
    assert first.cmd("QUIT").startswith(b"+OK")
    assert first.closed()
    assert second.login().startswith(b"+OK maildrop has 1 messages")


def test_mail_arriving_during_a_session_waits_for_the_next_one(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("before"))
    w = wire()
    w.login()
    server.deliver(ALICE, message("during"))
    assert w.cmd("STAT").startswith(b"+OK 1 ")
    assert w.cmd("RETR 2").startswith(b"-ERR ")
    w.cmd("DELE 1")
    assert w.cmd("QUIT").startswith(b"+OK")
    assert w.closed()
    w2 = wire()
    assert w2.login().startswith(b"+OK maildrop has 1 messages")
    _, body = w2.multi("RETR 1")
    assert b"Subject: during" in body


def test_uidl_is_stable_across_sessions_and_renumbering(server: POP3Server, wire: Any) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    w = wire()
    w.login()
    _, before = w.multi("UIDL")
    ids = [line.split(b" ")[1] for line in before.split(b"\r\n")[:-2]]
    w.cmd("DELE 1")
    w.cmd("QUIT")
    assert w.closed()
    w2 = wire()
    w2.login()
    _, after = w2.multi("UIDL")
    assert after == b"1 " + ids[1] + b"\r\n2 " + ids[2] + b"\r\n.\r\n"


def test_message_expunged_by_another_client_mid_session(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("a"))
    server.deliver(ALICE, message("b"))
    w = wire()
    w.login()
    server.store.mailbox(ALICE).remove("INBOX", [server.uids()[0]])
    assert w.cmd("RETR 1").startswith(b"-ERR [SYS/TEMP] ")
    assert w.multi("RETR 2")[0].startswith(b"+OK")
    w.cmd("DELE 1")                                           # already gone: removing it again is fine
    assert w.cmd("QUIT").startswith(b"+OK")


def test_pipelined_commands_are_answered_in_order(server: POP3Server, wire: Any) -> None:
    for i in range(5):
        server.deliver(ALICE, message(f"p{i}", body=".dot\r\n" * 50))
    w = wire()
    w.send(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\n".encode()
           + b"".join(f"RETR {i}\r\n".encode() for i in range(1, 6)) + b"STAT\r\nQUIT\r\n")
    assert w.line().startswith(b"+OK")
    assert w.line().startswith(b"+OK maildrop has 5")
    for i in range(5):
        assert w.line().startswith(b"+OK")
        assert f"Subject: p{i}".encode() in w.body()
    assert w.line().startswith(b"+OK 5 ")
    assert w.line().startswith(b"+OK")
    assert w.closed()


class TestSASL:
    def test_auth_lists_mechanisms(self, wire: Any) -> None:
        assert wire().multi("AUTH")[1] == b"PLAIN\r\nLOGIN\r\n.\r\n"

    def test_plain_with_initial_response(self, wire: Any) -> None:
        import base64
        token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
        assert wire().cmd(f"AUTH PLAIN {token}").startswith(b"+OK maildrop has")

    def test_plain_after_an_empty_challenge(self, wire: Any) -> None:
        import base64
        w = wire()
        assert w.cmd("AUTH PLAIN") == b"+ \r\n"
        token = base64.b64encode(f"{ALICE}\0{ALICE}\0{ALICE_PW}".encode()).decode()
        assert w.cmd(token).startswith(b"+OK maildrop has")

    def test_login_mechanism(self, wire: Any) -> None:
        import base64
        w = wire()
        assert w.cmd("AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
        assert w.cmd(base64.b64encode(ALICE.encode()).decode()).startswith(b"+ ")
        assert w.cmd(base64.b64encode(ALICE_PW.encode()).decode()).startswith(b"+OK")

    def test_cancel_bad_base64_wrong_password_and_unknown_mechanism(self, wire: Any) -> None:
        import base64
        w = wire()
        w.cmd("AUTH PLAIN")
        assert w.cmd("*") == b"-ERR authentication cancelled\r\n"
        assert w.cmd("AUTH PLAIN !!!notbase64").startswith(b"-ERR [AUTH] ")
        bad = base64.b64encode(f"\0{ALICE}\0nope".encode()).decode()
        assert w.cmd(f"AUTH PLAIN {bad}") == b"-ERR [AUTH] authentication failed\r\n"
        assert w.cmd("AUTH CRAM-MD5").startswith(b"-ERR [AUTH] ")
        assert w.login().startswith(b"+OK")


def test_repeated_failures_are_rate_limited_per_address(tmp_path: Any) -> None:
    from engine.auth import AuthFailureLimiter

    limiter = AuthFailureLimiter(max_failures=3, window=300.0, free_failures=2, base_delay=0.01,
                                 max_delay=0.05)
    srv = POP3Server(tmp_path, limiter=limiter)
    try:
        w = Wire(srv.port)
        try:
            for _ in range(3):
                assert w.login(password="bad").startswith(b"-ERR [AUTH] ")
            assert limiter.blocked("127.0.0.1")
            # Blocked: even the right password is not tried, and the reply says "later".
            assert w.login().startswith(b"-ERR [SYS/TEMP] ")
        finally:
            w.close()
    finally:
        srv.close()


def test_plaintext_login_needs_tls_off_loopback_and_stls_discards_pipelined_plaintext(tmp_path: Any) -> None:
    srv = POP3Server(tmp_path, loopback_is_secure=False)
    try:
        w = Wire(srv.port)
        try:
            _, caps = w.multi("CAPA")
            assert b"STLS" in caps and b"USER" not in caps and b"SASL" not in caps
            assert w.cmd(f"USER {ALICE}").startswith(b"-ERR [AUTH] ")
            assert w.cmd("AUTH PLAIN AGFsaWNlAHg=").startswith(b"-ERR [AUTH] ")
            # An attacker's plaintext behind STLS (CVE-2011-0411 style) must not run inside TLS.
            w.send(b"STLS\r\nQUIT\r\n")
            assert w.line() == b"+OK begin TLS negotiation\r\n"
            assert w.buffer == b""
            w.starttls(srv.client_tls)
            _, caps = w.multi("CAPA")                     # the injected QUIT did not close us
            assert b"STLS" not in caps and b"USER" in caps
            assert w.cmd("STLS").startswith(b"-ERR ")
            assert w.login().startswith(b"+OK")
        finally:
            w.close()
    finally:
        srv.close()


def test_idle_sessions_are_logged_out_without_applying_deletions(tmp_path: Any) -> None:
    srv = POP3Server(tmp_path, idle_timeout=0.3)
    try:
        srv.deliver(ALICE, message("stays"))
        w = Wire(srv.port)
        try:
            w.login()
            w.cmd("DELE 1")
            assert w.line().startswith(b"-ERR autologout")    # arrives after 0.3 s of silence
            assert w.closed()
        finally:
            w.close()
        assert len(srv.uids()) == 1
    finally:
        srv.close()


def test_connections_per_address_are_limited(tmp_path: Any) -> None:
    from engine.config import Limits

    srv = POP3Server(tmp_path, limits=Limits(connections_per_ip=2))
    try:
        a, b = Wire(srv.port), Wire(srv.port)
        c = Wire(srv.port)
        try:
            assert a.greeting.startswith(b"+OK") and b.greeting.startswith(b"+OK")
            assert c.greeting.startswith(b"-ERR [SYS/TEMP] ")
            assert c.closed()
            a.cmd("QUIT")
            assert a.closed()
            deadline = time.monotonic() + 10              # the slot frees when the server sees the close
            while time.monotonic() < deadline:
                d = Wire(srv.port)
                ok = d.greeting.startswith(b"+OK")
                d.close()
                if ok:
                    break
            else:
                raise AssertionError("connection slot never freed")
        finally:
            for w in (a, b, c):
                w.close()
    finally:
        srv.close()


def test_stop_closes_idle_sessions_and_releases_the_maildrop(tmp_path: Any) -> None:
    srv = POP3Server(tmp_path)
    try:
        w = Wire(srv.port)
        w.login()
        srv.call(srv.pop3.stop(grace=2.0))
        assert w.closed()
        w.close()
        key = pop3_session.maildrop_key(srv.store, ALICE)
        assert not pop3_session.MAILDROP_LOCKS.held(key)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    finally:
        srv.close()


def test_tls_port_serves_mail(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, DOTTED)
    w = wire(server.tls_port, tls=server.client_tls)
    assert isinstance(w.sock, ssl.SSLSocket)
    w.login()
    _, body = w.multi("RETR 1")
    assert body.startswith(b"From: a@remote.test")


def test_a_client_that_stops_reading_is_cut_off_and_the_maildrop_freed(tmp_path: Any) -> None:
    srv = POP3Server(tmp_path, idle_timeout=0.5)
    try:
        srv.deliver(ALICE, message("small"))
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 3000            # 3 MB
        srv.deliver(ALICE, big)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", srv.port))
        try:
            sock.sendall(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\n".encode() + b"RETR 2\r\n" * 20)
            # We read nothing; the server must give up within its idle timeout and free the lock.
            other = Wire(srv.port)
            try:
                _wait_for_login(other)
            finally:
                other.close()
        finally:
            sock.close()
    finally:
        srv.close()


def test_quit_removals_reach_imap_as_expunges(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("a"))
    server.deliver(ALICE, message("b"))
    box = server.store.mailbox(ALICE)
    before = box.status("INBOX").highestmodseq
    gone = server.uids()[0]
    w = wire()
    w.login()
    w.cmd("DELE 1")
    assert w.cmd("QUIT").startswith(b"+OK")
    assert w.closed()
    # What an IMAP session's NOOP/IDLE reads: a plain EXPUNGE of that UID (RFC 3501 §7.4.1).
    assert list(box.changes_since("INBOX", before).expunged) == [gone]


def test_any_line_gets_one_status_reply_and_the_session_survives(server: POP3Server) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    server.deliver(ALICE, message("fuzz"))
    w = Wire(server.port)
    try:
        w.login()

        @settings(max_examples=40, deadline=None)
        @given(st.binary(max_size=700).map(lambda b: b.replace(b"\n", b"x").replace(b"\r", b"x")))
        def probe(line: bytes) -> None:
            head = line[:5].upper()
            if head.startswith((b"QUIT", b"AUTH", b"LIST", b"UIDL", b"CAPA", b"RETR ", b"TOP ")):
                return                      # ends the session or answers in several lines
            w.send(line + b"\r\n")
            reply = w.line()
            assert reply.startswith((b"+OK", b"-ERR ")) and reply.endswith(b"\r\n"), (line, reply)

        probe()
        assert w.cmd("STAT").startswith(b"+OK 1 ")
    finally:
        w.close()


def test_quit_then_half_close_still_gets_its_reply_and_applies_deletions(server: POP3Server, wire: Any) -> None:
    server.deliver(ALICE, message("gone"))
    w = wire()
    w.login()
    w.send(b"DELE 1\r\nQUIT\r\n")
    w.sock.shutdown(socket.SHUT_WR)
    assert w.line() == b"+OK message 1 deleted\r\n"
    assert w.line() == b"+OK Postroom POP3 server signing off (maildrop empty)\r\n"
    assert w.closed()
    assert server.uids() == []
