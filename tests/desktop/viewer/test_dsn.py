"""Bounces summarised: failed recipients and the reasons, in words."""

from __future__ import annotations

from desktop.viewer.dsn import dsn_report, status_words
from desktop.viewer.message import parse


def test_status_codes_in_words() -> None:
    assert status_words("5.1.1") == "permanent: the mailbox does not exist"
    assert status_words("4.4.7") == "temporary: delivery took too long and was given up"
    assert status_words("5.9.99") == "permanent"
    assert status_words("garbage") == ""


def test_not_a_dsn() -> None:
    plain = b"Subject: hi\r\n\r\nhello"
    assert dsn_report(plain, parse(plain)) is None
    mdn = (b"Content-Type: multipart/report; report-type=disposition-notification; "
           b"boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nread\r\n--x--\r\n")
    assert dsn_report(mdn, parse(mdn)) is None


def test_global_delivery_status_in_utf8() -> None:
    raw = ("Content-Type: multipart/report; report-type=global-delivery-status; boundary=x\r\n\r\n"
           "--x\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
           "--x\r\nContent-Type: message/global-delivery-status\r\n\r\n"
           "Reporting-MTA: dns; mx.example.test\r\n\r\n"
           "Final-Recipient: utf-8; jörg@bücher.test\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n"
           "--x--\r\n").encode()
    report = dsn_report(raw, parse(raw))
    assert report is not None
    (r,) = report.failed
    assert r.recipient == "jörg@bücher.test"
    assert r.reason == "permanent: the mailbox is full"


def test_hostile_fields_are_escaped() -> None:
    raw = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
           b"Final-Recipient: rfc822; a\xe2\x80\xaeb@c.test\r\nAction: failed\r\nStatus: 5.0.0\r\n"
           b"Diagnostic-Code: smtp; 550 \x1b[31mred\r\n\r\n--x--\r\n")
    report = dsn_report(raw, parse(raw))
    assert report is not None
    assert "[U+202E]" in report.failed[0].recipient
    assert "[U+001B]" in report.failed[0].diagnostic
