"""Clients that speak at once after the TLS handshake are served: only plaintext sent before it is dropped."""

from __future__ import annotations

import asyncio

import aiosmtplib

from tests.engine.smtp.conftest import Server, client_tls


def test_aiosmtplib_submits_over_starttls_with_ehlo_in_the_handshake_flight(submission: Server) -> None:
    async def send() -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        result = await aiosmtplib.send(
            b"From: alice@example.test\r\nSubject: hi\r\n\r\nover STARTTLS\r\n",
            sender="alice@example.test", recipients=["bob@example.test"], hostname="127.0.0.1",
            port=submission.port, start_tls=True, tls_context=client_tls(), username="alice@example.test",
            password="alice-pw", timeout=10)
        # aiosmtplib closes its transport without waiting for it: a few loop turns let the TLS shutdown
        # and the socket's close finish before asyncio.run closes the loop (else the socket is left for the
        # garbage collector, whose ResourceWarning then fails whichever test it lands in).
        await asyncio.sleep(0.2)
        return result

    refused, reply = asyncio.run(send())
    assert refused == {}
    assert reply.startswith("2.0.0")
    assert any(b"over STARTTLS" in m for m in submission.messages("bob@example.test"))
