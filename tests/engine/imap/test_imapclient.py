"""imapclient (a second, strict, independent parser of our responses) over implicit TLS: its high-level
calls must understand everything we send — ENVELOPE and BODYSTRUCTURE above all, which it parses
structurally and so catches serialisation mistakes a string comparison would not."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .conftest import ALICE, ALICE_PW, TIMEOUT, IMAPServer, message

if TYPE_CHECKING:
    from imapclient import IMAPClient

imapclient = pytest.importorskip("imapclient")


def connect(server: IMAPServer) -> IMAPClient:
    client = imapclient.IMAPClient("127.0.0.1", port=server.tls_port, ssl=True, ssl_context=server.client_tls,
                                   timeout=TIMEOUT)
    client.login(ALICE, ALICE_PW)
    return client


@pytest.fixture
def client(server: IMAPServer) -> Iterator[IMAPClient]:
    c = connect(server)
    try:
        yield c
    finally:
        c.logout()


TRICKY = (b'From: "Doe, J. \\"JD\\"" <jd@remote.test>\r\n'
          b"Sender: \r\n"
          b"Reply-To:\r\n"
          b"To: root, Friends: a@x.test, <@relay.test:b@y.test>;, undisclosed-recipients:;\r\n"
          b"Cc: =?utf-8?q?J=C3=BCrgen?= <j@x.test>\r\n"
          b"Subject: =?utf-8?b?w6k=?= with \\ and \"quotes\"\r\n"
          b"Date: Thu, 04 Jan 2024 12:00:00 -0500\r\n"
          b"In-Reply-To: <parent@remote.test>\r\n"
          b"Message-ID: <tricky@remote.test>\r\n"
          b"MIME-Version: 1.0\r\n"
          b'Content-Type: multipart/mixed; boundary="outer"\r\n'
          b"\r\n"
          b"--outer\r\n"
          b'Content-Type: multipart/alternative; boundary="inner"\r\n'
          b"\r\n"
          b"--inner\r\n"
          b'Content-Type: text/plain; charset="utf-8"; format=flowed\r\n'
          b"Content-Transfer-Encoding: quoted-printable\r\n"
          b"Content-Language: en\r\n"
          b"\r\n"
          b"caf=C3=A9\r\n"
          b"--inner\r\n"
          b"Content-Type: text/html\r\n"
          b"Content-ID: <html@remote.test>\r\n"
          b'Content-Description: the "html" one\r\n'
          b"\r\n"
          b"<p>caf&eacute;</p>\r\n"
          b"--inner--\r\n"
          b"--outer\r\n"
          b"Content-Type: message/rfc822\r\n"
          b"\r\n"
          b"From: inner@remote.test\r\n"
          b"Subject: forwarded\r\n"
          b"\r\n"
          b"inner body\r\n"
          b"--outer\r\n"
          b'Content-Type: application/pdf; name="r.pdf"\r\n'
          b'Content-Disposition: attachment; filename="r.pdf"\r\n'
          b"Content-Transfer-Encoding: base64\r\n"
          b"\r\n"
          b"JVBERi0xLjQK\r\n"
          b"--outer--\r\n")


def test_envelope_of_a_tricky_message_parses_into_the_right_fields(client: IMAPClient) -> None:
    when = datetime.datetime(2024, 1, 4, 12, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    client.append("INBOX", TRICKY, flags=[b"$Label1"], msg_time=when)
    client.select_folder("INBOX")
    [uid] = client.search(["HEADER", "Message-ID", "<tricky@remote.test>"])
    data = client.fetch([uid], ["ENVELOPE", "INTERNALDATE", "FLAGS", "RFC822.SIZE"])[uid]
    env = data[b"ENVELOPE"]
    assert env.date == when.astimezone().replace(tzinfo=None)          # imapclient gives local, naive times
    assert env.subject == b'=?utf-8?b?w6k=?= with \\ and "quotes"'
    [sender] = env.from_
    assert (sender.name, sender.mailbox, sender.host) == (b'Doe, J. "JD"', b"jd", b"remote.test")
    # RFC 3501 §7.4.2: Sender and Reply-To present but empty take From's value
    assert env.sender == env.from_ and env.reply_to == env.from_
    to = [(a.name, a.route, a.mailbox, a.host) for a in env.to]
    assert to == [
        (None, None, b"root", b"MISSING_DOMAIN"),              # a NIL host would open a group
        (None, None, b"Friends", None),                        # group start
        (None, None, b"a", b"x.test"),
        (None, b"@relay.test", b"b", b"y.test"),
        (None, None, None, None),                              # group end
        (None, None, b"undisclosed-recipients", None),
        (None, None, None, None),
    ]
    assert [(a.name, a.mailbox, a.host) for a in env.cc] == [(b"=?utf-8?q?J=C3=BCrgen?=", b"j", b"x.test")]
    assert env.bcc is None
    assert (env.in_reply_to, env.message_id) == (b"<parent@remote.test>", b"<tricky@remote.test>")
    assert data[b"INTERNALDATE"].replace(tzinfo=None) == when.astimezone().replace(tzinfo=None)
    assert data[b"FLAGS"] == (b"$Label1", b"\\Recent")
    assert data[b"RFC822.SIZE"] == len(TRICKY)


def test_bodystructure_and_sections_of_a_nested_message(client: IMAPClient) -> None:
    client.append("INBOX", TRICKY)
    client.select_folder("INBOX", readonly=True)
    [uid] = client.search(["ALL"])
    data = client.fetch([uid], ["BODYSTRUCTURE", "BODY", "BODY.PEEK[1.1]", "BODY.PEEK[1.2.MIME]",
                                "BODY.PEEK[2.HEADER]", "BODY.PEEK[2.TEXT]", "BODY.PEEK[3]",
                                "BODY.PEEK[]<0.10>", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[uid]
    bs = data[b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"mixed"
    alternative, rfc822, pdf = bs[0]
    assert alternative.is_multipart and alternative[1] == b"alternative"
    plain, html = alternative[0]
    assert plain[:7] == (b"text", b"plain", (b"charset", b"utf-8", b"format", b"flowed"), None, None,
                         b"quoted-printable", 9)
    assert plain[10] == b"en"                                   # body-fld-lang
    assert html[3:5] == (b"<html@remote.test>", b'the "html" one')
    assert rfc822[:2] == (b"message", b"rfc822")
    assert rfc822[7][1] == b"forwarded"                        # the embedded ENVELOPE's subject
    assert pdf[:2] == (b"application", b"pdf") and pdf[8] == (b"attachment", (b"filename", b"r.pdf"))
    assert data[b"BODY"].is_multipart
    assert data[b"BODY[1.1]"] == b"caf=C3=A9"
    assert data[b"BODY[1.2.MIME]"].startswith(b"Content-Type: text/html\r\n")
    assert data[b"BODY[2.HEADER]"] == b"From: inner@remote.test\r\nSubject: forwarded\r\n\r\n"
    assert data[b"BODY[2.TEXT]"] == b"inner body"
    assert data[b"BODY[3]"] == b"JVBERi0xLjQK"
    assert data[b"BODY[]<0>"] == TRICKY[:10]
    assert data[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b'Subject: =?utf-8?b?w6k=?= with \\ and "quotes"\r\n\r\n'
    # EXAMINE is read-only: BODY[] fetches did not set \Seen, and the message stays \Recent for every
    # read-only look until a read-write session takes it (RFC 3501 §2.3.2)
    assert client.get_flags([uid])[uid] == (b"\\Recent",)


def test_folder_status_search_flags_and_move(server: IMAPServer, client: IMAPClient) -> None:
    for i, sender in enumerate(("carol@remote.test", "dave@remote.test", "erin@remote.test")):
        server.deliver(ALICE, message(f"s{i}", body="x" * (1000 * (i + 1)) + "\r\n", sender=sender))
    status = client.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UNSEEN", "UIDVALIDITY"])
    assert (status[b"MESSAGES"], status[b"UIDNEXT"], status[b"UNSEEN"]) == (3, 4, 3)
    info = client.select_folder("INBOX")
    assert info[b"EXISTS"] == 3 and info[b"UIDVALIDITY"] == status[b"UIDVALIDITY"]
    assert b"\\*" in info[b"PERMANENTFLAGS"]
    assert client.search(["OR", "FROM", "dave@", ["NOT", ["OR", "SUBJECT", "s1", "SUBJECT", "s2"]]]) == [1, 2]
    assert client.search(["LARGER", 1500, "SMALLER", 100000]) == [2, 3]
    assert client.search(["SENTBEFORE", datetime.date(2024, 1, 2), "SENTSINCE", datetime.date(2024, 1, 1)]) == [1, 2, 3]
    assert client.search(["UID", "2:*"]) == [2, 3]
    client.add_flags([2], [b"\\Flagged", b"$Todo"])
    assert client.search(["KEYWORD", "$Todo"]) == [2]
    assert client.search(["FLAGGED", "UNSEEN"]) == [2]
    assert client.fetch([1], ["BODY[]"])[1][b"BODY[]"] == message("s0", body="x" * 1000 + "\r\n",
                                                                    sender="carol@remote.test")
    assert client.get_flags([1])[1] == (b"\\Seen", b"\\Recent")               # BODY[] sets \Seen (RFC 3501 §6.4.5)
    client.move([2], "Archive")
    assert client.search(["ALL"]) == [1, 3]
    assert client.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="TRYCREATE"):
        client.copy([1], "Nowhere")
    assert client.search(["SUBJECT", "s1"], charset="UTF-8") == []
    # clients still search in their locale's charset: Latin-1 "na\xefve" finds the UTF-8 "naïve" we store
    client.append("INBOX", message("latin", body="naïve\r\n", extra="Content-Type: text/plain; charset=utf-8\r\n"))
    assert len(client.search(["BODY", "naïve".encode("latin-1")], charset="ISO-8859-1")) == 1


def test_idle_check_sees_another_sessions_changes(server: IMAPServer, client: IMAPClient) -> None:
    server.deliver(ALICE, message("first"))
    client.select_folder("INBOX")
    client.idle()
    other = connect(server)
    try:
        other.select_folder("INBOX")
        other.append("INBOX", message("second"))
        seen: list[tuple[int, bytes]] = []
        for _ in range(20):                                      # bounded: the push comes within a second
            seen += client.idle_check(timeout=0.5)
            if (2, b"EXISTS") in seen:
                break
        assert (2, b"EXISTS") in seen
        other.add_flags([1], [b"\\Flagged"])
        other.delete_messages([1])
        other.expunge()
        pushed: list[tuple[int, bytes] | tuple[int, bytes, object]] = []
        for _ in range(20):
            pushed += client.idle_check(timeout=0.5)
            if (1, b"EXPUNGE") in pushed:
                break
        assert (1, b"EXPUNGE") in pushed
    finally:
        other.logout()
    client.idle_done()
    assert client.search(["ALL"]) == [2]                         # imapclient searches by UID


def test_a_session_per_thread(server: IMAPServer) -> None:
    """Four clients at once, each appending and reading back its own messages."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            c = connect(server)
            try:
                c.select_folder("INBOX")
                for i in range(5):
                    c.append("INBOX", message(f"t{n}-{i}"))
                found = c.search(["SUBJECT", f"t{n}-"])
                assert len(found) == 5
                bodies = c.fetch(found, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
                assert sorted(v[b"BODY[HEADER.FIELDS (SUBJECT)]"] for v in bodies.values()) == [
                    f"Subject: t{n}-{i}\r\n\r\n".encode() for i in range(5)]
            finally:
                c.logout()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors
