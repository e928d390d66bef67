"""The MX as a client sees it: greeting, extensions, enhanced codes, delivery into the Maildir."""

from __future__ import annotations

import re
import smtplib

from tests.engine.smtp.conftest import HOSTNAME, MESSAGE, Server

ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


def test_greeting_and_ehlo_advertise_every_extension(mx: Server) -> None:
    with mx.raw() as c:
        assert c.code() == f"220 {HOSTNAME} ESMTP Postroom"
        c.send(b"EHLO client.test\r\n")
        lines = [line.decode() for line in c.reply()]
    assert lines[0] == f"250-{HOSTNAME}"
    keywords = [line[4:] for line in lines[1:]]
    for keyword in ("PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                    "CHUNKING", "STARTTLS"):
        assert keyword in keywords
    assert not any(k.startswith("AUTH") for k in keywords), "no AUTH before TLS"
    assert lines[-1].startswith("250 ") and all(line.startswith("250-") for line in lines[:-1])


def test_every_reply_after_ehlo_carries_an_enhanced_status_code(mx: Server) -> None:
    script = ["NOOP", "MAIL FROM:<bob@remote.test>", "RCPT TO:<nobody@example.test>",
              "RCPT TO:<alice@example.test>", "DATA", "Subject: x\r\n\r\nbody\r\n.", "VRFY alice",
              "EXPN team", "HELP", "BOGUS", "RCPT TO:<a@b.test>", "MAIL FROM:<bad", "RSET",
              "MAIL FROM:<a@b.test> FOO=1", "STARTTLS now", "QUIT"]
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        for line in script:
            reply = c.command(line)
            assert ENHANCED.match(reply), (line, reply)


def test_a_message_is_in_the_maildir_with_a_received_line_when_250_comes(mx: Server) -> None:
    with mx.smtp() as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(MESSAGE)
        assert code == 250 and text.startswith(b"2.0.0 Message accepted as ")
        stored = mx.messages("alice@example.test")     # already there: 250 means durable
    assert len(stored) == 1
    message = stored[0].replace(b"\n", b"\r\n")
    received, _, rest = message.partition(b"\r\nFrom: Bob")
    assert re.match(rb"Received: from client\.remote\.test \(\[127\.0\.0\.1\]\)\r\n"
                    rb"\tby mx\.example\.test with ESMTP id [0-9A-F]+\r\n"
                    rb"\tfor <alice@example\.test>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$",
                    received), received
    assert b"Subject: hello" in rest and rest.endswith(b"Hi Alice.\r\n")


def test_an_alias_for_two_accounts_and_a_repeated_recipient_deliver_once_each(mx: Server) -> None:
    with mx.smtp() as smtp:
        refused = smtp.sendmail("bob@remote.test", ["team@example.test", "alice@example.test",
                                                    "ALICE@example.test"], MESSAGE)
    assert refused == {}
    assert len(mx.messages("alice@example.test")) == 1
    assert len(mx.messages("bob@example.test")) == 1
    stored = mx.messages("bob@example.test")[0]
    assert b"\tfor <" not in stored.split(b"\n\n")[0], "no 'for' clause with several recipients"


def test_helo_clients_get_plain_smtp(mx: Server) -> None:
    with mx.smtp() as smtp:
        code, _ = smtp.helo("old.client.test")
        assert code == 250
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}
    assert b" with SMTP id " in mx.messages("alice@example.test")[0]


