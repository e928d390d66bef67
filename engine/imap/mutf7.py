"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3), the only encoding IMAP4rev1 clients send.

Clients that `ENABLE UTF8=ACCEPT` (RFC 6855) or IMAP4rev2 send raw UTF-8 instead; the session decides
which applies and calls these only when names travel in modified UTF-7.
"""

from __future__ import annotations

import base64
import binascii


class MUTF7Error(ValueError):
    """Text that is not well-formed modified UTF-7."""


def _is_direct(ch: str) -> bool:
    # RFC 3501 §5.1.3: printable US-ASCII except "&" represent themselves.
    return 0x20 <= ord(ch) <= 0x7E and ch != "&"


def _b64_encode(chunk: str) -> str:
    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    """A Unicode mailbox name as modified UTF-7 (ASCII only)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("&" + _b64_encode("".join(pending)) + "-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append(ch)
        elif ch == "&":
            flush()
            out.append("&-")
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(text: str) -> str:
    """Modified UTF-7 back to Unicode; raises MUTF7Error on anything RFC 3501 does not allow."""
    out: list[str] = []
    i = 0
    n = len(text)
    last_was_shift = False
    while i < n:
        ch = text[i]
        if ch != "&":
            if not (0x20 <= ord(ch) <= 0x7E):
                raise MUTF7Error(f"character {ch!r} must be base64-encoded")
            out.append(ch)
            i += 1
            last_was_shift = False
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated &-shift")
        body = text[i + 1:end]
        i = end + 1
        if not body:
            out.append("&")
            last_was_shift = False
            continue
        if last_was_shift:
            # RFC 3501 §5.1.3: adjacent shifts must be merged into one.
            raise MUTF7Error("two adjacent &-shifts")
        if any(not (c.isascii() and (c.isalnum() or c in "+,")) for c in body):
            raise MUTF7Error("bad character in &-shift")
        if len(body) % 4 == 1:
            raise MUTF7Error("truncated &-shift")
        padded = body.replace(",", "/") + "=" * (-len(body) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
        except binascii.Error as exc:
            raise MUTF7Error(str(exc)) from None
        if len(raw) % 2:
            raise MUTF7Error("odd number of octets in &-shift")
        try:
            decoded = raw.decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise MUTF7Error(str(exc)) from None
        if any(_is_direct(c) or c == "&" for c in decoded):
            raise MUTF7Error("&-shift encodes printable ASCII")
        out.append(decoded)
        last_was_shift = True
    return "".join(out)
