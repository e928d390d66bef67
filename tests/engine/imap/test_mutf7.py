"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.imap.mutf7 import MUTF7Error, decode, encode

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)   # typed: mypy infers tuple[str] inline, hypothesis wants a Literal


@pytest.mark.parametrize(("text", "wire"), [
    ("INBOX", "INBOX"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("😀", "&2D3eAA-"),
])
def test_known_spellings(text: str, wire: str) -> None:
    assert encode(text) == wire
    assert decode(wire) == text


@pytest.mark.parametrize("bad", [
    "&Jjo",          # unterminated shift
    "&AGE-",         # encodes printable ASCII ("a")
    "&U,BTFw-&ZeVnLIqe-",   # two adjacent shifts must be one
    "caf\u00e9",     # raw 8-bit
    "&A-",           # truncated base64
    "&?-",           # not base64
])
def test_malformed_is_refused(bad: str) -> None:
    with pytest.raises(MUTF7Error):
        decode(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=SURROGATES), max_size=40))
def test_round_trip(text: str) -> None:
    wire = encode(text)
    assert wire.isascii()
    assert all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert decode(wire) == text
