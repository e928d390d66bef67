"""Header summaries (the viewer's columns) come from the header block alone, read the way mail agents do."""

from __future__ import annotations

import pytest

from engine.store.summary import HeaderSummary, summarize


def test_fields_are_unfolded_and_decoded() -> None:
    data = (b"From: =?utf-8?q?J=C3=B6rg?=\r\n <joerg@remote.test>\r\n"
            b"Subject: one\r\n\ttwo  three\r\n"
            b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            b"Message-ID: <m@remote.test>\r\nIn-Reply-To: <a@b>\r\nReferences: <z@b>\r\n <a@b>\r\n"
            b"\r\nbody\r\n")
    assert summarize(data) == HeaderSummary(
        date=1704103200.0, sender="Jörg <joerg@remote.test>", subject="one two three",
        message_id="<m@remote.test>", in_reply_to="<a@b>", references="<z@b> <a@b>", has_attachments=False)


def test_stored_lf_form_reads_like_the_wire_form() -> None:
    wire = b"Subject: Hello\r\n  again\r\nFrom: a@b.test\r\n\r\nSubject: not a header\r\n"
    assert summarize(wire) == summarize(wire.replace(b"\r\n", b"\n"))
    assert summarize(wire).subject == "Hello again"


def test_first_occurrence_wins_and_the_body_is_never_read() -> None:
    data = b"subject: first\nSUBJECT: second\nX-Subject: third\n\nSubject: body line\n"
    assert summarize(data).subject == "first"


def test_raw_utf8_headers_are_read_as_utf8() -> None:
    # RFC 6532 §3.2: header values may carry UTF-8 as is; invalid octets become U+FFFD, never an error.
    assert summarize("Subject: Grüße\n\n".encode()).subject == "Grüße"
    assert summarize(b"Subject: \xff ok\n\n").subject == "\ufffd ok"


def test_obsolete_white_space_before_the_colon_is_accepted() -> None:
    # RFC 5322 §4.5.3 (obs-subject, obs-from): WSP between field name and colon must be accepted.
    assert summarize(b"Subject : old style\nFrom\t: a@b.test\n\n").subject == "old style"


def test_missing_and_unparseable_fields_leave_empty_columns() -> None:
    s = summarize(b"X-Only: this\n\nbody\n")
    assert (s.date, s.sender, s.subject, s.message_id, s.has_attachments) == (None, "", "", "", False)
    assert summarize(b"Date: not a date\n\n").date is None
    assert summarize(b"Subject: =?bogus?q?x\n\n").subject == "=?bogus?q?x"
    assert summarize(b"").subject == ""
    assert summarize(b"\r\nSubject: in the body\r\n").subject == ""


@pytest.mark.parametrize(("headers", "attached"), [
    (b"Content-Type: multipart/mixed; boundary=x", True),          # RFC 2046 §5.1.3
    (b"Content-Type: Multipart/Report; report-type=delivery-status", True),
    (b"Content-Type: application/pdf", True),
    (b"Content-Type: text/plain\nContent-Disposition: attachment; filename=a.txt", True),   # RFC 2183
    (b"Content-Type: multipart/alternative; boundary=x", False),
    (b"Content-Type: text/html; charset=utf-8", False),
    (b"", False),
])
def test_has_attachments_is_judged_from_headers(headers: bytes, attached: bool) -> None:
    assert summarize(headers + b"\n\nbody\n").has_attachments is attached
