"""What DATA and BDAT accept: line and size limits, SMTP smuggling, bare newlines, mail loops."""

from __future__ import annotations

import pytest

from tests.engine.smtp.conftest import MESSAGE, RawClient, Server, ServerFactory

HEADERS = b"From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: t\r\n\r\n"


def start_data(c: RawClient, recipient: str = "alice@example.test") -> None:
    c.code()
    c.command("EHLO client.test")
    assert c.command("MAIL FROM:<bob@remote.test>").startswith("250 ")
    assert c.command(f"RCPT TO:<{recipient}>").startswith("250 ")
    assert c.command("DATA").startswith("354 2.0.0")


def test_a_command_line_over_512_octets_gets_500_5_5_2_and_the_session_goes_on(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        assert c.command("NOOP " + "x" * 505).startswith("250 "), "512 octets with CRLF is fine"
        assert c.command("NOOP " + "x" * 506).startswith("500 5.5.2")
        assert c.command("NOOP " + "x" * 200_000).startswith("500 5.5.2")
        assert c.command("EHLO client.test").startswith("250 ")
        assert c.command("RCPT TO:<" + "a" * 600 + "@example.test>").startswith("500 5.5.2")
        assert c.command("NOOP").startswith("250 ")


def test_an_overlong_line_that_is_no_command_is_refused_as_too_long_not_as_unknown(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        assert c.command("X" * 2000) == "500 5.5.2 Line too long"
        assert c.command("XYZZY").startswith("500 5.5.1")
        assert c.command("NOOP").startswith("250 ")


def test_a_command_ending_in_a_bare_lf_is_refused(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.send(b"EHLO client.test\n")
        assert c.code().startswith("500 5.5.2")
        assert c.command("EHLO client.test").startswith("250 ")


def test_a_data_line_over_1000_octets_refuses_the_message_not_the_session(mx: Server) -> None:
    with mx.raw() as c:
        start_data(c)
        c.send(HEADERS + b"x" * 998 + b"\r\n" + b"y" * 999 + b"\r\n.\r\n")
        assert c.code().startswith("554 5.5.2")
        assert c.command("MAIL FROM:<bob@remote.test>").startswith("250 ")
        assert c.command("RCPT TO:<alice@example.test>").startswith("250 ")
        assert c.command("DATA").startswith("354 ")
        assert c.command(HEADERS + b"x" * 998 + b"\r\n.").startswith("250 ")
    assert len(mx.messages("alice@example.test")) == 1
    assert mx.log_events("rejected")[0].detail.startswith("Message has a line longer")


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smuggled_end_of_data_is_not_an_end(mx: Server, fake_end: bytes) -> None:
    """The 2023 SMTP smuggling attack: a second message hidden behind a terminator we must not honour."""
    smuggled = (b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\n")
    with mx.raw() as c:
        start_data(c)
        c.send(HEADERS + b"first" + fake_end + smuggled)
        reply = c.code()
        if b"\n" in fake_end.replace(b"\r\n", b""):
            assert reply.startswith("554 5.5.2"), reply             # bare LF: refused whole
        else:
            assert reply.startswith("250 "), reply                  # bare CR only: one message, kept
        assert c.command("NOOP").startswith("250 "), "the smuggled commands were never run"
    assert mx.messages("bob@example.test") == []
    stored = mx.messages("alice@example.test")
    assert all(b"first" in m and b"pay now" in m for m in stored)


def test_a_bare_cr_inside_a_line_is_kept(mx: Server) -> None:
    with mx.raw() as c:
        start_data(c)
        assert c.command(HEADERS + b"a\rb\r\n.").startswith("250 ")
    assert mx.messages("alice@example.test")[0].endswith(b"a\rb\n")


def test_dot_stuffing_is_undone(mx: Server) -> None:
    with mx.raw() as c:
        start_data(c)
        assert c.command(HEADERS + b"..\r\n...leading dots\r\n.").startswith("250 ")
    assert mx.messages("alice@example.test")[0].endswith(b"\n.\n..leading dots\n")


def test_an_empty_message_is_accepted(mx: Server) -> None:
    with mx.raw() as c:
        start_data(c)
        assert c.command(b".").startswith("250 ")
    assert mx.messages("alice@example.test")[0].startswith(b"Received: ")


def test_size_is_advertised_and_enforced_at_mail_and_after_data(make_server: ServerFactory) -> None:
    server = make_server("smtp", limits={"message_size": 10_000})
    with server.smtp() as smtp:
        smtp.ehlo("client.test")
        assert smtp.esmtp_features["size"] == "10000"
        code, text = smtp.mail("bob@remote.test", ["SIZE=10001"])
        assert (code, text[:5]) == (552, b"5.3.4")
        assert smtp.mail("bob@remote.test", ["SIZE=5000"])[0] == 250, "the size is only a claim"
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(HEADERS + b"x" * 900 + b"\r\n" + (b"y" * 998 + b"\r\n") * 12)
        assert (code, text[:5]) == (552, b"5.3.4")
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}
    assert len(server.messages("alice@example.test")) == 1


def test_more_than_50_received_headers_is_a_loop(mx: Server) -> None:
    def with_hops(n: int) -> bytes:
        return b"".join(b"Received: from hop%d by hop%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i)
                        for i in range(n)) + HEADERS + b"body\r\n"

    with mx.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(with_hops(51))
        assert (code, text[:5]) == (554, b"5.4.6")
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], with_hops(50)) == {}
    assert len(mx.messages("alice@example.test")) == 1


# --- CHUNKING (RFC 3030) --------------------------------------------------------------------------


def bdat_session(c: RawClient) -> None:
    c.code()
    c.command("EHLO client.test")
    assert c.command("MAIL FROM:<bob@remote.test>").startswith("250 ")
    assert c.command("RCPT TO:<alice@example.test>").startswith("250 ")


def test_bdat_chunks_make_one_message(mx: Server) -> None:
    body = HEADERS + b"line one\r\n.not stuffed\r\n"
    with mx.raw() as c:
        bdat_session(c)
        c.send(b"BDAT %d\r\n" % 10 + body[:10])
        assert c.code() == "250 2.0.0 10 octets received"
        c.send(b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
        assert c.code().startswith("250 2.0.0 Message accepted")
        c.send(b"BDAT 0 LAST\r\n")
        assert c.code().startswith("503 5.5.1")
    assert mx.messages("alice@example.test")[0].endswith(b"line one\n.not stuffed\n")


def test_bdat_over_the_size_limit_is_read_and_refused(make_server: ServerFactory) -> None:
    server = make_server("smtp", limits={"message_size": 1000})
    with server.raw() as c:
        bdat_session(c)
        c.send(b"BDAT 2000\r\n" + b"x" * 2000)
        assert c.code().startswith("552 5.3.4")
        c.send(b"BDAT 5 LAST\r\nabc\r\n")
        assert c.code().startswith("552 5.3.4")
        assert c.command("NOOP").startswith("250 "), "the chunks were read, not taken as commands"
    assert server.messages("alice@example.test") == []


def test_bdat_without_a_size_closes_the_connection(mx: Server) -> None:
    with mx.raw() as c:
        bdat_session(c)
        assert c.command("BDAT lots").startswith("501 5.5.4")
        assert c.closed()


def test_bdat_refuses_bare_lf_too(mx: Server) -> None:
    body = HEADERS + b"a\nb\r\n"
    with mx.raw() as c:
        bdat_session(c)
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        assert c.code().startswith("554 5.5.2")


def test_data_after_bdat_is_a_sequence_error(mx: Server) -> None:
    with mx.raw() as c:
        bdat_session(c)
        c.send(b"BDAT 3\r\nabc")
        assert c.code().startswith("250 ")
        assert c.command("DATA").startswith("503 5.5.1")
        assert c.command("RSET").startswith("250 ")


def test_pipelined_commands_get_their_replies_in_order(mx: Server) -> None:
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<nobody@example.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.code()[:3] for _ in range(4)] == ["250", "550", "250", "354"]
        c.send(HEADERS + b"pipelined\r\n.\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
               b"BDAT 6 LAST\r\nhi\r\n\r\nQUIT\r\n")
        assert [c.code()[:3] for _ in range(5)] == ["250", "250", "250", "250", "221"]
    assert len(mx.messages("alice@example.test")) == 1
    assert len(mx.messages("bob@example.test")) == 1
