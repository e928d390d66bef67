"""The command parser (RFC 3501 §9 grammar plus extensions): pure functions over a command's bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.imap import response as R
from engine.imap.parser import (
    Cursor,
    FetchAtt,
    ParseError,
    Section,
    SeqSet,
    literal_at_end,
    parse_command,
    peek_tag,
    seqset_from_values,
)


def test_login_with_quoted_and_literal_arguments() -> None:
    cmd = parse_command(b'a1 LOGIN "alice@example.test" {12}\r\nalice secret')
    assert (cmd.tag, cmd.name, cmd.args) == ("a1", "LOGIN", (b"alice@example.test", b"alice secret"))


def test_uid_commands_carry_the_flag() -> None:
    cmd = parse_command(b"x UID FETCH 1:* (FLAGS)")
    assert cmd.uid and cmd.name == "FETCH"
    assert cmd.args[0] == SeqSet(((1, None),))


def test_fetch_macros_and_sections() -> None:
    cmd = parse_command(b"t FETCH 2,4:6 ALL")
    assert [a.name for a in cmd.args[1]] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    cmd = parse_command(b"t FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Received \"X-Spam\")]<10.20> BODY[2.1.MIME])")
    peek, mime = cmd.args[1]
    assert peek == FetchAtt("BODY.PEEK", Section((), "HEADER.FIELDS.NOT", ("Received", "X-Spam")), (10, 20))
    assert peek.section is not None and peek.section.spec() == "HEADER.FIELDS.NOT (Received X-Spam)"
    assert mime == FetchAtt("BODY", Section((2, 1), "MIME"))


def test_binary_fetch_and_changedsince_modifier() -> None:
    cmd = parse_command(b"t UID FETCH 1:* (BINARY.PEEK[1] BINARY.SIZE[2]) (CHANGEDSINCE 12345 VANISHED)")
    atts, changedsince, vanished = cmd.args[1:]
    assert [a.name for a in atts] == ["BINARY.PEEK", "BINARY.SIZE"]
    assert (changedsince, vanished) == (12345, True)


def test_search_program_with_charset_literal_and_nesting() -> None:
    cmd = parse_command(b"s SEARCH CHARSET UTF-8 OR FROM bob (SUBJECT {6}\r\ncaf\xc3\xa9! SINCE 1-Feb-2024) NOT 1:3")
    key = cmd.args[0].key
    assert key.op == "AND"
    either, negated = key.children
    assert either.op == "OR" and either.children[0].args == ("bob",)
    assert either.children[1].children[0].args == ("café!",)
    assert negated.op == "NOT" and negated.children[0].op == "SEQ"


def test_esearch_return_options() -> None:
    cmd = parse_command(b"s UID SEARCH RETURN (MIN COUNT) UNSEEN")
    assert cmd.args[0].returns == ("MIN", "COUNT")


def test_store_flags_are_normalised() -> None:
    cmd = parse_command(b"s STORE 1:2 +FLAGS.SILENT (\\seen \\DELETED $Label1)")
    action = cmd.args[1]
    assert (action.mode, action.silent, action.flags) == ("add", True, ("\\Seen", "\\Deleted", "$Label1"))


def test_append_with_flags_date_and_literal() -> None:
    cmd = parse_command(b'a APPEND Sent (\\Seen) "05-Jan-2024 10:11:12 +0100" {5+}\r\nhello')
    name, flags, date, data = cmd.args
    assert (name, flags, data) == (b"Sent", ("\\Seen",), b"hello")
    assert date == 1704445872.0     # 09:11:12 UTC


def test_list_extended_forms() -> None:
    cmd = parse_command(b'l LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %/%) RETURN (CHILDREN STATUS (MESSAGES))')
    lc = cmd.args[0]
    assert lc.select_opts == ("SUBSCRIBED", "RECURSIVEMATCH")
    assert lc.patterns == (b"INBOX", b"%/%")
    assert lc.status_items == ("MESSAGES",)
    assert lc.extended


@pytest.mark.parametrize("line", [
    b"",
    b"+ NOOP",                         # "+" cannot be in a tag
    b"a FROB",                         # unknown command
    b"a NOOP extra",                   # arguments where none belong
    b"a EXPUNGE 1",                    # only UID EXPUNGE takes a set
    b"a FETCH 0 FLAGS",                # 0 is not a message number
    b"a FETCH 1 (FLAGS",               # unclosed list
    b"a FETCH 1 BODY[1.]",             # dangling dot
    b"a FETCH 1 BODY[MIME]",           # MIME needs a part
    b'a LOGIN "unterminated',
    b'a LOGIN "bad \\n escape" x',
    b"a LOGIN {10}\r\nshort",          # literal shorter than announced
    b"a SELECT",                       # missing argument
    b"a UID NOOP",
    b"a SEARCH WHATEVER",
    b"a STORE 1 FLAGS (\\*)",
])
def test_malformed_commands_raise_parse_errors(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.bad


def test_unknown_charset_is_a_no_with_badcharset() -> None:
    with pytest.raises(ParseError) as info:
        parse_command(b"a SEARCH CHARSET X-MADE-UP TEXT x")
    assert not info.value.bad and info.value.code is not None and info.value.code.startswith("BADCHARSET")


def test_deep_search_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(ParseError):
        parse_command(b"a SEARCH " + b"NOT " * 5000 + b"ALL")
    with pytest.raises(ParseError):
        parse_command(b"a SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000)


def test_literal_announcements_at_line_end() -> None:
    assert literal_at_end(b"a LOGIN {5}") is not None
    ann = literal_at_end(b"a APPEND INBOX {1024+}\r\n")
    assert ann is not None and (ann.size, ann.nonsync, ann.binary) == (1024, True, False)
    ann = literal_at_end(b"a APPEND INBOX ~{3}")
    assert ann is not None and ann.binary
    assert literal_at_end(b'a LOGIN "{5}" x') is None


def test_peek_tag_of_broken_commands() -> None:
    assert peek_tag(b"abc FROB ((((") == "abc"
    assert peek_tag(b"+abc NOOP") is None
    assert peek_tag(b"nospace") is None


def test_sequence_sets() -> None:
    s = parse_command(b"a FETCH 5:3,9,11:* FLAGS").args[0]
    assert s.bounds(20) == [(3, 5), (9, 9), (11, 20)]
    assert s.select([1, 3, 4, 9, 15, 30], star=30) == [1, 2, 3, 4, 5]
    assert str(s) == "5:3,9,11:*"
    assert seqset_from_values([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"


# --- properties: what the serializer writes, the parser reads back ---------------------------------

@given(st.binary(max_size=300).filter(lambda b: b"\x00" not in b))
def test_string_round_trip(value: bytes) -> None:
    wire = R.string(value)
    c = Cursor(wire)
    assert c.string() == value
    assert c.at_end()


@given(st.binary(min_size=1, max_size=200).filter(lambda b: b"\x00" not in b))
def test_astring_round_trip(value: bytes) -> None:
    c = Cursor(R.astring(value))
    assert c.astring() == value
    assert c.at_end()


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100))
def test_quoted_round_trip(value: str) -> None:
    raw = value.encode()
    c = Cursor(R.quoted(raw))
    assert c.quoted() == raw


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=50, unique=True))
def test_compact_sets_name_exactly_their_values(values: list[int]) -> None:
    values.sort()
    parsed = Cursor(seqset_from_values(values).encode()).seq_set()
    assert parsed.select(list(range(1, 10_001)), star=10_000) == [v - 1 for v in values]


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_command(data)
