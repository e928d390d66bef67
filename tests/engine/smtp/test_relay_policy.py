"""Who may send what to whom: the MX's relay rules and the submission ports' login rules."""

from __future__ import annotations

import email
import email.message
import email.utils
import errno
import re
import smtplib
import time
from typing import cast

import pytest

from engine.auth import AuthFailureLimiter, Directory
from tests.engine.smtp.conftest import (
    FAST_HASH,
    HOSTNAME,
    MESSAGE,
    RecordingOutbound,
    Server,
    ServerFactory,
    client_tls,
)

# --- the MX ---------------------------------------------------------------------------------------


def rcpt(server: Server, *recipients: str, sender: str = "bob@remote.test") -> list[str]:
    with server.raw() as c:
        c.code()
        c.command("EHLO client.test")
        assert c.command(f"MAIL FROM:<{sender}>").startswith("250 ")
        return [c.command(f"RCPT TO:{r}") for r in recipients]


def test_the_mx_takes_local_users_and_refuses_unknown_ones_and_relaying(mx: Server) -> None:
    replies = rcpt(mx, "<alice@example.test>", "<nobody@example.test>", "<victim@elsewhere.test>",
                   "<Alice@EXAMPLE.test>")
    assert replies[0].startswith("250 2.1.5")
    assert replies[1].startswith("550 5.1.1")
    assert replies[2].startswith("554 5.7.1")
    assert replies[3].startswith("250 2.1.5")


@pytest.mark.parametrize("trick", [
    "<alice%elsewhere.test@example.test>",
    "<elsewhere.test!alice@example.test>",
    '<"alice@elsewhere.test"@example.test>',
    "<alice%elsewhere.test>",
])
def test_relay_tricks_for_a_local_domain_are_refused(mx: Server, trick: str) -> None:
    reply = rcpt(mx, trick)[0]
    assert reply[:9] in ("550 5.7.1", "554 5.7.1", "501 5.1.3"), reply


def test_a_source_route_is_ignored_and_only_the_final_mailbox_decides(mx: Server) -> None:
    through_us_to_elsewhere, through_elsewhere_to_us = rcpt(
        mx, "<@example.test:victim@elsewhere.test>", "<@elsewhere.test,@relay.test:alice@example.test>")
    assert through_us_to_elsewhere.startswith("554 5.7.1")
    assert through_elsewhere_to_us.startswith("250 2.1.5")


def test_postmaster_without_a_domain_reaches_someone(mx: Server) -> None:
    with mx.smtp() as smtp:
        assert smtp.sendmail("bob@remote.test", ["Postmaster"], MESSAGE) == {}
    assert len(mx.messages("alice@example.test")) == 1


def test_an_alias_forwarding_off_site_needs_the_outbound_queue(make_server: ServerFactory) -> None:
    without = make_server("smtp")
    assert rcpt(without, "<fwd@example.test>")[0].startswith("451 4.3.0")
    queue = RecordingOutbound()
    with_queue = make_server("smtp", outbound=queue)
    with with_queue.smtp() as smtp:
        assert smtp.sendmail("bob@remote.test", ["fwd@example.test"], MESSAGE) == {}
    assert [(s, r) for s, r, _, _ in queue.items] == [("bob@remote.test", ["someone@remote.test"])]


def test_the_recipient_limit_answers_452_and_keeps_the_others(make_server: ServerFactory) -> None:
    server = make_server("smtp", limits={"recipients": 3})
    replies = rcpt(server, *["<alice@example.test>"] * 3, "<bob@example.test>", "<bob@example.test>")
    assert [r[:9] for r in replies] == ["250 2.1.5"] * 3 + ["452 4.5.3"] * 2


# --- submission -----------------------------------------------------------------------------------


def test_submission_wants_tls_before_auth_and_auth_before_mail(submission: Server) -> None:
    with submission.raw() as c:
        c.code()
        c.send(b"EHLO client.test\r\n")
        assert not any(b"AUTH" in line for line in c.reply())
        assert c.login("alice@example.test", "alice-pw").startswith("538 5.7.11")
        assert c.command("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")
        assert c.command("STARTTLS").startswith("220 2.0.0")
        c.starttls()
        c.send(b"EHLO client.test\r\n")
        assert b"250 AUTH PLAIN LOGIN" in c.reply()
        assert c.command("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")
        assert c.login("alice@example.test", "alice-pw").startswith("235 2.7.0")
        assert c.command("MAIL FROM:<alice@example.test>").startswith("250 ")


