"""DSNs: what a bounce looks like to the sender's mail program, and reading one back."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from engine.dsn import RecipientStatus, compose_dsn, is_dsn, parse_dsn, status_from_reply

ORIGINAL = (b"Received: from client by out.test\r\nFrom: Alice <alice@out.test>\r\nTo: bob@far.test\r\n"
            b"Subject: Lunch?\r\nMessage-ID: <m1@out.test>\r\n\r\nSecret body text.\r\n")


def _bounce() -> bytes:
    return compose_dsn(
        reporting_mta="out.test", sender="alice@out.test", original=ORIGINAL, queue_id="Q1",
        arrival=1_700_000_000.0, now=1_700_000_100.0,
        recipients=[
            RecipientStatus("bob@far.test", "failed", "5.1.1", "550 5.1.1 No such user here", "mx.far.test",
                            last_attempt=1_700_000_090.0),
            RecipientStatus("carol@gone.test", "failed", "5.1.10", "the domain gone.test accepts no mail "
                            "(null MX)", from_remote=False),
        ])


def test_a_bounce_is_a_multipart_report_with_three_parts() -> None:
    msg = email.message_from_bytes(_bounce(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == "alice@out.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    parts = cast(list[EmailMessage], msg.get_payload())      # policy.default makes EmailMessage parts
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                     "text/rfc822-headers"]
    human = parts[0].get_content()
    assert "<bob@far.test>: host mx.far.test said: 550 5.1.1 No such user here" in human
    assert "<carol@gone.test>: the domain gone.test accepts no mail (null MX)" in human
    blocks = cast(list[EmailMessage], parts[1].get_payload())
    assert [str(b["Final-Recipient"]) for b in blocks[1:]] == ["rfc822; bob@far.test", "rfc822; carol@gone.test"]
    assert str(blocks[0]["Reporting-MTA"]) == "dns; out.test"
    assert str(blocks[1]["Remote-MTA"]) == "dns; mx.far.test"
    assert str(blocks[1]["Diagnostic-Code"]) == "smtp; 550 5.1.1 No such user here"
    assert str(blocks[2]["Diagnostic-Code"]).startswith("x-postroom; ")


def test_only_the_headers_of_the_original_are_returned() -> None:
    raw = _bounce()
    assert b"Subject: Lunch?" in raw
    assert b"Secret body text" not in raw


def test_every_line_ends_in_crlf_and_fits_smtp() -> None:
    raw = _bounce()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_parse_reads_back_failed_recipients_and_reasons() -> None:
    report = parse_dsn(_bounce())
    assert report is not None
    assert report.reporting_mta == "out.test"
    assert [(r.recipient, r.status, r.remote_mta) for r in report.failed] == [
        ("bob@far.test", "5.1.1", "mx.far.test"), ("carol@gone.test", "5.1.10", "")]
    assert report.failed[0].diagnostic == "550 5.1.1 No such user here"
    assert report.original_subject == "Lunch?"
    assert report.original_message_id == "<m1@out.test>"
    assert "could not" in report.explanation
    assert is_dsn(_bounce())


def test_a_delay_warning_says_so() -> None:
    raw = compose_dsn(reporting_mta="out.test", sender="alice@out.test", original=ORIGINAL,
                      arrival=1_700_000_000.0, now=1_700_014_400.0,
                      recipients=[RecipientStatus("bob@far.test", "delayed", "4.7.1", "451 4.7.1 Greylisted",
                                                  "mx.far.test", will_retry_until=1_700_432_000.0)])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    report = parse_dsn(raw)
    assert report is not None
    assert report.failed == ()
    assert [r.recipient for r in report.delayed] == ["bob@far.test"]
    assert "4 hour(s)" in report.explanation


def test_international_addresses_and_headers_survive() -> None:
    original = "From: J\u00f6rg <j\u00f6rg@out.test>\r\nSubject: gr\u00fc\u00dfe\r\n\r\nx\r\n".encode()
    raw = compose_dsn(reporting_mta="out.test", sender="j\u00f6rg@out.test", original=original,
                      recipients=[RecipientStatus("b\u00fcb@far.test", "failed", "5.1.1", "550 nope")])
    report = parse_dsn(raw)
    assert report is not None
    assert report.failed[0].recipient == "b\u00fcb@far.test"
    assert report.original_subject == "gr\u00fc\u00dfe"


def test_status_comes_from_the_reply_or_its_class() -> None:
    assert status_from_reply(550, "5.7.1 Relaying denied") == "5.7.1"
    assert status_from_reply(550, "No such user") == "5.0.0"
    assert status_from_reply(451, "4.7.1 Greylisted") == "4.7.1"
    assert status_from_reply(451, "5.7.1 mismatched class") == "4.0.0"


def test_an_ordinary_message_is_not_a_dsn() -> None:
    assert parse_dsn(ORIGINAL) is None
    assert not is_dsn(ORIGINAL)


@given(st.binary(max_size=600))
def test_parsing_garbage_never_raises(data: bytes) -> None:
    prefix = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
    for candidate in (data, prefix + data):
        report = parse_dsn(candidate)
        assert report is None or isinstance(report.recipients, tuple)


def test_a_dsn_from_another_mta_parses() -> None:
    raw = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=XX\r\n"
           b"MIME-Version: 1.0\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nBounced.\r\n"
           b"--XX\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mx.other.test\r\n\r\n"
           b"Final-Recipient: RFC822;x@other.test\r\nAction: failed\r\nStatus: 5.2.2\r\n"
           b"Diagnostic-Code: smtp;552 mailbox full\r\n\r\n"
           b"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: original\r\n\r\nbody\r\n--XX--\r\n")
    report = parse_dsn(raw)
    assert report is not None
    assert [(r.recipient, r.status, r.diagnostic) for r in report.failed] == [
        ("x@other.test", "5.2.2", "552 mailbox full")]
    assert report.original_subject == "original"
    assert isinstance(email.message_from_bytes(raw), Message)
