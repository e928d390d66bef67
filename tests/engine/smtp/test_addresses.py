"""MAIL FROM / RCPT TO argument parsing (RFC 5321 §4.1.2, RFC 6531 §3.3)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.smtp import codes
from engine.smtp.addresses import (
    Address,
    AddressError,
    _parse_path,
    _parse_path_grammar,
    parse_mail_from,
    parse_mailbox,
    parse_params,
    parse_rcpt_to,
    relay_trick,
)


def test_a_plain_sender_with_parameters() -> None:
    arg = parse_mail_from("FROM:<Alice@Example.TEST> SIZE=1024 BODY=8BITMIME")
    assert arg.path.address == Address("Alice", "example.test")
    assert arg.params == {"SIZE": "1024", "BODY": "8BITMIME"}


def test_the_null_reverse_path_is_a_sender_but_not_a_recipient() -> None:
    assert parse_mail_from("FROM:<>").path.address is None
    with pytest.raises(AddressError) as err:
        parse_rcpt_to("TO:<>")
    assert err.value.reply.code == 501 and err.value.reply.status == "5.1.3"


def test_keyword_case_and_a_space_after_the_colon_are_tolerated() -> None:
    assert parse_mail_from("from: <a@b.test>").path.address == Address("a", "b.test")
    assert parse_rcpt_to("To:<a@b.test>").path.address == Address("a", "b.test")


def test_a_bare_address_without_angle_brackets_is_tolerated() -> None:
    arg = parse_rcpt_to("TO:a@b.test NOTIFY=NEVER")
    assert arg.path.address == Address("a", "b.test")
    assert arg.params == {"NOTIFY": "NEVER"}


def test_postmaster_without_a_domain_is_a_recipient() -> None:
    # RFC 5321 §4.1.1.3
    assert parse_rcpt_to("TO:<Postmaster>").path.address == Address("postmaster", "")
    with pytest.raises(AddressError):
        parse_mail_from("FROM:<Postmaster>")


def test_a_source_route_is_parsed_and_only_the_final_mailbox_counts() -> None:
    arg = parse_rcpt_to("TO:<@relay.test,@other.test:user@example.test>")
    assert arg.path.route == ("relay.test", "other.test")
    assert arg.path.address == Address("user", "example.test")


def test_quoted_local_parts_are_unquoted_and_requoted() -> None:
    addr = parse_rcpt_to('TO:<"john smith"@example.test>').path.address
    assert addr == Address("john smith", "example.test")
    assert str(addr) == '"john smith"@example.test'
    addr = parse_rcpt_to(r'TO:<"a\"b>c"@example.test>').path.address
    assert addr is not None and addr.local == 'a"b>c'


@pytest.mark.parametrize("text,trick", [
    ("TO:<user%other.test@example.test>", "percent hack"),
    ("TO:<other.test!user@example.test>", "bang path"),
    ('TO:<"user@other.test"@example.test>', "quoted @ in local part"),
    ('TO:<"user%other"@example.test>', "percent hack"),
    ("TO:<user@example.test>", None),
])
def test_relay_tricks_are_named(text: str, trick: str | None) -> None:
    addr = parse_rcpt_to(text).path.address
    assert addr is not None
    assert relay_trick(addr) == trick


@pytest.mark.parametrize("text", [
    "TO:<user@>", "TO:<@example.test>", "TO:<user>", "TO:<a..b@example.test>", "TO:<.a@example.test>",
    "TO:<a@-bad.test>", "TO:<a@bad..test>", "TO:<a@[300.1.1.1]>", "TO:<a@[IPv6:zz::1]>", "TO:<a@b.test",
    'TO:<"unterminated@b.test>', "TO:<a b@example.test>", "TO:<a@b.test>junk", "TO:<a@exa mple.test>",
    "TO:<@relay.test user@example.test>", "TO:<a@" + "x" * 64 + ".test>",
    "TO:<" + "a" * 250 + "@b.test>",
])
def test_malformed_recipients_get_501_5_1_3(text: str) -> None:
    with pytest.raises(AddressError) as err:
        parse_rcpt_to(text)
    assert str(err.value.reply).startswith("501 5.1.3 ")


def test_missing_keyword_is_a_syntax_error_in_arguments() -> None:
    with pytest.raises(AddressError) as err:
        parse_mail_from("<a@b.test>")
    assert err.value.reply.code == 501 and err.value.reply.status == "5.5.4"


def test_address_literals() -> None:
    assert parse_mailbox("a@[192.0.2.1]").domain == "[192.0.2.1]"
    assert parse_mailbox("a@[IPv6:2001:DB8::1]").domain == "[ipv6:2001:db8::1]"


def test_utf8_addresses_parse_and_say_they_need_smtputf8() -> None:
    addr = parse_rcpt_to("TO:<用户@例子.测试>").path.address
    assert addr is not None and addr.needs_utf8
    assert not Address("a", "b.test").needs_utf8


def test_bytes_that_are_not_utf8_are_refused() -> None:
    text = b"TO:<\xff\xfe@example.test>".decode("utf-8", "surrogateescape")
    with pytest.raises(AddressError):
        parse_rcpt_to(text)


def test_parameters() -> None:
    assert parse_params("SIZE=10 SMTPUTF8  body=7bit") == {"SIZE": "10", "SMTPUTF8": None, "BODY": "7bit"}
    for bad in ("SIZE=", "=1", "SIZE=1 SIZE=2", "S_IZE=1", "K=a=b"):
        with pytest.raises(ValueError):
            parse_params(bad)


# --- properties ----------------------------------------------------------------------------------

_atext = st.sampled_from([*"abcxyzABC0189!#$&'*+-/=?^_`{|}~", "é", "ß", "用"])
_atom = st.text(_atext, min_size=1, max_size=8)
_dot_string = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_quoted_local = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(local=st.one_of(_dot_string, _quoted_local), domain=_domain)
def test_any_valid_mailbox_round_trips(local: str, domain: str) -> None:
    addr = Address(local, domain)
    parsed = parse_rcpt_to(f"TO:<{addr}>").path.address
    assert parsed == addr
    assert parse_mail_from(f"FROM:<{addr}> SIZE=5").path.address == addr


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_gets_a_5xx_reply(text: str) -> None:
    for parse in (parse_mail_from, parse_rcpt_to):
        try:
            parse(text)
        except AddressError as err:
            assert err.reply.code in (501,) and err.reply.status.startswith("5.")


@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    text = raw.decode("utf-8", "surrogateescape")
    for prefix in ("FROM:<", "TO:<", "TO:"):
        parse = parse_rcpt_to if prefix.startswith("TO") else parse_mail_from
        with contextlib.suppress(AddressError):
            parse(prefix + text)


@given(local=_dot_string, domain=_domain, hidden=_domain)
def test_a_relay_trick_is_caught_however_the_local_part_is_written(local: str, domain: str,
                                                                   hidden: str) -> None:
    for tricked in (f"{local}%{hidden}", f"{hidden}!{local}"):
        addr = parse_rcpt_to(f"TO:<{tricked}@{domain}>").path.address
        assert addr is not None and relay_trick(addr) is not None
    addr = parse_rcpt_to(f'TO:<"{local}@{hidden}"@{domain}>').path.address
    assert addr is not None and relay_trick(addr) is not None


def test_codes_render_with_enhanced_status() -> None:
    assert str(codes.NO_SUCH_USER) == "550 5.1.1 No such user here"
    assert codes.OK.lines("a", "b") == ["250-2.0.0 OK", "250-2.0.0 a", "250 2.0.0 b"]
    assert codes.split_enhanced("5.7.1 Relay denied") == ("5.7.1", "Relay denied")
    assert codes.split_enhanced("Hello") == ("", "Hello")


# The one-regex shortcut for `<dot-string@ldh.domain>` must answer exactly as the full grammar does, on
# the paths it takes and on near misses (long labels, edge hyphens, dots, brackets, trailing text).
_near_miss = st.text(st.sampled_from([*"ab0-.@<>\" \\[]:,x", "é", "\r"]), max_size=40)
_long_label = st.text(st.sampled_from("ab-"), min_size=60, max_size=66)


@given(st.one_of(
    st.builds(lambda local, d, tail: f"<{local}@{d}>{tail}", _dot_string, _domain,
              st.sampled_from(["", " SIZE=10", "x", ">", " "])),
    st.builds(lambda local, d: f"<{local}@{d}>", _dot_string, st.builds(lambda a, b: f"{a}.{b}", _long_label, _domain)),
    st.builds(lambda t: f"<{t}>", _near_miss),
    _near_miss,
))
def test_the_common_path_shortcut_agrees_with_the_full_grammar(text: str) -> None:
    for null, postmaster in ((True, False), (False, True)):
        try:
            expected: object = _parse_path_grammar(text, allow_null=null, allow_postmaster=postmaster)
        except ValueError:
            expected = ValueError
        try:
            got: object = _parse_path(text, allow_null=null, allow_postmaster=postmaster)
        except ValueError:
            got = ValueError
        assert got == expected


def test_long_mailboxes_leave_the_shortcut_for_the_length_checks() -> None:
    # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets.
    local = "a" * 64
    domain = ".".join(["b" * 63] * 3)          # 191 octets: 64 + 1 + 191 = 256 > 254
    with pytest.raises(AddressError):
        parse_rcpt_to(f"TO:<{local}@{domain}>")
    assert parse_rcpt_to(f"TO:<{local[:62]}@{domain}>").path.address == Address(local[:62], domain)