def test_sequence_errors(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        assert c.command("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
        c.command("EHLO client.test")
        assert c.command("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
        assert c.command("DATA").startswith("503 5.5.1")
        assert c.command("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
        assert c.command("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
        assert c.command("DATA").startswith("503 5.5.1")
        assert c.command("RSET").startswith("250 2.0.0")
        assert c.command("QUIT").startswith("221 2.0.0")
        assert c.closed()


def test_unknown_parameters_and_bad_addresses(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        assert c.command("MAIL FROM:<a@b.test> RET=FULL").startswith("555 5.5.4")
        assert c.command("MAIL FROM:<a@b.test> BODY=BINARYMIME").startswith("501 5.5.4")
        assert c.command("MAIL FROM:<a@@b.test>").startswith("501 5.1.7")
        assert c.command("MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME AUTH=<>").startswith("250 ")
        assert c.command("RCPT TO:<alice@example.test> NOTIFY=NEVER").startswith("555 5.5.4")
        assert c.command("RCPT TO:<alice@@example.test>").startswith("501 5.1.3")
        assert c.command("RCPT TO:<alice@example.test>").startswith("250 2.1.5")


def test_smtputf8_addresses_need_the_parameter(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        assert c.command("MAIL FROM:<josé@remote.test>").startswith("553 5.6.7")
        assert c.command("MAIL FROM:<josé@remote.test> SMTPUTF8").startswith("250 ")
        assert c.command("RCPT TO:<alice@example.test>").startswith("250 ")
        assert c.command("DATA").startswith("354 ")
        reply = c.command("Subject: caf\xc3\xa9\r\n\r\n\xe2\x82\xac\r\n.".encode("latin-1"))
        assert reply.startswith("250 ")
    stored = mx.messages("alice@example.test")[0]
    assert b"with UTF8SMTP id" in stored and "€".encode() in stored


def test_smtplib_send_message_with_8bitmime(mx: Server) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "bob@remote.test"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Grüße"
    msg.set_content("Schöne Grüße\n", cte="8bit")
    with mx.smtp() as smtp:
        assert smtp.send_message(msg, mail_options=["BODY=8BITMIME"]) == {}
    assert "Schöne Grüße".encode() in mx.messages("alice@example.test")[0]


def test_refused_and_accepted_mail_are_in_the_delivery_log(mx: Server) -> None:
    with mx.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        assert smtp.rcpt("victim@elsewhere.test")[0] == 554
        assert smtp.rcpt("alice@example.test")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
    rejected = mx.log_events("rejected")
    assert [(e.recipient, e.detail, e.client_ip) for e in rejected] == [
        ("victim@elsewhere.test", "relay denied", "127.0.0.1")]
    assert rejected[0].remote_reply.startswith("554 5.7.1")
    received = mx.log_events("received")
    delivered = mx.log_events("delivered")
    assert [(e.sender, e.recipient) for e in received] == [("bob@remote.test", "alice@example.test")]
    assert [e.recipient for e in delivered] == ["alice@example.test"]
    assert received[0].message_id == delivered[0].message_id != ""
    assert received[0].size == delivered[0].size == len(mx.messages("alice@example.test")[0].replace(
        b"\n", b"\r\n"))


def test_vrfy_does_not_tell_who_exists(mx: Server) -> None:
    with mx.smtp() as smtp:
        assert smtp.verify("alice@example.test")[0] == 252
        assert smtp.verify("nobody@example.test")[0] == 252


def test_an_http_request_is_answered_and_closed(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        assert c.command("GET / HTTP/1.1").startswith("421 4.7.0")
        assert c.closed()


def test_an_http_request_with_a_long_url_is_closed_too(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        assert c.command("GET /" + "a" * 1000 + " HTTP/1.1").startswith("421 4.7.0")
        assert c.closed()


def test_the_session_closes_after_too_many_errors(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        for _ in range(21):
            assert c.command("BOGUS").startswith("500 5.5.1")
        assert c.code().startswith("421 4.7.0")
        assert c.closed()


def test_smtplib_errors_surface_as_exceptions_not_hangs(mx: Server) -> None:
    with mx.smtp() as smtp:
        try:
            smtp.sendmail("bob@remote.test", ["nobody@example.test"], MESSAGE)
        except smtplib.SMTPRecipientsRefused as exc:
            assert exc.recipients["nobody@example.test"][0] == 550
        else:
            raise AssertionError("expected a refusal")
