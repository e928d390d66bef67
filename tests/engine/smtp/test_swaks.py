"""The listeners as swaks, a third-party SMTP client, sees them (Debian package `swaks`)."""

from __future__ import annotations

import subprocess

import pytest

from tests.engine.smtp.conftest import RecordingOutbound, Server, ServerFactory, have

pytestmark = [pytest.mark.peers,
              pytest.mark.skipif(not have("swaks"), reason="swaks is installed by `make test` (Debian package)")]


def swaks(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.port), "--helo", "swaks.test",
                           "--timeout", "10", *args], capture_output=True, text=True, timeout=30)


def test_swaks_delivers_to_the_mx_with_pipelining(mx: Server) -> None:
    out = swaks(mx, "--pipeline", "--from", "carol@remote.test", "--to", "alice@example.test",
                "--body", "via swaks")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  250 2.0.0 Message accepted" in out.stdout
    assert b"via swaks" in mx.messages("alice@example.test")[0]


def test_swaks_is_refused_relaying(mx: Server) -> None:
    out = swaks(mx, "--from", "carol@remote.test", "--to", "victim@elsewhere.test")
    assert out.returncode != 0
    assert "<** 554 5.7.1 Relay access denied" in out.stdout


def test_swaks_submits_with_starttls_and_auth(make_server: ServerFactory) -> None:
    queue = RecordingOutbound()
    server = make_server("submission", outbound=queue)
    out = swaks(server, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test",
                "--auth-password", "alice-pw", "--from", "alice@example.test",
                "--to", "bob@example.test,dave@remote.test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(server.messages("bob@example.test")) == 1
    assert [r for _, r, _, _ in queue.items] == [["dave@remote.test"]]


def test_swaks_auth_login_over_implicit_tls(make_server: ServerFactory) -> None:
    server = make_server("submissions")
    out = swaks(server, "--tls-on-connect", "--auth", "LOGIN", "--auth-user", "bob@example.test",
                "--auth-password", "bob-pw", "--from", "bob@example.test", "--to", "alice@example.test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert b" with ESMTPSA id " in server.messages("alice@example.test")[0]


def test_swaks_wrong_password_and_clear_text_auth(submission: Server) -> None:
    out = swaks(submission, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test",
                "--auth-password", "nope", "--to", "bob@example.test")
    assert out.returncode != 0 and "535 5.7.8 Authentication credentials invalid" in out.stdout
    out = swaks(submission, "--auth", "PLAIN", "--auth-user", "alice@example.test",
                "--auth-password", "alice-pw", "--to", "bob@example.test")
    assert out.returncode != 0 and "did not advertise authentication" in out.stderr
