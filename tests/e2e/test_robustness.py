"""Robustness through `postroom serve`: junk and overlong lines on raw sockets get protocol errors and the
session goes on; SIGTERM lets a message in flight finish; a settings file with a typo stops serve with one
line.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, copy_data_dir, free_port, postroom, serving

ALICE, ALICE_PW = "alice@example.test", "alice-pw"


@pytest.fixture(scope="module")
def server(data_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = copy_data_dir(data_template, tmp_path_factory.mktemp("robust") / "data")
    with serving(data) as srv:
        yield srv
        srv.stop()


class Raw:
    """A byte-level client: send exactly what a broken or hostile peer would, read the replies as lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        line = self.file.readline(1 << 20)
        assert line.endswith(b"\r\n"), f"the server closed the session or sent a broken line: {line[:200]!r}"
        return line

    def smtp(self, data: bytes | None = None) -> bytes:
        """One SMTP reply, all its lines (RFC 5321 §4.2.1: the last has a space after the code)."""
        if data is not None:
            self.send(data)
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"".join(lines)

    def imap(self, tag: bytes, data: bytes) -> list[bytes]:
        """Sends a command, returns every line up to and including the tagged completion."""
        self.send(data)
        lines = [self.line()]
        while not lines[-1].startswith(tag + b" "):
            lines.append(self.line())
        return lines


# --- junk on every protocol ----------------------------------------------------------------------------------

