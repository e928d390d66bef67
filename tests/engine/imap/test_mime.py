"""ENVELOPE, BODYSTRUCTURE and section extraction over raw bytes (RFC 3501 §6.4.5, §7.4.2), including
hostile structure that must neither recurse nor take long."""

from __future__ import annotations

import time

import pytest

from engine.imap import mime

MIXED = (
    b'From: "Joe Q. Public" <john.q.public@example.com>\r\n'
    b"To: Mary Smith <mary@x.test>, jdoe@example.org\r\n"
    b'Cc: undisclosed-recipients:;\r\n'
    b"Bcc: A Group:Ed Jones <c@a.test>,joe@where.test;\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= and\r\n more\r\n"
    b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
    b"Message-ID: <1234@local.machine.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello caf=C3=A9\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: a@b.test\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX\r\n"
    b'Content-Type: application/octet-stream; name="x.bin"\r\n'
    b'Content-Disposition: attachment; filename="x.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAEC\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)


def test_envelope_with_groups_and_folded_subject() -> None:
    assert mime.message_envelope(MIXED) == (
        b'("Tue, 1 Jul 2003 10:52:37 +0200" "=?utf-8?q?caf=C3=A9?= and more" '
        b'(("Joe Q. Public" NIL "john.q.public" "example.com")) '
        b'(("Joe Q. Public" NIL "john.q.public" "example.com")) '
        b'(("Joe Q. Public" NIL "john.q.public" "example.com")) '
        b'(("Mary Smith" NIL "mary" "x.test")(NIL NIL "jdoe" "example.org")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")(NIL NIL NIL NIL)) '
        b'NIL "<1234@local.machine.example>")')


def test_envelope_sender_and_reply_to_fall_back_to_from_when_empty() -> None:
    # RFC 3501 §7.4.2: "absent, or present but empty" both mean the From value
    env = mime.message_envelope(b"From: a@b.test\r\nSender:\r\nReply-To: \r\n\r\n")
    assert env == b'(NIL NIL ((NIL NIL "a" "b.test")) ((NIL NIL "a" "b.test")) ((NIL NIL "a" "b.test")) ' \
                  b'NIL NIL NIL NIL NIL)'


def test_envelope_address_without_a_domain_is_not_a_group_start() -> None:
    # A NIL host means "start of group" (RFC 3501 §7.4.2); a bare local part gets a placeholder host.
    env = mime.message_envelope(b"To: root, <postmaster>, Team: x@y.test;\r\n\r\n")
    assert b'((NIL NIL "root" "MISSING_DOMAIN")(NIL NIL "postmaster" "MISSING_DOMAIN")' \
           b'(NIL NIL "Team" NIL)(NIL NIL "x" "y.test")(NIL NIL NIL NIL))' in env


def test_envelope_takes_a_comment_as_the_name_of_a_bare_address() -> None:
    # "user@domain (Real Name)": the old RFC 822 way of naming someone, still seen (and what Dovecot shows)
    env = mime.message_envelope(b"From: user@domain (Real Name)\r\n"
                                b"To: group: g1@d1.org (One), <g2@d2.org> (ignored);, x@y.test\r\n\r\n")
    assert env == (b'(NIL NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) '
                   b'(("Real Name" NIL "user" "domain")) ((NIL NIL "group" NIL)("One" NIL "g1" "d1.org")'
                   b'(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "x" "y.test")) NIL NIL NIL NIL)')


def test_envelope_of_a_message_without_headers() -> None:
    assert mime.message_envelope(b"\r\nbody") == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_bodystructure_of_a_mixed_message() -> None:
    # line counts are line ends, as Dovecot counts them (a part's last CRLF belongs to the boundary)
    assert mime.bodystructure(MIXED) == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 15 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 44 (NIL "inner" ((NIL NIL "a" "b.test")) '
        b'((NIL NIL "a" "b.test")) ((NIL NIL "a" "b.test")) NIL NIL NIL NIL NIL) '
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)'
        b'("application" "octet-stream" ("name" "x.bin") NIL NIL "base64" 4 NIL '
        b'("attachment" ("filename" "x.bin")) NIL NIL) "mixed" ("boundary" "XX") NIL NIL NIL)')
    assert mime.bodystructure(MIXED, extended=False).endswith(b' "mixed")')


def test_single_part_defaults() -> None:
    assert mime.bodystructure(b"Subject: x\r\n\r\nline one\r\nline two\r\n") == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 20 2 NIL NIL NIL NIL)')


