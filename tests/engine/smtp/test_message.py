"""Collecting and checking DATA (RFC 5321 §4.1.1.4, §4.5.2, §4.4) as pure functions over bytes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from engine.smtp import codes
from engine.smtp.message import (
    DataCollector,
    TraceInfo,
    check_text,
    count_received,
    protocol_name,
    received_header,
    unstuff,
)


def collect(stream: bytes, limit: int = 10_000) -> DataCollector:
    """Feeds `stream` the way the server does: pieces that end at each `.<CRLF>`."""
    collector = DataCollector(limit)
    start = 0
    while start < len(stream) and not collector.done:
        end = stream.find(b".\r\n", start)
        if end < 0:
            collector.feed(stream[start:], may_end=False)
            break
        collector.feed(stream[start:end + 3])
        start = end + 3
    return collector


def test_a_message_ends_at_crlf_dot_crlf() -> None:
    c = collect(b"Subject: x\r\n\r\nhello\r\n.\r\n")
    assert c.done and c.text() == b"Subject: x\r\n\r\nhello\r\n"


def test_an_empty_message_ends_at_the_first_line() -> None:
    c = collect(b".\r\n")
    assert c.done and c.text() == b""


def test_smuggled_terminators_do_not_end_the_message() -> None:
    for trick in (b"a\n.\nb\r\n", b"a\r.\rb\r\n", b"a\n.\r\nb\r\n", b"a\r\n.\nb\r\n", b"a\r.\r\nb\r\n"):
        c = collect(trick)
        assert not c.done, trick
        c = collect(trick + b".\r\n")
        assert c.done and c.text() == trick


def test_a_dot_line_inside_is_unstuffed() -> None:
    assert unstuff(b"..hidden\r\n...\r\nx.\r\n") == b".hidden\r\n..\r\nx.\r\n"


def test_oversize_data_is_dropped_but_still_read_to_the_end() -> None:
    c = collect(b"x" * 100 + b"\r\n" + b"y" * 100 + b"\r\n.\r\n", limit=50)
    assert c.done and c.oversize and c.size > 50


def test_bare_lf_is_refused_and_bare_cr_is_kept() -> None:
    assert check_text(b"a\nb\r\n", 1000) == codes.BARE_NEWLINE
    assert check_text(b"a\rb\r\n", 1000) is None


def test_lines_over_the_limit_are_refused() -> None:
    ok = b"x" * 998 + b"\r\n"
    assert check_text(ok * 3, 1000) is None
    reply = check_text(ok + b"x" * 999 + b"\r\n", 1000)
    assert reply is not None and reply.code == 554 and reply.status == "5.5.2"


def test_received_headers_are_counted_in_the_header_section_only() -> None:
    msg = b"Received: a\r\nreceived : b\r\nX: y\r\n\r\nReceived: in body\r\n"
    assert count_received(msg) == 2
    assert count_received(b"\r\nReceived: x\r\n") == 0


def test_the_received_line_follows_rfc_5321_section_4_4() -> None:
    info = TraceInfo(helo="client.test", client_ip="127.0.0.1", client_name="localhost",
                     hostname="mx.example.test", message_id="ABC123", esmtp=True, tls=True,
                     authenticated=True, utf8=False, recipient="bob@example.test",
                     tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384")
    text = received_header(info, now=0).decode()
    assert text.startswith("Received: from client.test (localhost [127.0.0.1])\r\n")
    assert "\tby mx.example.test with ESMTPSA id ABC123\r\n" in text
    assert re.search(r"\tfor <bob@example\.test>; \w{3}, \d{2} \w{3} 1970 ", text)
    assert text.endswith("\r\n") and "\n\r\n" not in text


def test_the_received_line_cleans_what_the_client_said() -> None:
    info = TraceInfo(helo="evil (comment)\tx;", client_ip="::1", client_name=None, hostname="h",
                     message_id="1", esmtp=False, tls=False, authenticated=False, utf8=False,
                     recipient=None)
    text = received_header(info).decode()
    assert text.startswith("Received: from evil??comment??x? ([IPv6:::1])\r\n\tby h with SMTP id 1;\r\n")


def test_protocol_names() -> None:
    assert protocol_name(False, False, False, False) == "SMTP"
    assert protocol_name(True, False, False, False) == "ESMTP"
    assert protocol_name(True, True, False, False) == "ESMTPS"
    assert protocol_name(True, False, True, False) == "ESMTPA"
    assert protocol_name(True, True, True, True) == "UTF8SMTPSA"


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=8))
def test_any_crlf_text_survives_stuffing_and_collection(lines: list[bytes]) -> None:
    text = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    c = collect(stuffed + b".\r\n")
    assert c.done
    assert unstuff(c.text()) == text


def test_the_log_files_a_message_under_its_message_id_header() -> None:
    from engine.smtp.message import message_id_of

    assert message_id_of(b"Subject: x\r\nMessage-Id:\r\n <a.b@example.test>\r\n\r\nMessage-ID: <body>\r\n") == \
        "<a.b@example.test>"
    assert message_id_of(b"Subject: no id\r\n\r\nbody\r\n") == ""
