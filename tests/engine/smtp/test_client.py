"""The outbound SMTP client against real loopback servers (aiosmtpd), and its pure helpers."""

from __future__ import annotations

import importlib.util
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from engine.smtp.client import (
    AuthFailed,
    ClientOptions,
    ConnectFailed,
    ConnectionLost,
    GreetingRefused,
    LoopDetected,
    SMTPConnection,
    Timeouts,
    TLSFailed,
    encode_data,
    open_session,
    parse_extensions,
    parse_reply_line,
)


def _load_loopback() -> ModuleType:
    name = "postroom_tests_loopback"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "queue" / "loopback.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lb = _load_loopback()
FAST = Timeouts.uniform(2.0)
OPTIONS = ClientOptions(helo="out.postroom.test", timeouts=FAST, loop_names=frozenset({"out.postroom.test"}))
MESSAGE = b"From: a@src.test\r\nTo: b@accept.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"


# --- pure helpers --------------------------------------------------------------------------------------

def test_data_is_dot_stuffed_with_crlf_and_terminated() -> None:
    assert encode_data(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert encode_data(b".") == b"..\r\n.\r\n"
    assert encode_data(b"") == b".\r\n"


@given(st.lists(st.text(alphabet="ab.\u00e9 ", max_size=12), max_size=8))
def test_unstuffing_what_we_send_gives_back_the_lines(lines: list[str]) -> None:
    data = "".join(f"{line}\r\n" for line in lines).encode()
    wire = encode_data(data)
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    sent = body.split(b"\r\n")[:-1] if body else []
    assert [line[1:] if line.startswith(b".") else line for line in sent] == [ln.encode() for ln in lines]


def test_reply_lines_parse_into_code_continuation_and_text() -> None:
    assert parse_reply_line(b"250-PIPELINING\r\n") == (250, False, "PIPELINING")
    assert parse_reply_line(b"550 5.1.1 No such user\r\n") == (550, True, "5.1.1 No such user")
    assert parse_reply_line(b"220\r\n") == (220, True, "")
    with pytest.raises(ValueError):
        parse_reply_line(b"hello\r\n")


def test_extensions_come_from_every_ehlo_line_but_the_first() -> None:
    assert parse_extensions(["mx.test hello", "SIZE 1000", "pipelining", "AUTH PLAIN LOGIN"]) == {
        "SIZE": "1000", "PIPELINING": "", "AUTH": "PLAIN LOGIN"}


# --- sessions --------------------------------------------------------------------------------------------

@pytest.fixture
async def mx() -> AsyncIterator[Any]:
    server = await lb.MXServer(behaviours={"refused.test": lb.REFUSE, "grey.test": lb.GREYLIST,
                                           "drop.test": lb.DROP, "later.test": lb.DATA_TEMPFAIL}).start()
    yield server
    await server.stop()


async def _session(server: Any, options: ClientOptions = OPTIONS, host: str = "mx.accept.test") -> SMTPConnection:
    return await open_session(host, [server.host], server.port, options)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_each_recipient_gets_its_own_final_reply(mx: Any, pipelining: bool) -> None:
    mx.pipelining = pipelining
    conn = await _session(mx)
    try:
        assert conn.supports("PIPELINING") is pipelining
        results = await conn.send("a@src.test", ["b@accept.test", "x@refused.test", "c@accept.test"], MESSAGE)
    finally:
        await conn.quit()
    assert {r: reply.code for r, reply in results.items()} == {
        "b@accept.test": 250, "x@refused.test": 550, "c@accept.test": 250}
    assert results["x@refused.test"].status == "5.1.1"
    [received] = mx.received
    assert received.rcpt_tos == ("b@accept.test", "c@accept.test")
    assert received.helo == "out.postroom.test"
    assert received.content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert f"SIZE={len(MESSAGE)}" in received.mail_options


async def test_eight_bit_mail_is_declared_and_non_ascii_addresses_ask_for_smtputf8(mx: Any) -> None:
    conn = await _session(mx)
    try:
        body = "Subject: caf\u00e9\r\n\r\n\u00e9t\u00e9\r\n".encode()
        results = await conn.send("j\u00f6rg@src.test", ["b@accept.test"], body)
    finally:
        await conn.quit()
    assert results["b@accept.test"].code == 250
    assert {"BODY=8BITMIME", "SMTPUTF8"} <= set(mx.received[0].mail_options)


async def test_a_non_ascii_address_is_not_sent_to_a_server_without_smtputf8() -> None:
    server = await lb.MXServer(smtputf8=False).start()
    try:
        conn = await _session(server)
        results = await conn.send("a@src.test", ["b\u00fcb@accept.test"], MESSAGE)
        await conn.quit()
    finally:
        await server.stop()
    assert results["b\u00fcb@accept.test"].code == 553
    assert results["b\u00fcb@accept.test"].local
    assert server.received == []


async def test_a_message_over_the_remote_size_limit_is_refused_without_sending() -> None:
    server = await lb.MXServer(data_size_limit=100).start()
    try:
        conn = await _session(server)
        results = await conn.send("a@src.test", ["b@accept.test"], MESSAGE * 10)
        await conn.quit()
    finally:
        await server.stop()
    assert results["b@accept.test"].code == 552
    assert results["b@accept.test"].status == "5.3.4"
    assert server.received == []


async def test_greylisting_is_a_temporary_reply(mx: Any) -> None:
    conn = await _session(mx)
    try:
        first = await conn.send("a@src.test", ["g@grey.test"], MESSAGE)
        second = await conn.send("a@src.test", ["g@grey.test"], MESSAGE)
    finally:
        await conn.quit()
    assert first["g@grey.test"].transient
    assert second["g@grey.test"].code == 250
    assert mx.connections == 1


async def test_one_connection_carries_several_transactions_after_a_failure(mx: Any) -> None:
    conn = await _session(mx)
    try:
        refused = await conn.send("a@src.test", ["x@refused.test"], MESSAGE)
        later = await conn.send("a@src.test", ["l@later.test"], MESSAGE)
        accepted = await conn.send("a@src.test", ["b@accept.test"], MESSAGE)
        assert conn.usable
    finally:
        await conn.quit()
    assert refused["x@refused.test"].code == 550
    assert later["l@later.test"].code == 451
    assert accepted["b@accept.test"].code == 250
    assert (mx.connections, len(mx.received)) == (1, 1)


async def test_a_connection_dropped_mid_data_leaves_the_outcome_unknown(mx: Any) -> None:
    conn = await _session(mx)
    try:
        with pytest.raises(ConnectionLost):
            await conn.send("a@src.test", ["d@drop.test"], MESSAGE)
        assert not conn.usable
    finally:
        await conn.quit()


async def test_a_server_greeting_with_our_own_name_is_a_loop() -> None:
    server = await lb.MXServer(hostname="out.postroom.test").start()
    try:
        with pytest.raises(LoopDetected) as info:
            await _session(server)
    finally:
        await server.stop()
    assert info.value.permanent
    assert "loops back to myself" in str(info.value)


async def test_a_4xx_greeting_moves_on_to_the_next_address() -> None:
    port = lb.free_port_both()
    busy = await lb.RawServer(host="::1", port=port, greeting=b"421 4.3.2 busy, go away\r\n").start()
    good = await lb.MXServer(host="127.0.0.1", port=port).start()
    try:
        conn = await open_session("mx.accept.test", ["::1", "127.0.0.1"], port, OPTIONS)
        assert conn.address == "127.0.0.1"
        await conn.quit()
        with pytest.raises(GreetingRefused):
            await open_session("mx.accept.test", ["::1"], port, OPTIONS)
    finally:
        await busy.stop()
        await good.stop()
    assert busy.connections == 2


async def test_a_refused_connection_fails_fast() -> None:
    port = lb.free_port()
    with pytest.raises(ConnectFailed):
        await open_session("mx.accept.test", ["127.0.0.1"], port, OPTIONS)


async def test_a_server_that_never_greets_times_out() -> None:
    silent = await lb.RawServer().start()
    options = ClientOptions(helo="out.postroom.test", timeouts=Timeouts.uniform(0.3))
    try:
        with pytest.raises(ConnectFailed) as info:
            await open_session("mx.accept.test", ["127.0.0.1"], silent.port, options)
    finally:
        await silent.stop()
    assert "did not answer within 0.3s" in str(info.value)


# --- TLS -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.accept.test").configure_cert(ctx)
    return ctx


@pytest.fixture
def trusting(ca: trustme.CA) -> Iterator[ssl.SSLContext]:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    yield ctx


async def test_starttls_with_a_trusted_certificate_is_verified(server_tls: ssl.SSLContext,
                                                               trusting: ssl.SSLContext) -> None:
    server = await lb.MXServer(tls_context=server_tls).start()
    options = ClientOptions(helo="out.postroom.test", timeouts=FAST, verify_context=trusting)
    try:
        conn = await _session(server, options)
        results = await conn.send("a@src.test", ["b@accept.test"], MESSAGE)
        await conn.quit()
    finally:
        await server.stop()
    assert conn.tls.encrypted and conn.tls.verified
    assert str(conn.tls).startswith("TLSv1.")
    assert results["b@accept.test"].code == 250
    assert server.received[0].tls


async def test_an_untrusted_certificate_still_gives_an_encrypted_session(server_tls: ssl.SSLContext) -> None:
    server = await lb.MXServer(tls_context=server_tls).start()
    try:
        conn = await _session(server)        # system trust store: the test CA is unknown
        results = await conn.send("a@src.test", ["b@accept.test"], MESSAGE)
        await conn.quit()
    finally:
        await server.stop()
    assert conn.tls.encrypted and not conn.tls.verified
    assert "unverified" in str(conn.tls) and "certificate" in str(conn.tls)
    assert results["b@accept.test"].code == 250
    assert server.received[0].tls
    assert server.connections == 2           # one rung down the ladder: reconnect accepting any cert


async def test_a_certificate_for_another_name_is_unverified(server_tls: ssl.SSLContext,
                                                            trusting: ssl.SSLContext) -> None:
    server = await lb.MXServer(tls_context=server_tls).start()
    options = ClientOptions(helo="out.postroom.test", timeouts=FAST, verify_context=trusting)
    try:
        conn = await _session(server, options, host="mx.other.test")
        await conn.quit()
    finally:
        await server.stop()
    assert conn.tls.encrypted and not conn.tls.verified


async def test_required_verified_tls_refuses_an_untrusted_certificate(server_tls: ssl.SSLContext) -> None:
    server = await lb.MXServer(tls_context=server_tls).start()
    options = ClientOptions(helo="out.postroom.test", timeouts=FAST, tls="verified")
    try:
        with pytest.raises(TLSFailed) as info:
            await _session(server, options)
    finally:
        await server.stop()
    assert info.value.verify_failed
    assert server.received == []


async def test_required_tls_refuses_a_server_without_starttls(mx: Any) -> None:
    with pytest.raises(TLSFailed):
        await _session(mx, ClientOptions(helo="out.postroom.test", timeouts=FAST, tls="verified"))


async def test_a_broken_handshake_falls_back_to_plaintext(ca: trustme.CA) -> None:
    broken = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.accept.test").configure_cert(broken)
    broken.set_ciphers("aNULL")              # nothing a client offers: every handshake fails
    broken.maximum_version = ssl.TLSVersion.TLSv1_2
    server = await lb.MXServer(tls_context=broken).start()
    try:
        conn = await _session(server)
        results = await conn.send("a@src.test", ["b@accept.test"], MESSAGE)
        await conn.quit()
    finally:
        await server.stop()
    assert not conn.tls.encrypted
    assert "handshake" in str(conn.tls)
    assert results["b@accept.test"].code == 250
    assert not server.received[0].tls


async def test_auth_plain_after_starttls(server_tls: ssl.SSLContext, trusting: ssl.SSLContext) -> None:
    server = await lb.MXServer(tls_context=server_tls, credentials={"relay": "s3cret"}).start()
    good = ClientOptions(helo="out.postroom.test", timeouts=FAST, verify_context=trusting, tls="verified",
                         username="relay", password="s3cret")
    bad = ClientOptions(helo="out.postroom.test", timeouts=FAST, verify_context=trusting, tls="verified",
                        username="relay", password="wrong")
    try:
        conn = await _session(server, good)
        results = await conn.send("a@src.test", ["b@accept.test"], MESSAGE)
        await conn.quit()
        with pytest.raises(AuthFailed):
            await _session(server, bad)
    finally:
        await server.stop()
    assert server.logins == ["relay"]
    assert results["b@accept.test"].code == 250
