"""POP3 and IMAP on the same INBOX: one identity for each message, and POP3 deletions as IMAP EXPUNGEs."""

from __future__ import annotations

import imaplib
import poplib
import re
from collections.abc import Iterator

import pytest

from engine.imap.server import IMAPListener

from .conftest import ALICE, ALICE_PW, POP3Server, message


@pytest.fixture
def imap_port(server: POP3Server) -> Iterator[int]:
    listener = IMAPListener(server.services, "imap")
    server.call(listener.start("127.0.0.1", 0))
    try:
        yield listener.address[1]
    finally:
        server.call(listener.stop(2.0))


def test_uidl_is_imap_uidvalidity_and_uid_and_dele_is_an_expunge(server: POP3Server, imap_port: int) -> None:
    for subject in ("first", "second"):
        server.deliver(ALICE, message(subject))
    imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    try:
        imap.login(ALICE, ALICE_PW)
        imap.select("INBOX")
        uidvalidity = int(imap.response("UIDVALIDITY")[1][0])
        _, data = imap.uid("SEARCH", "ALL")
        uids = [int(u) for u in data[0].split()]

        pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
        try:
            pop.user(ALICE)
            pop.pass_(ALICE_PW)
            assert [line.split()[1].decode() for line in pop.uidl()[1]] == [f"{uidvalidity}.{u}" for u in uids]
            pop.retr(2)
            pop.dele(1)
            pop.quit()
        finally:
            pop.close()

        imap.noop()
        expunged = imap.response("EXPUNGE")[1]
        assert expunged == [b"1"]
        _, data = imap.uid("SEARCH", "ALL")
        assert [int(u) for u in data[0].split()] == uids[1:]
        _, flags = imap.uid("FETCH", str(uids[1]), "(FLAGS)")
        assert not re.search(rb"\\Seen", flags[0])           # RETR leaves \Seen alone, as Dovecot does
    finally:
        imap.logout()
