"""TLS to MX hosts: opportunistic by default (an untrusted certificate still encrypts, and the log says
so), verified when `require_verified_tls` is set."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from .conftest import SENDER, Harness, lb

MESSAGE = b"From: alice@home.test\r\nSubject: tls\r\n\r\nbody\r\n"


@pytest.fixture
async def tls_mx(harness: Harness) -> AsyncIterator[Any]:
    """An MX for tls.test on ::1 with a certificate from a CA nobody trusts."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("mx.tls.test").configure_cert(ctx)
    server = await lb.MXServer(host="::1", port=harness.config.delivery.remote_port, hostname="mx.tls.test",
                               tls_context=ctx).start()
    yield server
    await server.stop()


async def test_an_untrusted_certificate_still_encrypts_and_the_log_says_so(harness: Harness, tls_mx: Any,
                                                                          eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    await queue.enqueue(SENDER, ["t@tls.test"], MESSAGE)
    [entry] = await eventually(lambda: harness.log.query(status="relayed"), what="the relayed entry")
    assert tls_mx.received[0].tls
    assert entry.tls.startswith("TLSv1.") and "unverified" in entry.tls


async def test_required_verified_tls_defers_rather_than_send_to_an_untrusted_server(
        harness: Harness, tls_mx: Any, eventually: Any) -> None:
    harness.configure(require_verified_tls=True)
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["t@tls.test"], MESSAGE)
    await eventually(lambda: harness.log_events("t@tls.test")[:1] == ["deferred"], what="a deferral")
    item = queue.get(queue_id)
    assert item is not None and "does not verify" in item.last_error
    assert tls_mx.received == []
