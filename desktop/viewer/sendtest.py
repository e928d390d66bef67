"""Sending from the viewer — "Send test message" (the quickest proof that a new server works) and
written mail — the way a mail program would.

When the submission listener runs, the message goes through it exactly as Thunderbird's would: a
loopback connection, STARTTLS (RFC 3207) pinned to this engine's own certificate, AUTH with the
account's password (RFC 4954), then the message (aiosmtplib).  When submission is off, the engine API
delivers it instead: local recipients straight into the store, remote ones into the queue.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib

SUBJECT = "Postroom test message"
CONNECT_TIMEOUT = 20.0


class SendTestError(ValueError):
    """The test message could not be sent; str() says why in words."""


@dataclass(frozen=True)
class SendResult:
    route: str            # "submission" | "submissions" | "store" | "queue"
    words: str            # what happened, for the dialog


def build_test_message(sender: str, recipient: str, hostname: str, now: float | None = None) -> bytes:
    """A small, well-formed RFC 5322 message that says what it is."""
    when = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid("postroom-test", domain=hostname or None)
    msg["Auto-Submitted"] = "auto-generated"        # RFC 3834: no vacation replies to this
    msg.set_content(
        f"This is a test message sent by Postroom from {sender} to {recipient}.\n\n"
        f"If you can read it, mail from {hostname or 'this server'} reaches this mailbox.\n"
    )
    return msg.as_bytes()


def connect_host(bound: str) -> str:
    """Where to connect to reach a listener bound to `bound` (the wildcard addresses mean loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)


def _pinned_context() -> ssl.SSLContext:
    """TLS without CA checks: the peer is then compared with our own certificate (pinning), which is
    stronger than a CA check for a loopback connection to ourselves."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _own_certificate_der(engine: Any) -> bytes | None:
    from engine.tls import ensure_certificate

    try:
        cert_path, _key = ensure_certificate(engine.config)
        pem = Path(cert_path).read_text(encoding="ascii")
    except Exception:
        return None
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return None
    return ssl.PEM_cert_to_DER_cert(pem[start:end + len("-----END CERTIFICATE-----")] + "\n")


async def _via_smtp(engine: Any, service: str, account: str, password: str, recipients: list[str],
                    data: bytes) -> SendResult:
    bound_host, port = engine.address_of(service)
    host = connect_host(bound_host)
    implicit = service == "submissions"
    ctx = _pinned_context()
    expected = await asyncio.to_thread(_own_certificate_der, engine)
    client = aiosmtplib.SMTP(hostname=host, port=port, timeout=CONNECT_TIMEOUT, use_tls=implicit,
                             start_tls=False, tls_context=ctx if implicit else None,
                             local_hostname="postroom-desktop")
    try:
        await client.connect()
        if not implicit:
            await client.starttls(tls_context=ctx)   # RFC 3207; AUTH is offered only after it (RFC 4954 §4)
        ssl_object = client.get_transport_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if expected is not None and peer != expected:
            raise SendTestError(f"the program answering on {host}:{port} is not this Postroom "
                                "(its certificate differs), so the password was not sent")
        await client.login(account, password)
        await client.sendmail(account, recipients, data)
    except aiosmtplib.SMTPAuthenticationError:
        raise SendTestError(f"the server refused the password of {account}") from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        raise SendTestError(f"the recipient was refused ({reasons})") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise SendTestError(f"the server answered {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise SendTestError(f"could not talk to the {service} service on {host}:{port}: {exc}") from None
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
    return SendResult(service, f"Sent from {account} to {', '.join(recipients)} through the {service} service "
                               f"({host}:{port}), as a mail program would.")


async def _via_engine(engine: Any, account: str, recipients: list[str], data: bytes) -> SendResult:
    local: list[str] = []
    remote: list[str] = []
    for recipient in recipients:
        to_local, to_remote = await asyncio.to_thread(engine.directory.expand, recipient)
        if not to_local and not to_remote:
            domain = recipient.rpartition("@")[2]
            if await asyncio.to_thread(engine.directory.is_local_domain, domain):
                raise SendTestError(f"{recipient} is in a local domain but no account or alias takes it")
            to_remote = [recipient]
        local += [a for a in to_local if a not in local]
        remote += [a for a in to_remote if a not in remote]
    done: list[str] = []
    if local:
        await engine.store.deliver(local, data)
        done.append(f"delivered to {', '.join(local)}")
    if remote:
        if engine.queue is None:
            raise SendTestError("this version cannot send mail to other servers (no outbound queue)")
        queue_id = await engine.queue.enqueue(account, list(remote), data, authenticated_as=account)
        done.append(f"queued for {', '.join(remote)} (queue id {queue_id})")
    route = "store" if not remote else "queue"
    return SendResult(route, f"The submission service is off, so the engine took the message directly: "
                             f"{'; '.join(done)}.")


async def send_message(engine: Any, account: str, password: str, recipients: list[str],
                       data: bytes) -> SendResult:
    """Sends `data` from `account` (see the module docstring); SendTestError says why it could not."""
    running = {s.service for s in engine.status() if s.state == "running"}
    for service in ("submission", "submissions"):
        if service in running:
            return await _via_smtp(engine, service, account, password, recipients, data)
    return await _via_engine(engine, account, recipients, data)


async def send_test_message(engine: Any, account: str, password: str, recipient: str) -> SendResult:
    """Sends the test message; SendTestError says why it could not."""
    recipient = recipient.strip()
    if "@" not in recipient or any(ch.isspace() for ch in recipient):
        raise SendTestError(f"“{recipient}” is not an email address")
    data = build_test_message(account, recipient, engine.config.hostname)
    return await send_message(engine, account, password, [recipient], data)
