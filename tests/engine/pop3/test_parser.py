"""The POP3 wire format as pure functions: command lines, replies, byte-stuffing, TOP and UIDL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.pop3 import parser
from engine.pop3.parser import CommandError


def unstuff(reply_body: bytes) -> bytes:
    """What a client does with a multi-line body (RFC 1939 §3), written independently of the server."""
    assert reply_body.endswith(b"\r\n.\r\n") or reply_body == b".\r\n"
    lines = reply_body.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    out = [line[1:] if line.startswith(b".") else line for line in lines[:-2]]
    return b"".join(line + b"\r\n" for line in out)


class TestCommands:
    def test_keyword_is_case_insensitive_and_arguments_split_on_spaces(self) -> None:
        cmd = parser.parse_command(b"top 3 10")
        assert cmd.verb == "TOP"
        assert cmd.args == ("3", "10")

    def test_pass_keeps_the_rest_of_the_line_with_its_spaces(self) -> None:
        assert parser.parse_command(b"PASS  my secret pw ").raw_args == " my secret pw "

    @pytest.mark.parametrize("line", [b"", b"   ", b"TOOLONG x", b"R3TR 1", b"\xff\xfe", b"LIST\x001"])
    def test_malformed_lines_are_command_errors(self, line: bytes) -> None:
        with pytest.raises(CommandError):
            parser.parse_command(line)

    def test_a_line_over_512_octets_is_refused(self) -> None:
        parser.parse_command(b"USER " + b"a" * (512 - 7))          # 510 + CRLF: allowed
        with pytest.raises(CommandError, match="512"):
            parser.parse_command(b"USER " + b"a" * (512 - 6))

    @pytest.mark.parametrize("arg", ["-1", "+1", "1.0", "", "x", "１", "12345678901"])
    def test_numbers_are_plain_decimal_digits(self, arg: str) -> None:
        with pytest.raises(CommandError):
            parser.parse_number(arg)

    @given(st.binary(max_size=600))
    def test_any_bytes_parse_or_raise_command_error(self, line: bytes) -> None:
        try:
            cmd = parser.parse_command(line)
        except CommandError:
            return
        assert cmd.verb.isalpha() and cmd.verb.isupper()


class TestReplies:
    def test_status_lines(self) -> None:
        assert parser.ok() == b"+OK\r\n"
        assert parser.ok("2 320") == b"+OK 2 320\r\n"
        assert parser.err("maildrop locked", "IN-USE") == b"-ERR [IN-USE] maildrop locked\r\n"

    def test_multiline_listing_is_terminated_by_a_dot(self) -> None:
        assert parser.multiline(parser.ok("x"), ["1 120", "2 200"]) == b"+OK x\r\n1 120\r\n2 200\r\n.\r\n"
        assert parser.multiline(parser.ok("x"), []) == b"+OK x\r\n.\r\n"


class TestByteStuffing:
    def test_lines_starting_with_a_dot_get_another(self) -> None:
        data = b".first\r\nmiddle\r\n.\r\n..two\r\nlast .\r\n"
        assert parser.stuff_message(data) == b"..first\r\nmiddle\r\n..\r\n...two\r\nlast .\r\n.\r\n"

    def test_a_message_without_final_crlf_still_ends_in_its_own_terminator_line(self) -> None:
        assert parser.stuff_message(b"a\r\nb") == b"a\r\nb\r\n.\r\n"

    def test_empty_message(self) -> None:
        assert parser.stuff_message(b"") == b".\r\n"

    @given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                    max_size=20))
    def test_unstuffing_gives_back_the_message_byte_for_byte(self, lines: list[bytes]) -> None:
        data = b"".join(line + b"\r\n" for line in lines)
        assert unstuff(parser.stuff_message(data)) == data


MESSAGE = b"Subject: hi\r\nFrom: a@example.test\r\n\r\nline 1\r\nline 2\r\n.line 3\r\n"


class TestTop:
    def test_zero_lines_is_the_header_and_the_blank_line(self) -> None:
        assert parser.top_of_message(MESSAGE, 0) == b"Subject: hi\r\nFrom: a@example.test\r\n\r\n"

    def test_n_lines_of_body(self) -> None:
        assert parser.top_of_message(MESSAGE, 2).endswith(b"\r\n\r\nline 1\r\nline 2\r\n")

    def test_more_lines_than_the_body_has_is_the_whole_message(self) -> None:
        assert parser.top_of_message(MESSAGE, 100) == MESSAGE

    def test_a_message_without_a_body_is_all_header(self) -> None:
        assert parser.top_of_message(b"Subject: x\r\n", 5) == b"Subject: x\r\n"

    def test_an_empty_header(self) -> None:
        assert parser.top_of_message(b"\r\nbody 1\r\nbody 2\r\n", 1) == b"\r\nbody 1\r\n"


def test_uidl_is_uidvalidity_dot_uid_in_the_allowed_characters() -> None:
    uid = parser.uidl_of(1700000000, 42)
    assert uid == "1700000000.42"
    assert 1 <= len(uid) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uid)   # RFC 1939 §7
