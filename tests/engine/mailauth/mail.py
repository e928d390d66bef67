"""Messages as remote senders write them, signed (or not) with dkimpy directly, not with our signer."""

from __future__ import annotations

import email.utils
from typing import Any

import dkim


def compose(sender: str, to: str, subject: str = "Hello", body: str = "Hi there.\r\nSee you.\r\n",
            extra: tuple[str, ...] = ()) -> bytes:
    domain = sender.rpartition("@")[2].rstrip(">")
    head = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
            f"Date: {email.utils.formatdate(localtime=False)}",
            f"Message-ID: {email.utils.make_msgid(domain=domain)}", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8", *extra]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def dkim_sign(message: bytes, key: Any, domain: str, selector: str | None = None) -> bytes:
    """The message with one DKIM-Signature by `domain` prepended (relaxed/simple, as many senders do)."""
    signer = dkim.DKIM(message)
    field = signer.sign((selector or key.selector).encode(), domain.encode(), key.private,
                        signature_algorithm=key.algorithm, canonicalize=(b"relaxed", b"simple"),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return bytes(field) + message


def headers(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def field_values(message: bytes, name: str) -> list[str]:
    """Unfolded values of every `name:` field in the header block, top to bottom."""
    out: list[str] = []
    current: str | None = None
    for line in headers(message).decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and current is not None:
            current += " " + line.strip()
            out[-1] = current
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            current = value.strip()
            out.append(current)
        else:
            current = None
    return out
