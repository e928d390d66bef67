"""Writing mail: replies keep the thread and quote, forwards carry the original whole, addresses are
checked, and header injection is impossible."""

from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes, policy

import pytest
import viewer_samples as samples

from desktop.viewer.compose import (
    ComposeError,
    Draft,
    build_message,
    forward_draft,
    parse_recipients,
    reply_draft,
)
from desktop.viewer.message import parse, read_message

ME = "alice@example.test"


def test_reply_goes_to_the_sender_with_thread_headers_and_quote() -> None:
    raw = samples.plain_text()
    draft = reply_draft(read_message(raw), parse(raw), ME)
    assert draft.to == "carol@remote.test" and draft.cc == ""
    assert draft.subject == "Re: Grüße aus Köln — ein Test"
    assert "Carol Example <carol@remote.test> wrote:\n> Hallo Alice,\n>\n> schau mal" in draft.body
    data, recipients = build_message(ME, draft, "mx.example.test")
    msg = message_from_bytes(data, policy=policy.default)
    original_id = parse(raw)["Message-ID"]
    assert msg["In-Reply-To"] == original_id and msg["References"] == original_id
    assert recipients == ["carol@remote.test"]


def test_reply_all_leaves_me_out_and_keeps_the_others() -> None:
    raw = (b"From: Bob <bob@x.test>\r\nTo: alice@example.test, carol@y.test\r\nCc: Dan <dan@z.test>\r\n"
           b"Reply-To: list@x.test\r\nSubject: Re: plans\r\nMessage-ID: <p2@x.test>\r\nReferences: <p1@x.test>\r\n"
           b"\r\nok\r\n")
    draft = reply_draft(read_message(raw), parse(raw), "Alice@Example.test", to_all=True)
    assert draft.to == "list@x.test"
    assert draft.cc == "carol@y.test, dan@z.test"
    assert draft.subject == "Re: plans"
    assert draft.references == "<p1@x.test> <p2@x.test>"


def test_forward_attaches_the_original_unchanged() -> None:
    raw = samples.with_attachments()
    draft = replace(forward_draft(read_message(raw), raw), to="bob@x.test")
    assert draft.subject == "Fwd: The report you asked for"
    data, _ = build_message(ME, draft, "mx.example.test")
    outer = message_from_bytes(data, policy=policy.default)
    (attached,) = list(outer.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    inner = attached.get_content()
    pdf = next(p for p in inner.iter_attachments() if p.get_filename() == "report.pdf")
    assert pdf.get_content() == samples.PDF


def test_recipients_are_checked() -> None:
    assert parse_recipients("a@x.test, Bob <b@y.test>") == ["a@x.test", "b@y.test"]
    for bad in ("not an address", "a@localhost", "x@[U+202E]y.test", "a\u202e@x.test"):
        with pytest.raises(ComposeError):
            parse_recipients(bad)
    with pytest.raises(ComposeError, match="at least one recipient"):
        build_message(ME, Draft(subject="x"), "mx.example.test")


def test_no_header_injection_through_the_subject_or_addresses() -> None:
    data, _ = build_message(ME, Draft(to="a@x.test", subject="hi\r\nBcc: victim@evil.test", body="b"),
                            "mx.example.test")
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["Bcc"] is None and "victim" in msg["Subject"]
    with pytest.raises(ComposeError):
        build_message(ME, Draft(to="a@x.test\r\nBcc: victim@evil.test"), "mx.example.test")
