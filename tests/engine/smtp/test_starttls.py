"""STARTTLS (RFC 3207): nothing sent or learned in the clear carries over into the TLS session."""

from __future__ import annotations

import logging

import pytest

from tests.engine.smtp.conftest import MESSAGE, Server, ServerFactory, client_tls


def test_commands_pipelined_behind_starttls_are_discarded(mx: Server, caplog: pytest.LogCaptureFixture) -> None:
    """CVE-2011-0411: plaintext injected after STARTTLS must not run inside the TLS session."""
    caplog.set_level(logging.INFO, logger="engine.smtp.server")
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        assert c.code().startswith("220 2.0.0")
        c.starttls()
        assert c.command("HELP").startswith("214 "), "the first reply over TLS answers our first command"
        assert c.command("MAIL FROM:<bob@remote.test>").startswith("503 5.5.1"), "EHLO needed again"
        c.send(b"EHLO client.test\r\n")
        c.reply()
        assert c.command("MAIL FROM:<bob@remote.test>").startswith("250 "), "no transaction was open"
    assert "discarded" in caplog.text


def test_tls_forgets_the_transaction_and_helo(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.command("MAIL FROM:<bob@remote.test>")
        assert c.command("STARTTLS").startswith("220 ")
        c.starttls()
        c.send(b"EHLO client.test\r\n")
        lines = c.reply()
        assert b"250-STARTTLS" not in lines and b"250 STARTTLS" not in lines
        assert c.command("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
        assert c.command("STARTTLS").startswith("503 5.5.1")


def test_smtplib_starttls_then_delivery_says_esmtps(mx: Server) -> None:
    with mx.smtp() as smtp:
        smtp.starttls(context=client_tls())
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}
    assert b" with ESMTPS id " in mx.messages("alice@example.test")[0]


def test_without_a_certificate_starttls_is_neither_offered_nor_done(make_server: ServerFactory) -> None:
    server = make_server("smtp", tls=False)
    with server.smtp() as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        code, text = smtp.docmd("STARTTLS")
        assert (code, text[:5]) == (454, b"4.7.0")


def test_a_failed_handshake_closes_only_that_connection(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        assert c.command("STARTTLS").startswith("220 ")
        c.send(b"this is not a TLS client hello\r\n" * 4)
        assert c.closed()
    with mx.smtp() as smtp:
        assert smtp.noop()[0] == 250
