"""SEARCH program evaluation (RFC 3501 §6.4.4) over messages given as index data plus loadable bytes."""

from __future__ import annotations

import calendar

from engine.imap import search
from engine.imap.parser import parse_command
from engine.interfaces import MessageMeta

DAY = 86400.0
JAN_10 = float(calendar.timegm((2024, 1, 10, 12, 0, 0)))

MESSAGES = {
    1: (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: Lunch plans\r\n"
        b"Date: Wed, 10 Jan 2024 23:30:00 -0500\r\n\r\nShall we meet at noon?\r\n"),
    2: (b"From: =?utf-8?q?Ren=C3=A9e?= <renee@c.test>\r\nTo: alice@a.test\r\nCc: carol@d.test\r\n"
        b"Subject: =?utf-8?b?Q2Fmw6k=?=\r\nX-Tag: urgent\r\nDate: Thu, 11 Jan 2024 08:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"Q3LDqG1lIGJyw7tsw6llCg==\r\n"),
    3: (b"From: bob@b.test\r\nSubject: Report\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"
        b"--q\r\nContent-Type: text/html\r\n\r\n<p>Quarterly <b>numbers</b></p>\r\n--q--\r\n"),
}
METAS = [
    MessageMeta(1, frozenset({"\\Seen"}), 5, 100, JAN_10),
    MessageMeta(2, frozenset({"\\Flagged", "$Work"}), 7, 2000, JAN_10 + DAY),
    MessageMeta(3, frozenset(), 9, 50_000, JAN_10 + 2 * DAY),
]
loaded: list[int] = []


def load(uid: int) -> bytes:
    loaded.append(uid)
    return MESSAGES[uid]


def run(criteria: bytes, recent: frozenset[int] = frozenset()) -> list[int]:
    program = parse_command(b"t SEARCH " + criteria).args[0]
    cands = [search.Candidate(i + 1, m, m.uid in recent) for i, m in enumerate(METAS)]
    return [c.meta.uid for c in search.run(program.key, cands, load, max_uid=3)]


def test_flag_keys() -> None:
    assert run(b"SEEN") == [1]
    assert run(b"UNSEEN") == [2, 3]
    assert run(b"FLAGGED KEYWORD $work") == [2]     # keywords compare case-insensitively
    assert run(b"NEW", recent=frozenset({1, 3})) == [3]
    assert run(b"OLD", recent=frozenset({1})) == [2, 3]


def test_numbers_sizes_and_modseq() -> None:
    assert run(b"2:*") == [2, 3]
    assert run(b"UID 1,3") == [1, 3]
    assert run(b"LARGER 1000 SMALLER 10000") == [2]
    assert run(b"MODSEQ 7") == [2, 3]
    assert run(b"NOT 1 OR SEEN LARGER 40000") == [3]


def test_internal_and_sent_dates() -> None:
    assert run(b"ON 10-Jan-2024") == [1]
    assert run(b"SINCE 11-Jan-2024") == [2, 3]
    assert run(b"BEFORE 11-Jan-2024") == [1]
    # the Date: header's own calendar day, its zone disregarded (RFC 3501 §6.4.4)
    assert run(b"SENTON 10-Jan-2024") == [1]
    assert run(b"SENTSINCE 11-Jan-2024") == [2]


def test_header_keys_decode_encoded_words() -> None:
    assert run('CHARSET UTF-8 FROM "renée"'.encode()) == [2]
    assert run(b"FROM ALICE") == [1]
    assert run('CHARSET UTF-8 SUBJECT "CAFÉ"'.encode()) == [2]
    assert run(b"TO alice CC carol") == [2]
    assert run(b'HEADER X-Tag "URGENT"') == [2]
    assert run(b'HEADER X-Tag ""') == [2]


def test_address_keys_match_the_address_a_comment_splits_in_the_header() -> None:
    # imaptest's search-addresses case: FROM matches the envelope's address, where comments are gone
    raw = {1: b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: Group: a@x.test, b@y.test;\r\n"
              b"Cc: root\r\nSubject: s\r\n\r\nbody\r\n"}
    cands = [search.Candidate(1, MessageMeta(1, frozenset(), 1, 100, JAN_10), False)]

    def hits(criteria: bytes) -> bool:
        program = parse_command(b"t SEARCH " + criteria).args[0]
        return bool(search.run(program.key, cands, raw.__getitem__, max_uid=1))

    assert hits(b"FROM user-from@domain.org") and hits(b"FROM comment")      # the text still counts too
    assert hits(b"TO b@y.test") and hits(b"CC root")
    assert not hits(b"CC missing_domain") and not hits(b"TO user-from")


def test_body_and_text_search_decode_transfer_encodings_and_charsets() -> None:
    assert run(b"CHARSET UTF-8 BODY {5}\r\nbr\xc3\xbbl") == [2]        # base64, UTF-8
    assert run(b"BODY numbers") == [3]                               # HTML tags do not split words
    assert run(b"BODY lunch") == []                                  # the subject is not body
    assert run(b"TEXT lunch") == [1]


def test_cheap_keys_run_before_files_are_opened() -> None:
    loaded.clear()
    assert run(b"BODY noon SEEN") == [1]
    assert loaded == [1]