def test_smtp_answers_junk_and_overlong_lines_with_errors_and_then_takes_mail(server: Server) -> None:
    c = Raw(server.ports["smtp"])
    try:
        assert c.line().startswith(b"220 ")
        assert c.smtp(b"EHLO client.remote.test\r\n").startswith(b"250")
        junk = {
            b"\x00\xff\xfe\x80 binary junk\r\n": b"500",
            b"NOOP " + b"x" * 2000 + b"\r\n": b"500",                 # RFC 5321 §4.5.3.1.4: 512 octets
            b"A" * 100_000 + b"\r\n": b"500",
            b"MAIL FROM:<" + b"c" * 600 + b"@remote.test>\r\n": b"501",  # §4.5.3.1.3: path of 256 octets
            b"RCPT TO:<alice@example.test>\r\n": b"503",                # no MAIL yet
            b"\r\n": b"500",
        }
        for line, code in junk.items():
            reply = c.smtp(line)
            assert reply.startswith(code), (line[:40], reply)
        assert c.smtp(b"NOOP\r\n").startswith(b"250")
        # The session still carries a whole transaction; a body line over 1000 octets is refused, not cut.
        assert c.smtp(b"MAIL FROM:<bob@remote.test>\r\n").startswith(b"250")
        assert c.smtp(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")
        assert c.smtp(b"DATA\r\n").startswith(b"354")
        reply = c.smtp(b"Subject: long\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
        assert reply.startswith(b"554"), reply                         # RFC 5321 §4.5.3.1.6
        assert c.smtp(b"MAIL FROM:<bob@remote.test>\r\n").startswith(b"250")
        assert c.smtp(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")
        assert c.smtp(b"DATA\r\n").startswith(b"354")
        assert c.smtp(b"Subject: after the junk\r\n\r\nStill here.\r\n.\r\n").startswith(b"250")
        assert c.smtp(b"QUIT\r\n").startswith(b"221")
    finally:
        c.close()


def test_imap_answers_junk_and_overlong_lines_with_bad_and_the_session_goes_on(server: Server) -> None:
    c = Raw(server.ports["imap"])
    try:
        assert c.line().startswith(b"* OK")
        c.send(b"\x00\xff\xfe junk without a tag\r\n")
        assert c.line().startswith(b"* BAD")                          # RFC 3501 §7.1.5: untagged BAD
        assert c.imap(b"a1", b"a1 NOOP\r\n")[-1].startswith(b"a1 OK")
        assert c.imap(b"a2", b"a2 " + b"X" * 70_000 + b"\r\n")[-1].startswith(b"a2 BAD")   # over 64 KiB
        assert c.imap(b"a3", b"a3 NOOP\r\n")[-1].startswith(b"a3 OK")
        login = f"a4 LOGIN {ALICE} {ALICE_PW}\r\n".encode()
        assert c.imap(b"a4", login)[-1].startswith(b"a4 OK")
        # A literal larger than allowed is refused before the client sends it (RFC 7888 §4, RFC 7889).
        assert c.imap(b"a5", b"a5 APPEND INBOX {999999999}\r\n")[-1].startswith(b"a5 NO")
        assert c.imap(b"a6", b'a6 SELECT "INBOX\r\n')[-1].startswith(b"a6 BAD")
        assert c.imap(b"a7", b"a7 SELECT INBOX\r\n")[-1].startswith(b"a7 OK")
        assert c.imap(b"a8", b"a8 FETCH 1:* (FLAGS\r\n")[-1].startswith(b"a8 BAD")
        assert c.imap(b"a9", b"a9 SEARCH " + b"(" * 5000 + b"\r\n")[-1].startswith(b"a9 BAD")
        assert c.imap(b"b1", b"b1 NOOP\r\n")[-1].startswith(b"b1 OK")
        lines = c.imap(b"b2", b"b2 LOGOUT\r\n")
        assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"b2 OK")
    finally:
        c.close()


def test_pop3_answers_junk_and_overlong_lines_with_err_and_the_session_goes_on(server: Server) -> None:
    c = Raw(server.ports["pop3"])
    try:
        assert c.line().startswith(b"+OK")
        for junk in (b"\x00\xff\xfe junk\r\n", b"USER " + b"u" * 2000 + b"\r\n", b"X" * 100_000 + b"\r\n",
                     b"\r\n", b"STAT\r\n"):                           # STAT before login: wrong state
            c.send(junk)
            reply = c.line()
            assert reply.startswith(b"-ERR"), (junk[:40], reply)
        c.send(f"USER {ALICE}\r\n".encode())
        assert c.line().startswith(b"+OK")
        c.send(f"PASS {ALICE_PW}\r\n".encode())
        assert c.line().startswith(b"+OK")
        for junk in (b"RETR 999\r\n", b"RETR abc\r\n", b"TOP 1\r\n", b"Y" * 100_000 + b"\r\n", b"\xff\r\n"):
            c.send(junk)
            reply = c.line()
            assert reply.startswith(b"-ERR"), (junk[:40], reply)
        c.send(b"NOOP\r\n")
        assert c.line().startswith(b"+OK")
        c.send(b"QUIT\r\n")
        assert c.line().startswith(b"+OK")
    finally:
        c.close()


# --- stopping ----------------------------------------------------------------------------------------------

def wait_refused(port: int, deadline: float = 10.0) -> None:
    """Until the port stops accepting: the listener has closed, so shutdown has begun."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepts {deadline}s after SIGTERM")


def test_sigterm_lets_a_message_in_flight_finish_closes_idle_sessions_and_serve_exits_0(data_template: Path,
                                                                                       tmp_path: Path) -> None:
    data = copy_data_dir(data_template, tmp_path / "data")
    with serving(data) as srv:
        c = Raw(srv.ports["smtp"])
        idle_imap = Raw(srv.ports["imap"])
        idle_pop = Raw(srv.ports["pop3"])
        try:
            assert idle_imap.line().startswith(b"* OK")
            assert idle_imap.imap(b"i1", f"i1 LOGIN {ALICE} {ALICE_PW}\r\n".encode())[-1].startswith(b"i1 OK")
            assert idle_imap.imap(b"i2", b"i2 SELECT INBOX\r\n")[-1].startswith(b"i2 OK")
            idle_imap.send(b"i3 IDLE\r\n")
            assert idle_imap.line().startswith(b"+ ")                    # RFC 2177: idling
            assert idle_pop.line().startswith(b"+OK")
            assert c.line().startswith(b"220")
            assert c.smtp(b"EHLO client.remote.test\r\n").startswith(b"250")
            assert c.smtp(b"MAIL FROM:<bob@remote.test>\r\n").startswith(b"250")
            assert c.smtp(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")
            assert c.smtp(b"DATA\r\n").startswith(b"354")
            c.send(b"Subject: in flight\r\n\r\nThe first half,\r\n")
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGTERM)
            wait_refused(srv.ports["smtp"])
            assert idle_imap.line().startswith(b"* BYE")                 # RFC 3501 §7.1.5
            last = idle_pop.file.readline()
            assert last == b"" or last.startswith(b"-ERR"), last        # closed (no QUIT: nothing deleted)
            reply = c.smtp(b"and the second half.\r\n.\r\n")
            assert reply.startswith(b"250"), reply
        finally:
            for client in (c, idle_imap, idle_pop):
                client.close()
        out = srv.stop()                                # asserts exit status 0
        assert "Traceback" not in out, out
        assert out.rstrip().endswith("postroom stopped: sessions finished, listeners and databases closed"), out
    files = [*(data / "mail" / "example.test" / "alice" / "new").iterdir()]
    assert len(files) == 1 and b"and the second half." in files[0].read_bytes()


# --- settings -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "where"), [
    ('hostname = "mx.example.test"\n[delivery]\nretry_shedule = "5m"\n', "postroom.toml:3: delivery.retry_shedule"),
    # A misspelt table is named with its line like a misspelt key (README: "naming the key and line").
    ('hostname = "mx.example.test"\n[lsiten]\nsmtp = "127.0.0.1:2525"\n', "postroom.toml:2: lsiten"),
    ('hostname = "mx.example.test\n', "postroom.toml: not valid TOML"),
    ('[limits]\nmessage_size = "25 MegaBytes"\n', "postroom.toml:2: limits.message_size"),
])
def test_a_typo_in_the_settings_stops_serve_with_one_line(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "postroom.toml").write_text(text)
    result = postroom(tmp_path, "serve", f"--listen=smtp=127.0.0.1:{free_port()}", check=False, timeout=20)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postroom: error: ") and where in lines[0], lines[0]
