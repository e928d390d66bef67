"""Limits on connections and time, stopping with transactions in flight, and failures inside the server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from pathlib import Path

import pytest

from engine.smtp import codes
from engine.smtp.filters import InboundMessage
from tests.engine.smtp.conftest import MESSAGE, RawClient, Server, ServerFactory, wait_until

HEADERS = b"From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: t\r\n\r\n"


def open_transaction(c: RawClient) -> None:
    c.code()
    c.command("EHLO client.test")
    assert c.command("MAIL FROM:<bob@remote.test>").startswith("250 ")
    assert c.command("RCPT TO:<alice@example.test>").startswith("250 ")


def test_one_address_gets_at_most_its_connections(make_server: ServerFactory) -> None:
    server = make_server("smtp", limits={"connections_per_ip": 2})
    first, second = server.raw(), server.raw()
    try:
        assert first.code().startswith("220 ") and second.code().startswith("220 ")
        with server.raw() as third:
            assert third.code().startswith("421 4.7.0")
            assert third.closed()
        first.command("QUIT")
        assert wait_until(lambda: server.listener.connections.count("127.0.0.1") < 2)
        with server.raw() as again:
            assert again.code().startswith("220 ")
    finally:
        first.close()
        second.close()
    assert server.log_events("rejected")[0].detail == "too many connections"


def test_an_idle_client_is_told_and_dropped(make_server: ServerFactory) -> None:
    server = make_server("smtp", limits={"smtp_timeout": 0.3})
    with server.raw() as c:
        assert c.code().startswith("220 ")
        assert c.code().startswith("421 4.4.2"), "unasked: the server speaks first when it gives up"
        assert c.closed()


def test_stop_lets_a_transaction_finish_and_turns_idle_clients_away(mx: Server) -> None:
    idle, busy = mx.raw(), mx.raw()
    try:
        idle.code()
        idle.command("EHLO client.test")
        open_transaction(busy)
        assert busy.command("DATA").startswith("354 ")
        stopping = asyncio.run_coroutine_threadsafe(mx.listener.stop(10.0), mx.loop.loop)
        assert wait_until(lambda: mx.listener.stopping)
        assert idle.code().startswith("421 4.3.2")
        assert idle.closed()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", mx.port), timeout=2).close()
        busy.send(HEADERS + b"finished during shutdown\r\n.\r\n")
        assert busy.code().startswith("250 ")
        assert busy.code().startswith("421 4.3.2")
        assert busy.closed()
        stopping.result(5)          # well before the grace period
    finally:
        idle.close()
        busy.close()
    assert len(mx.messages("alice@example.test")) == 1


def test_stop_closes_a_stalled_transaction_after_the_grace_period(mx: Server) -> None:
    with mx.raw() as stalled:
        open_transaction(stalled)
        mx.stop(grace=0.2)
        assert stalled.code().startswith("421 4.3.2")
        assert stalled.closed()


def test_a_store_that_cannot_write_answers_452_and_keeps_nothing(mx: Server) -> None:
    mx.services.store.create_account("alice@example.test")
    tmp = Path(mx.data_dir, "mail", "example.test", "alice", "tmp")
    shutil.rmtree(tmp)
    tmp.write_bytes(b"")                      # a file where tmp/ should be: the write fails with OSError
    with mx.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(MESSAGE)
        assert (code, text[:5]) == (452, b"4.3.1")
        assert mx.messages("alice@example.test") == []
        assert mx.services.store.mailbox("alice@example.test").messages("INBOX") == []
        tmp.unlink()
        tmp.mkdir()
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}, "the session goes on"
    assert len(mx.messages("alice@example.test")) == 1


def test_an_internal_error_is_a_451_with_a_traceback_and_the_session_goes_on(
        make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[InboundMessage] = []

    async def flaky(message: InboundMessage) -> bytes | None:
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("filter bug")
        return b"X-Checked: yes\r\n" + message.data

    server = make_server("smtp", filters=[flaky])
    with server.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(MESSAGE)
        assert (code, text[:5]) == (451, b"4.3.0")
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}
    assert "filter bug" in caplog.text and "Traceback" in caplog.text
    assert server.messages("alice@example.test")[0].startswith(b"X-Checked: yes\nReceived: ")
    assert calls[1].role == "smtp" and calls[1].local == ("alice@example.test",)


def test_a_filter_may_refuse_a_message(make_server: ServerFactory) -> None:
    async def refuse(message: InboundMessage) -> codes.Reply:
        return codes.Reply(550, "5.7.1", "Rejected by policy")

    server = make_server("smtp", filters=[refuse])
    with server.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        assert smtp.data(MESSAGE) == (550, b"5.7.1 Rejected by policy")
    assert server.messages("alice@example.test") == []


def test_a_failing_lookup_is_a_451_and_the_session_goes_on(mx: Server,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with mx.raw() as c:
        c.code()
        c.command("EHLO client.test")
        c.command("MAIL FROM:<bob@remote.test>")
        mx.services.directory.close()           # every lookup now raises inside the server
        assert c.command("RCPT TO:<alice@example.test>").startswith("451 4.3.0")
        assert c.command("NOOP").startswith("250 ")
    assert "internal error" in caplog.text


def test_a_mailbox_over_its_quota_gets_452_4_2_2(mx: Server) -> None:
    big = MESSAGE + (b"x" * 70 + b"\r\n") * 15
    mx.services.directory.set_quota("alice@example.test", 1000)
    with mx.smtp() as smtp:
        smtp.ehlo("client.test")
        smtp.mail("bob@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(big)
        assert (code, text[:5]) == (452, b"4.2.2")
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], MESSAGE) == {}, "a small one fits"
        mx.services.directory.set_quota("alice@example.test", None)
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], big) == {}
    assert len(mx.messages("alice@example.test")) == 2
