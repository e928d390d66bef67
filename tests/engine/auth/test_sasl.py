"""SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) exchanges, without any transport."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.auth.sasl import (
    MAX_LINE,
    MECHANISMS,
    Challenge,
    Credentials,
    SaslError,
    SaslExchange,
    start,
)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_offered_mechanisms() -> None:
    assert MECHANISMS == ("PLAIN", "LOGIN")


# ---------------------------------------------------------------- PLAIN

def test_plain_with_initial_response_rfc4616_example() -> None:
    # RFC 4616 §4: "\0tim\0tanstaaftanstaaf"
    exchange = start("PLAIN", b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm")
    assert exchange.first == Credentials("tim", "tanstaaftanstaaf")
    assert exchange.done


def test_plain_without_initial_response_sends_an_empty_challenge() -> None:
    exchange = start("plain")
    assert exchange.first == Challenge(b"")
    assert exchange.first.line == b""        # SMTP "334 ", IMAP "+ "
    assert exchange.step(b64(b"\x00alice@example.org\x00s3cret") + b"\r\n") == \
        Credentials("alice@example.org", "s3cret")


def test_plain_authzid_may_repeat_the_authcid() -> None:
    assert start("PLAIN", b64(b"Alice@example.org\x00alice@example.org\x00pw")).first == \
        Credentials("alice@example.org", "pw")


def test_plain_utf8_credentials() -> None:
    assert start("PLAIN", b64("\x00jürgen@bücher.example\x00pässwörd€".encode())).first == \
        Credentials("jürgen@bücher.example", "pässwörd€")


@pytest.mark.parametrize(("message", "reason"), [
    (b"Ursel\x00Kurt\x00xipj3plmq", "another identity"),      # RFC 4616 §4's proxy example: not offered
    (b"\x00tim", "authzid NUL authcid NUL password"),
    (b"\x00tim\x00pw\x00extra", "authzid NUL authcid NUL password"),
    (b"", "authzid NUL authcid NUL password"),
    (b"\x00\x00pw", "empty username"),
    (b"\x00tim\x00", "empty password"),
    (b"\x00tim\x00\xff\xfe", "not valid UTF-8"),
    (b"\x00\xc3(\x00pw", "not valid UTF-8"),
])
def test_bad_plain_messages(message: bytes, reason: str) -> None:
    with pytest.raises(SaslError, match=reason):
        start("PLAIN", b64(message))
    exchange = start("PLAIN")
    with pytest.raises(SaslError, match=reason):
        exchange.step(b64(message))
    assert exchange.done


def test_an_empty_initial_response_is_equals_sign() -> None:
    # RFC 4954 §4: "=" is a present-but-empty initial response; for PLAIN that is a malformed message.
    with pytest.raises(SaslError, match="authzid NUL"):
        start("PLAIN", b"=")


# ---------------------------------------------------------------- LOGIN

def test_login_asks_for_username_then_password() -> None:
    exchange = start("LOGIN")
    assert exchange.first == Challenge(b"Username:")
    assert exchange.first.line == b"VXNlcm5hbWU6"
    second = exchange.step(b64(b"alice@example.org"))
    assert second == Challenge(b"Password:")
    assert second.line == b"UGFzc3dvcmQ6"
    assert exchange.step(b64(b"s3cret")) == Credentials("alice@example.org", "s3cret")


def test_login_with_the_username_as_initial_response() -> None:
    exchange = start("LOGIN", b64(b"alice@example.org"))
    assert exchange.first == Challenge(b"Password:")
    assert exchange.step(b64(b"s3cret\x01 with spaces")) == Credentials("alice@example.org", "s3cret\x01 with spaces")


@pytest.mark.parametrize(("username", "password", "reason"), [
    (b"", b"pw", "username is empty"),
    (b"a\x00b", b"pw", "NUL"),
    (b"\xff", b"pw", "UTF-8"),
    (b"alice", b"", "password is empty"),
    (b"alice", b"p\x00w", "NUL"),
    (b"alice", b"\x80", "UTF-8"),
])
def test_bad_login_fields(username: bytes, password: bytes, reason: str) -> None:
    exchange = start("LOGIN")
    with pytest.raises(SaslError, match=reason):
        exchange.step(b64(username))
        exchange.step(b64(password))


# ---------------------------------------------------------------- both

@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("line", [b"*", b"*\r\n"])
def test_the_client_may_cancel(mechanism: str, line: bytes) -> None:
    exchange = start(mechanism)
    with pytest.raises(SaslError) as info:
        exchange.step(line)
    assert info.value.cancelled
    with pytest.raises(SaslError) as info:
        start(mechanism, line)
    assert info.value.cancelled


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("line", [b"!!!!", b"AHRp bQ==", b"AHRpbQ", b"\xff\xfe", b"YQ==YQ=="])
def test_bad_base64_is_refused(mechanism: str, line: bytes) -> None:
    with pytest.raises(SaslError, match="base64") as info:
        start(mechanism).step(line)
    assert not info.value.cancelled


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_overlong_lines_are_refused(mechanism: str) -> None:
    with pytest.raises(SaslError, match="longer than"):
        start(mechanism).step(b"A" * (MAX_LINE + 4))
    with pytest.raises(SaslError, match="longer than"):
        start(mechanism, b"A" * 104, max_line=100)


@pytest.mark.parametrize(("mechanism", "lines"), [
    ("PLAIN", [b64(b"\x00a\x00b")]), ("LOGIN", [b64(b"a"), b64(b"b")]),
])
def test_a_finished_exchange_takes_no_more_lines(mechanism: str, lines: list[bytes]) -> None:
    exchange = start(mechanism)
    for line in lines:
        exchange.step(line)
    with pytest.raises(SaslError, match="finished"):
        exchange.step(b64(b"again"))


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-256", "", "PLAIN\x00", "X" * 1000])
def test_other_mechanisms_are_refused(mechanism: str) -> None:
    with pytest.raises(SaslError, match="unsupported"):
        start(mechanism)


def test_credentials_do_not_show_the_password() -> None:
    assert "hunter2" not in repr(Credentials("alice", "hunter2"))


# ---------------------------------------------------------------- anything a client can send

def drive(exchange: SaslExchange, lines: list[bytes]) -> None:
    result = exchange.first
    for line in lines:
        if isinstance(result, Credentials):
            break
        result = exchange.step(line)


mechanisms = st.sampled_from(["PLAIN", "LOGIN", "plain", "Login", "NOPE"])
raw_lines = st.binary(max_size=200)
encoded_lines = st.binary(max_size=150).map(base64.b64encode)
any_line = st.one_of(raw_lines, encoded_lines, st.sampled_from([b"*", b"=", b"", b"\r\n"]))


@given(mechanisms, st.one_of(st.none(), any_line), st.lists(any_line, max_size=4))
def test_any_input_either_works_or_raises_sasl_error(mechanism: str, initial: bytes | None,
                                                       lines: list[bytes]) -> None:
    try:
        drive(start(mechanism, initial), lines)
    except SaslError as exc:
        assert str(exc)


@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
       st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_any_credentials_survive_both_mechanisms(username: str, password: str) -> None:
    plain = start("PLAIN", b64(b"\x00" + username.encode() + b"\x00" + password.encode()))
    assert plain.first == Credentials(username, password)
    login = start("LOGIN")
    login.step(b64(username.encode()))
    assert login.step(b64(password.encode())) == Credentials(username, password)
