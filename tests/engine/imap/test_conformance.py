"""Corners of RFC 3501/9051 that third-party suites (Dovecot's imaptest scripts, client test suites) probe,
as byte-exact transcripts over a real socket."""

from __future__ import annotations

from .conftest import Raw


def test_create_does_not_subscribe_and_lsub_percent_shows_unsubscribed_parents_as_noselect(raw: Raw) -> None:
    raw.login()
    for name in (b"box/", b"box/test", b"box/test2/", b"box/test3/", b"box/test2/test", b"box/test3/test3"):
        assert raw.cmd(b"c", b"CREATE " + name)[-1] == b"c OK CREATE completed\r\n"
    # RFC 3501 §6.3.3: CREATE leaves subscribing to SUBSCRIBE
    assert raw.cmd(b"l", b'LSUB "" box*') == [b"l OK LSUB completed\r\n"]
    for name in (b"box/test", b"box/test2/test", b"box/test3/test3"):
        assert raw.cmd(b"s", b"SUBSCRIBE " + name)[-1] == b"s OK SUBSCRIBE completed\r\n"
    # RFC 3501 §6.3.9: "%" stops above subscribed children; their parents come back \Noselect
    assert raw.cmd(b"l", b'LSUB "" box/%') == [
        b'* LSUB () "/" box/test\r\n',
        b'* LSUB (\\Noselect) "/" box/test2\r\n',
        b'* LSUB (\\Noselect) "/" box/test3\r\n',
        b"l OK LSUB completed\r\n",
    ]
    assert raw.cmd(b"l", b'LSUB "" *test') == [
        b'* LSUB () "/" box/test\r\n',
        b'* LSUB () "/" box/test2/test\r\n',
        b"l OK LSUB completed\r\n",
    ]
    assert raw.cmd(b"u", b"UNSUBSCRIBE box/test3/test3")[-1] == b"u OK UNSUBSCRIBE completed\r\n"
    assert raw.cmd(b"l", b'LSUB "" box/%') == [
        b'* LSUB () "/" box/test\r\n',
        b'* LSUB (\\Noselect) "/" box/test2\r\n',
        b"l OK LSUB completed\r\n",
    ]