@pytest.mark.parametrize(("part", "text", "expected"), [
    ((1,), None, b"Hello caf=C3=A9"),
    # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary, not to the part
    ((2,), None, b"From: a@b.test\r\nSubject: inner\r\n\r\ninner body"),
    ((2,), "HEADER", b"From: a@b.test\r\nSubject: inner\r\n\r\n"),
    ((2,), "TEXT", b"inner body"),
    ((2, 1), None, b"inner body"),
    ((3,), "MIME", b'Content-Type: application/octet-stream; name="x.bin"\r\n'
                   b'Content-Disposition: attachment; filename="x.bin"\r\n'
                   b"Content-Transfer-Encoding: base64\r\n\r\n"),
    ((9,), None, b""),
    ((1, 5), None, b""),
    # a single body part's part 1 is itself (Dovecot's answer; imaptest's fetch-body-mime data)
    ((1, 1), None, b"Hello caf=C3=A9"),
    ((1, 1), "MIME", b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
    ((1, 1, 2), None, b""),
])
def test_sections(part: tuple[int, ...], text: str | None, expected: bytes) -> None:
    assert mime.section(MIXED, part, text) == expected


def test_header_fields_and_not() -> None:
    picked = mime.section(MIXED, (), "HEADER.FIELDS", ("subject", "FROM"))
    assert picked == (b'From: "Joe Q. Public" <john.q.public@example.com>\r\n'
                      b"Subject: =?utf-8?q?caf=C3=A9?= and\r\n more\r\n\r\n")
    rest = mime.section(MIXED, (), "HEADER.FIELDS.NOT", ("subject", "from", "to", "cc", "bcc", "date"))
    assert rest.startswith(b"Message-ID:") and rest.endswith(b"\r\n\r\n")


def test_single_part_message_part_one_is_its_body() -> None:
    msg = b"Subject: x\r\n\r\nthe body\r\n"
    assert mime.section(msg, (1,), None) == b"the body\r\n"
    assert mime.section(msg, (), "TEXT") == b"the body\r\n"


def test_binary_undoes_the_transfer_encoding() -> None:
    assert mime.binary_section(MIXED, (3,)) == b"\x00\x01\x02"
    assert mime.binary_section(MIXED, (1,)) == "Hello café".encode()
    with pytest.raises(mime.UnknownEncoding):
        mime.decode_transfer(b"x", b"x-uuencode")


def test_decoded_text_for_search() -> None:
    texts = list(mime.body_texts(MIXED))
    assert "Hello café" in texts[0]
    assert any("inner body" in t for t in texts)
    assert mime.decode_header_value(b"=?utf-8?q?caf=C3=A9?= and more") == "café and more"


# --- hostile structure ----------------------------------------------------------------------------

def nested_multiparts(depth: int) -> bytes:
    out = [b"From: a@b.test\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for i in range(depth):
        out.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1))
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nleaf\r\n--b%d--\r\n" % (depth, depth))
    out.extend(b"--b%d--\r\n" % i for i in range(depth - 1, -1, -1))
    return b"".join(out)


def nested_messages(depth: int) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: x\r\n\r\nbody\r\n"


def many_parts(n: int) -> bytes:
    head = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    return head + b"".join(b"--zz\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n)) + b"--zz--\r\n"


def many_headers(n: int) -> bytes:
    return b"From: a@b.test\r\nSubject: many\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(n)) + b"\r\nbody\r\n"


@pytest.mark.parametrize("build", [
    lambda: nested_multiparts(2000), lambda: nested_messages(2000), lambda: many_parts(20000),
    lambda: many_headers(100000),
], ids=["2000-nested-multiparts", "2000-nested-messages", "20000-parts", "100000-headers"])
def test_hostile_messages_are_answered_quickly(build: object) -> None:
    data = build()  # type: ignore[operator]
    started = time.perf_counter()
    structure = mime.bodystructure(data)
    envelope = mime.message_envelope(data)
    list(mime.body_texts(data))
    assert time.perf_counter() - started < 2.0
    assert structure.startswith(b"(") and envelope.startswith(b"(")
    # balanced parentheses: a well-formed answer, whatever was cut
    depth = 0
    in_quote = False
    for i, ch in enumerate(structure):
        if ch == 0x22 and structure[i - 1] != 0x5C:
            in_quote = not in_quote
        elif not in_quote:
            depth += (ch == 0x28) - (ch == 0x29)
    assert depth == 0


def test_nesting_is_capped() -> None:
    structure = mime.bodystructure(nested_multiparts(2000))
    assert structure.count(b'"mixed"') <= mime.MAX_DEPTH + 1
    assert b'"application" "octet-stream"' in structure     # the level past the cap is a leaf


def test_part_count_is_capped() -> None:
    root = mime.parse_structure(many_parts(20000))
    assert len(root.children) <= mime.MAX_PARTS
