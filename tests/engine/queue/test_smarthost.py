"""Relaying everything through a smarthost: required TLS (STARTTLS or implicit) and AUTH, with the
password from the settings file or from the desktop's secret store."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme

from engine.config import ListenAddress

from .conftest import SENDER, Harness, lb

MESSAGE = b"From: alice@home.test\r\nSubject: via relay\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def relay_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.test").configure_cert(ctx)
    return ctx


@pytest.fixture
def trusting(ca: trustme.CA) -> Iterator[ssl.SSLContext]:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    yield ctx


@pytest.fixture
async def relay(relay_tls: ssl.SSLContext) -> AsyncIterator[Any]:
    server = await lb.MXServer(hostname="relay.test", tls_context=relay_tls,
                               credentials={"relay-user": "relay-pass"}).start()
    yield server
    await server.stop()


async def test_all_remote_mail_goes_through_the_smarthost_with_auth(harness: Harness, relay: Any, mx: Any,
                                                                    trusting: ssl.SSLContext,
                                                                    eventually: Any) -> None:
    harness.configure(smarthost=ListenAddress("relay.test", relay.port), smarthost_username="relay-user",
                      smarthost_tls="starttls")
    asked: list[str] = []

    def secrets(name: str) -> str | None:
        asked.append(name)
        return "relay-pass" if name == "smarthost_password" else None

    queue = harness.queue(verify_context=trusting, secrets=secrets)
    await queue.start()
    await queue.enqueue(SENDER, ["a@accept.test", "b@far.test", "bob@home.test"], MESSAGE)
    await eventually(lambda: len(relay.recipients()) == 2 and harness.inbox("bob@home.test"),
                     what="relay and local delivery")
    [received] = relay.received
    assert sorted(received.rcpt_tos) == ["a@accept.test", "b@far.test"]      # one transaction for all
    assert received.tls and relay.logins == ["relay-user"]
    assert asked == ["smarthost_password"]
    assert mx.received == []                                                  # never straight to the MX
    entries = await eventually(lambda: harness.log.query(status="relayed"), what="log entries")
    assert all("verified" in e.tls and "unverified" not in e.tls for e in entries)
    assert entries[0].remote_host.startswith("relay.test[127.0.0.1]")


async def test_a_password_in_the_settings_file_works_too(harness: Harness, relay: Any,
                                                         trusting: ssl.SSLContext, eventually: Any) -> None:
    harness.configure(smarthost=ListenAddress("relay.test", relay.port), smarthost_username="relay-user",
                      smarthost_password="relay-pass")
    queue = harness.queue(verify_context=trusting)
    await queue.start()
    await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    await eventually(lambda: relay.recipients() == ["a@accept.test"], what="relayed delivery")


async def test_wrong_credentials_defer_rather_than_bounce(harness: Harness, relay: Any,
                                                          trusting: ssl.SSLContext, eventually: Any) -> None:
    harness.configure(smarthost=ListenAddress("relay.test", relay.port), smarthost_username="relay-user",
                      smarthost_password="wrong")
    queue = harness.queue(verify_context=trusting)
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    await eventually(lambda: harness.log_events("a@accept.test")[:1] == ["deferred"], what="a deferral")
    item = queue.get(queue_id)
    assert item is not None and "refused our credentials" in item.last_error
    assert harness.inbox() == []


async def test_an_untrusted_smarthost_certificate_defers(harness: Harness, relay: Any, eventually: Any) -> None:
    harness.configure(smarthost=ListenAddress("relay.test", relay.port), smarthost_username="relay-user",
                      smarthost_password="relay-pass")
    queue = harness.queue()                 # system trust store: the test CA is unknown
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    await eventually(lambda: harness.log_events("a@accept.test")[:1] == ["deferred"], what="a deferral")
    item = queue.get(queue_id)
    assert item is not None and "certificate" in item.last_error
    assert relay.logins == [] and relay.received == []


async def test_implicit_tls_smarthost(harness: Harness, relay_tls: ssl.SSLContext, trusting: ssl.SSLContext,
                                      eventually: Any) -> None:
    relay = await lb.MXServer(hostname="relay.test", implicit_tls=relay_tls,
                              credentials={"relay-user": "relay-pass"}).start()
    try:
        harness.configure(smarthost=ListenAddress("relay.test", relay.port), smarthost_username="relay-user",
                          smarthost_password="relay-pass", smarthost_tls="implicit")
        queue = harness.queue(verify_context=trusting)
        await queue.start()
        await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
        await eventually(lambda: relay.recipients() == ["a@accept.test"], what="delivery over implicit TLS")
        assert relay.received[0].tls and relay.logins == ["relay-user"]
    finally:
        await relay.stop()
