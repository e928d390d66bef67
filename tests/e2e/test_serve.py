"""Issue 2 as a new user meets it: `postroom serve` on a fresh data dir, mail in from real clients."""

from __future__ import annotations

import email
import email.policy
import shutil
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from engine.eventloop import loop_kind
from tests.e2e.conftest import Server, free_port, postroom

MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHi Alice.\r\n"


def maildir_files(data: Path, address: str) -> list[Path]:
    user, domain = address.split("@")
    box = data / "mail" / domain / user
    return sorted([*box.joinpath("new").iterdir(), *box.joinpath("cur").iterdir()])


def wait_for_files(data: Path, address: str, count: int, deadline: float = 5.0) -> list[Path]:
    end = time.monotonic() + deadline
    while True:
        files = maildir_files(data, address)
        if len(files) >= count or time.monotonic() > end:
            return files
        time.sleep(0.05)


def test_smtplib_delivers_into_the_maildir_with_a_received_header(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.remote.test")
        refused = smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE)
        assert refused == {}
    files = maildir_files(server.data_dir, "alice@example.test")
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    received = message.get_all("Received")
    assert received and len(received) == 1
    assert received[0].startswith("from client.remote.test") and "by mx.example.test" in received[0]
    assert message["Subject"] == "hello"
    # RFC 8601 §5: the verifier's own Authentication-Results sits with its trace headers, above the body.
    assert "mx.example.test" in str(message["Authentication-Results"])


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is installed by `make test` (Debian package)")
def test_swaks_delivers_and_submits_with_starttls_and_auth(server: Server) -> None:
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.ports["smtp"]),
                          "--to", "alice@example.test", "--from", "carol@remote.test", "--body", "via swaks"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.ports["submission"]), "--tls",
                          "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
                          "--from", "alice@example.test", "--to", "alice@example.test", "--body", "to myself"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(wait_for_files(server.data_dir, "alice@example.test", 2)) == 2


def test_relaying_unknown_users_and_clear_text_auth_are_refused(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("bob@remote.test")
        code, _ = smtp.rcpt("victim@elsewhere.test")
        assert code in (550, 554)
        code, _ = smtp.rcpt("nobody@example.test")
        assert code == 550
        code, _ = smtp.rcpt("alice@example.test")
        assert code == 250          # the session stays usable
        smtp.rset()
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.ehlo("client.remote.test")
        assert not smtp.has_extn("auth"), "AUTH must not be offered before STARTTLS"
        code, _ = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        assert code >= 500
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        smtp.starttls(context=context)
        smtp.ehlo("client.remote.test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("alice@example.test", "wrong")
        smtp.login("alice@example.test", "alice-pw")


def test_an_alias_added_while_serving_takes_effect(server: Server) -> None:
    postroom(server.data_dir, "alias", "add", "sales@example.test", "alice@example.test")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        assert smtp.sendmail("bob@remote.test", ["sales@example.test"], MESSAGE) == {}
    assert len(maildir_files(server.data_dir, "alice@example.test")) == 1


def test_a_message_acknowledged_before_kill_9_is_there_after_restart(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE)
        server.kill9()
    server.start()
    assert len(maildir_files(server.data_dir, "alice@example.test")) == 1
    assert server.stop() is not None


def test_privileged_port_without_permission_is_explained(tmp_path: Path) -> None:
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0":
        # Root may bind port 25; the busy-port message is the one a user can meet here.
        port = free_port()
        import socket

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", port))
            busy.listen()
            result = postroom(tmp_path, "serve", f"--listen=smtp=127.0.0.1:{port}", check=False, timeout=30)
        assert result.returncode == 1
        assert "already in use" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        result = postroom(tmp_path, "serve", "--listen=smtp=127.0.0.1:25", check=False, timeout=30)
        assert result.returncode == 1
        assert "CAP_NET_BIND_SERVICE" in result.stderr and "--listen" in result.stderr


def test_a_broken_settings_file_stops_the_server_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "postroom.toml").write_text('[limits]\nrecipients = "many"\n')
    result = postroom(tmp_path, "serve", f"--listen=smtp=127.0.0.1:{free_port()}", check=False, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "postroom.toml:2: limits.recipients" in result.stderr


def test_serve_reports_the_loop_it_runs_on(server: Server) -> None:
    """uvloop is a dependency (engine/eventloop.py); the start-up line says the server really runs on it, or on
    asyncio's own loop when POSTROOM_EVENT_LOOP asks for that."""
    output = server.stop()
    assert f"serving mail for mx.example.test on {loop_kind()}; data in " in output
