"""Whatever a sender puts in a message, the checks give verdicts — never an exception (which would cost the
message a 451) — and the Authentication-Results field we write stays well-formed and readable.

DNS here is an in-memory table (engine.mailauth.dnssource.StaticSource): these tests are about parsing.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.mailauth.dnssource import StaticSource
from engine.mailauth.results import header_field
from engine.mailauth.service import Verifier
from engine.mailauth.words import describe

SOURCE = StaticSource.txt({
    "bank.test": "v=spf1 ip4:127.0.0.1 -all",
    "_dmarc.bank.test": "v=DMARC1; p=reject",
    "s._domainkey.bank.test": "v=DKIM1; k=rsa; p=not-base64!!",
    "x._domainkey.a(b).test": "v=DKIM1; k=ed25519; p=",
})

FIELD_NAMES = st.sampled_from(["From", "DKIM-Signature", "ARC-Seal", "ARC-Message-Signature",
                               "ARC-Authentication-Results", "Authentication-Results", "Subject", "To"])
VALUES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80),
    st.sampled_from([
        "v=1; a=rsa-sha256; d=bank.test; s=s; h=from; bh=AAAA; b=AAAA",
        "v=1; a=ed25519-sha256; d=a(b).test; s=x; h=from:from; bh=; b=",
        "i=1; a=rsa-sha256; cv=none; d=bank.test; s=s; b=AAAA",
        "i=99; a=rsa-sha256; d=bank.test; s=s; h=from; bh=AAAA; b=AAAA",
        "Bank <alerts@bank.test>", "a@b.test, c@d.test", "<>", "\"\" <@>", "=?utf-8?q?x?= <x@bank.test>",
        "mx.home.test; spf=pass", "mx.home.test (x; dkim=pass",
    ]))


def message(fields: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(FIELD_NAMES, VALUES), max_size=12), st.binary(max_size=200),
       st.sampled_from(["", "alerts@bank.test", "x@[127.0.0.1]", "weird@"]),
       st.sampled_from(["mail.bank.test", "[127.0.0.1]", "", "::ffff:127.0.0.1"]))
def test_any_message_gets_verdicts_and_a_readable_header(fields: list[tuple[str, str]], body: bytes,
                                                         sender: str, helo: str) -> None:
    data = message(fields, body)
    verifier = Verifier(SOURCE, hostname="mx.home.test", in_thread=False)
    results = asyncio.run(verifier.verify(data, "127.0.0.1", sender, helo))
    field = header_field("mx.home.test", results)
    assert field.endswith(b"\r\n") and all(len(line) < 998 for line in field.split(b"\r\n"))
    words = describe(field.decode("utf-8").split(":", 1)[1])
    assert words and "could not be read" not in words[0]
