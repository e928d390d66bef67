"""Escaping of control and bidi characters, address display and attachment file names."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from desktop.viewer.text import (
    MAX_NAME_BYTES,
    escape_unsafe,
    is_unsafe_char,
    safe_filename,
    show_address,
    unique_path,
)


def test_bidi_override_and_controls_are_shown_escaped() -> None:
    assert escape_unsafe("invoice\u202efdp.exe") == "invoice[U+202E]fdp.exe"
    assert escape_unsafe("a\x00b\x1bc\x7f") == "a[U+0000]b[U+001B]c[U+007F]"
    assert escape_unsafe("zero\u200bwidth") == "zero[U+200B]width"
    assert escape_unsafe("line\u2028sep") == "line[U+2028]sep"


def test_ordinary_text_and_emoji_sequences_are_left_alone() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert escape_unsafe(f"Grüße, Привет, 你好 {family}\tok") == f"Grüße, Привет, 你好 {family}\tok"
    assert escape_unsafe(family, strict=True).count("[U+200D]") == 2


def test_newlines_kept_only_when_asked() -> None:
    assert escape_unsafe("a\r\nb", keep_newlines=True) == "a\nb"
    assert escape_unsafe("a\nb") == "a[U+000A]b"


@given(st.text())
def test_escaped_text_never_contains_an_unsafe_character(text: str) -> None:
    assert not any(is_unsafe_char(ch) for ch in escape_unsafe(text))


def test_address_is_always_shown_beside_the_name() -> None:
    shown = show_address("Carol Example", "carol@remote.test")
    assert shown.text == "Carol Example <carol@remote.test>"
    assert shown.warning == ""


def test_a_name_that_shows_another_address_is_flagged() -> None:
    shown = show_address("support@bank.test", "attacker@evil.test")
    assert shown.text == "support@bank.test <attacker@evil.test>"
    assert "support@bank.test" in shown.warning and "attacker@evil.test" in shown.warning


def test_a_name_repeating_its_own_address_is_fine() -> None:
    assert show_address("carol@remote.test", "Carol@Remote.test").warning == ""


def test_bidi_in_a_name_is_escaped_and_flagged() -> None:
    shown = show_address("Bank\u202e moc.knab", "x@evil.test")
    assert "[U+202E]" in shown.text
    assert shown.warning


def test_path_in_an_attachment_name_becomes_a_plain_name() -> None:
    assert safe_filename("../../.bashrc") == "bashrc"
    assert safe_filename("..\\..\\Windows\\system.ini") == "system.ini"
    assert safe_filename("/etc/passwd") == "passwd"
    assert safe_filename("..") == "attachment"
    assert safe_filename("") == "attachment"
    assert safe_filename(None, fallback="part-3.bin") == "part-3.bin"


def test_bidi_and_controls_are_dropped_from_file_names() -> None:
    assert safe_filename("invoice\u202efdp.exe") == "invoicefdp.exe"
    assert safe_filename("a\x00b\nc.txt") == "abc.txt"


def test_reserved_characters_and_device_names() -> None:
    assert safe_filename('what?*:"<>|.txt') == "what_______.txt"
    assert safe_filename("CON.txt") == "_CON.txt"
    assert safe_filename("report. . ") == "report"


def test_long_names_keep_their_extension() -> None:
    name = safe_filename("x" * 400 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= MAX_NAME_BYTES


@given(st.text())
def test_any_name_is_a_single_harmless_component(name: str) -> None:
    cleaned = safe_filename(name)
    assert cleaned
    assert "/" not in cleaned and "\\" not in cleaned and "\x00" not in cleaned
    assert not cleaned.startswith(".")
    assert cleaned not in (".", "..")
    assert len(cleaned.encode()) <= MAX_NAME_BYTES
    assert not any(is_unsafe_char(ch, strict=True) for ch in cleaned)


def test_unique_path_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"x")
    (tmp_path / "report (2).pdf").write_bytes(b"x")
    assert unique_path(tmp_path, "report.pdf") == tmp_path / "report (3).pdf"
    assert unique_path(tmp_path, "new.txt") == tmp_path / "new.txt"


def test_the_fast_table_covers_every_unsafe_character_unicodedata_knows() -> None:
    import unicodedata

    from desktop.viewer.text import UNSAFE_RANGES

    covered = {cp for low, high in UNSAFE_RANGES for cp in range(low, high + 1)}
    missing = [f"U+{cp:04X}" for cp in range(0x110000)
               if unicodedata.category(chr(cp)) in {"Cc", "Cf", "Cs", "Zl", "Zp"} and cp not in covered]
    assert missing == [], f"new Unicode version: add {missing[:10]} to UNSAFE_RANGES"


@given(st.text(), st.booleans(), st.booleans())
def test_escaping_agrees_with_the_character_rule(text: str, strict: bool, keep_newlines: bool) -> None:
    source = text.replace("\r\n", "\n") if keep_newlines else text
    expected = "".join(f"[U+{ord(ch):04X}]" if is_unsafe_char(ch, strict=strict, keep_newlines=keep_newlines)
                       else ch for ch in source)
    assert escape_unsafe(text, strict=strict, keep_newlines=keep_newlines) == expected


def test_tooltips_show_markup_instead_of_rendering_it() -> None:
    from desktop.viewer.text import tooltip

    assert tooltip("<img src='http://x/'> & <b>") == "<qt>&lt;img src='http://x/'&gt; &amp; &lt;b&gt;</qt>"
