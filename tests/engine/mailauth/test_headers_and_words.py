"""Header fields cut and rejoined byte-exactly, forged Authentication-Results recognised, verdicts in words,
and our faster DKIM body canonicalization matching dkimpy's."""

from __future__ import annotations

from dkim import rfc822_parse
from hypothesis import given
from hypothesis import strategies as st

from engine.mailauth.canon import original, parse, relaxed_body
from engine.mailauth.headers import authserv_id, from_domains, join_message, remove_results_for, split_message
from engine.mailauth.words import clause_comments, describe

MESSAGE = (b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
           b"Authentication-Results: MX.Home.Test; spf=pass smtp.mailfrom=x@bank.test\r\n"
           b"From: \"Bank, Inc.\" <alerts@Bank.Test>, other@shop.test\r\n"
           b"Authentication-Results: elsewhere.test;\r\n spf=fail smtp.mailfrom=x@bank.test\r\n"
           b"Subject: hi\r\n\r\nbody\r\nFrom: not@a.header\r\n")


def test_fields_split_and_join_back_unchanged() -> None:
    fields, rest = split_message(MESSAGE)
    assert [f.name for f in fields] == ["received", "authentication-results", "from",
                                        "authentication-results", "subject"]
    assert rest == b"\r\nbody\r\nFrom: not@a.header\r\n"
    assert join_message(fields, rest) == MESSAGE


@given(st.binary(max_size=400))
def test_any_bytes_split_and_join_back_unchanged(data: bytes) -> None:
    fields, rest = split_message(data)
    assert join_message(fields, rest) == data


def test_from_domains_are_every_address_in_from() -> None:
    assert from_domains(split_message(MESSAGE)[0]) == ["bank.test", "shop.test"]


def test_forged_results_for_our_name_are_removed_in_any_case_and_with_comments() -> None:
    fields, _ = split_message(MESSAGE)
    kept, removed = remove_results_for(fields, "mx.home.test")
    assert removed == 1
    assert [f.name for f in kept].count("authentication-results") == 1
    assert authserv_id("(comment (nested)) mx.home.test 1; none") == "mx.home.test"
    assert authserv_id('"mx.home.test"; none') == "mx.home.test"


def test_describe_puts_each_verdict_in_words() -> None:
    value = ("mx.home.test; spf=fail (sender IP is 203.0.113.5) smtp.mailfrom=alerts@bank.test; "
             "dkim=pass header.d=bank.test header.s=s1; dkim=fail reason=\"body hash mismatch\" header.d=shop.test; "
             "dmarc=fail (p=reject dis=reject) header.from=bank.test; arc=pass (1 sets, sealed by lists.test)")
    assert describe(value) == [
        "claims to be from bank.test, but bank.test's SPF does not allow 203.0.113.5 to send for it",
        "signed by bank.test and the signature is valid",
        "signed by shop.test, but the signature does not match the message (changed on the way, or forged) "
        "(body hash mismatch)",
        "claims to be from bank.test, but nothing proves it; bank.test asks for such mail to be refused",
        "forwarded through lists.test, with a valid record of the checks made before (ARC)",
    ]


def test_describe_accepts_the_field_name_and_folded_values() -> None:
    folded = "Authentication-Results: mx.home.test;\r\n\tspf=pass (sender IP is 127.0.0.1)\r\n smtp.mailfrom=a@b.test"
    assert describe(folded) == ["sent from 127.0.0.1, which b.test's SPF allows to send for it"]


def test_describe_of_garbage_says_it_could_not_be_read() -> None:
    assert describe("this is ; not = an (authres") == ["the record of the authentication checks could not be read"]


def test_comments_line_up_with_clauses() -> None:
    assert clause_comments('id (c0); spf=pass (one) a.b=c; dkim=none; dmarc=fail (two (in)) x.y="(no)"') == [
        "one", "", "two (in)"]


@given(st.lists(st.sampled_from([b" ", b"\t", b"\r\n", b"\r", b"\n", b"a", b"bc", b"  "]), max_size=60))
def test_our_relaxed_body_canonicalization_is_dkimpys_byte_for_byte(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert relaxed_body(body) == original(body)


@given(st.lists(st.sampled_from([b"From: a@b.test", b"Subject:x", b" folded", b"\tmore", b"X-A : y", b"",
                                 b"From mbox line", b"garbage", b"body text", b"a\rb", b"\n", b"DKIM-Signature: v=1"]),
                max_size=14), st.booleans())
def test_our_message_parse_is_dkimpys_where_it_applies(lines: list[bytes], trailing: bool) -> None:
    message = b"\r\n".join(lines) + (b"\r\n" if trailing else b"")
    fast = parse(message)
    if fast is None:
        return                                   # dkimpy parses it itself
    assert fast == tuple(rfc822_parse(message))


def test_an_ordinary_message_takes_the_fast_parse() -> None:
    assert parse(MESSAGE) == tuple(rfc822_parse(MESSAGE))