def test_a_wrong_password_gets_535_and_the_session_goes_on(submission: Server) -> None:
    with submission.smtp() as smtp:
        smtp.starttls(context=client_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.login("alice@example.test", "wrong")
        assert err.value.smtp_code == 535 and cast(bytes, err.value.smtp_error).startswith(b"5.7.8")
        smtp.login("alice@example.test", "alice-pw")
        assert smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
    stored = submission.messages("bob@example.test")[0]
    assert b" with ESMTPSA id " in stored and b"(using TLSv1.3 with cipher " in stored


def test_auth_login_with_challenges(submission: Server) -> None:
    with submission.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.ehlo()
        smtp.user, smtp.password = "bob@example.test", "bob-pw"
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235


def test_a_user_sends_only_as_their_own_addresses(submission: Server) -> None:
    with submission.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        code, text = smtp.mail("bob@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        code, _ = smtp.mail("alice+lists@example.test")
        assert code == 250


def test_remote_recipients_of_a_user_go_to_the_outbound_queue(make_server: ServerFactory) -> None:
    queue = RecordingOutbound()
    server = make_server("submission", outbound=queue)
    with server.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        assert smtp.sendmail("alice@example.test", ["carol@remote.test", "bob@example.test"], MESSAGE) == {}
    assert len(queue.items) == 1
    sender, recipients, data, who = queue.items[0]
    assert (sender, recipients, who) == ("alice@example.test", ["carol@remote.test"], "alice@example.test")
    assert data.startswith(b"Received: from ") and data.endswith(MESSAGE)
    assert len(server.messages("bob@example.test")) == 1


def test_without_an_outbound_queue_remote_recipients_wait_with_451(make_server: ServerFactory) -> None:
    server = make_server("submission", outbound=None)
    with server.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        smtp.mail("alice@example.test")
        code, text = smtp.rcpt("carol@remote.test")
        assert (code, text[:5]) == (451, b"4.3.0")


def test_an_authenticated_user_on_the_mx_may_relay(make_server: ServerFactory) -> None:
    queue = RecordingOutbound()
    server = make_server("smtp", outbound=queue)
    with server.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        assert smtp.sendmail("alice@example.test", ["carol@remote.test"], MESSAGE) == {}
    assert len(queue.items) == 1


def test_a_spool_failure_gets_452_and_the_message_is_not_taken(make_server: ServerFactory) -> None:
    queue = RecordingOutbound(fail=OSError(errno.ENOSPC, "No space left on device"))
    server = make_server("submission", outbound=queue)
    with server.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        smtp.mail("alice@example.test")
        smtp.rcpt("carol@remote.test")
        code, text = smtp.data(MESSAGE)
        assert (code, text[:5]) == (452, b"4.3.1")


def test_implicit_tls_submission(make_server: ServerFactory) -> None:
    server = make_server("submissions", outbound=RecordingOutbound())
    with server.smtp_ssl() as smtp:
        code, _ = smtp.ehlo("client.test")
        assert code == 250 and smtp.has_extn("auth") and not smtp.has_extn("starttls")
        smtp.login("alice@example.test", "alice-pw")
        assert smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
    assert b" with ESMTPSA id " in server.messages("bob@example.test")[0]


# --- password guessing ----------------------------------------------------------------------------


def test_failures_are_slowed_down_then_refused(make_server: ServerFactory) -> None:
    limiter = AuthFailureLimiter(max_failures=3, window=60, free_failures=1, base_delay=0.2, max_delay=0.2)
    server = make_server("submission", limiter=limiter)
    with server.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.command("STARTTLS")
        c.starttls()
        c.command("EHLO client.test")
        assert c.login("alice@example.test", "guess-1").startswith("535 5.7.8")
        started = time.monotonic()
        assert c.login("alice@example.test", "guess-2").startswith("535 5.7.8")
        assert time.monotonic() - started >= 0.2, "the second failure is answered after the delay"
        assert c.login("alice@example.test", "guess-3").startswith("535 5.7.8")
        assert c.login("alice@example.test", "alice-pw").startswith("454 4.7.0")
        assert c.command("NOOP").startswith("250 ")
    assert limiter.blocked("127.0.0.1")


def test_a_cancelled_or_garbled_exchange_gets_501(submission: Server) -> None:
    with submission.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.command("STARTTLS")
        c.starttls()
        c.command("EHLO client.test")
        assert c.command("AUTH PLAIN").startswith("334 ")
        assert c.command("*").startswith("501 ")
        assert c.command("AUTH PLAIN !!!notbase64").startswith("501 5.5.2")
        assert c.command("AUTH CRAM-MD5").startswith("504 5.5.4")
        assert c.login("alice@example.test", "alice-pw").startswith("235 ")
        assert c.login("alice@example.test", "alice-pw").startswith("503 5.5.1")


def test_directory_changes_apply_to_the_next_rcpt(mx: Server) -> None:
    """From this process (announced on the bus) and from another connection, as the CLI makes them."""
    assert rcpt(mx, "<sales@example.test>")[0].startswith("550 5.1.1")
    mx.services.directory.add_alias("sales@example.test", ["alice@example.test"])
    assert rcpt(mx, "<sales@example.test>")[0].startswith("250 2.1.5")
    assert rcpt(mx, "<carol@other.test>")[0].startswith("554 5.7.1")
    with Directory(mx.data_dir / "state.sqlite", hasher=FAST_HASH) as cli:
        cli.add_domain("other.test")
        cli.add_account("carol@other.test", "carol-pw")
        cli.remove_alias("sales@example.test")
    assert rcpt(mx, "<carol@other.test>", "<sales@example.test>")[0].startswith("250 2.1.5")
    assert rcpt(mx, "<sales@example.test>")[0].startswith("550 5.1.1")


# --- RFC 6409 §8: what the submission service adds ---------------------------------------------------

BARE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: no date, no id\r\n\r\nHi Bob.\r\n"


def _headers(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw)


def _submitted_to_bob(submission: Server, data: bytes) -> bytes:
    """Alice submits `data` to Bob over STARTTLS with AUTH; the file as stored in Bob's INBOX."""
    with submission.smtp() as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("alice@example.test", "alice-pw")
        assert smtp.sendmail("alice@example.test", ["bob@example.test"], data) == {}
    [stored] = submission.messages("bob@example.test")
    return stored


def test_submission_adds_a_missing_date_and_message_id(submission: Server) -> None:
    stored = _submitted_to_bob(submission, BARE)
    headers = _headers(stored)
    assert len(headers.get_all("Message-ID", [])) == 1
    assert re.fullmatch(rf"<[0-9A-F]+@{re.escape(HOSTNAME)}>", headers["Message-ID"])
    sent = email.utils.parsedate_to_datetime(headers["Date"])
    assert abs(sent.timestamp() - time.time()) < 300
    assert stored.endswith(BARE.replace(b"\r\n", b"\n"))        # the Maildir keeps LF line ends
    assert submission.log_events("received")[-1].message_id == headers["Message-ID"]


def test_submission_keeps_a_date_and_message_id_the_client_set(submission: Server) -> None:
    own = b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <mine@example.test>\r\n" + BARE
    headers = _headers(_submitted_to_bob(submission, own))
    assert headers.get_all("Message-ID") == ["<mine@example.test>"]
    assert headers.get_all("Date") == ["Mon, 1 Jan 2024 10:00:00 +0000"]


def test_the_mx_does_not_add_them_to_mail_from_elsewhere(mx: Server) -> None:
    with mx.smtp() as smtp:
        assert smtp.sendmail("carol@remote.test", ["bob@example.test"], BARE) == {}
    [stored] = mx.messages("bob@example.test")
    headers = _headers(stored)
    assert headers["Message-ID"] is None and headers["Date"] is None
