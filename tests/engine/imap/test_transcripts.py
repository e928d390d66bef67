"""Byte-exact scripted sessions: what a client sends, and exactly what the server answers."""

from __future__ import annotations

from .conftest import ALICE, BOB, IMAPServer, Raw, message

AUTHED_CAPS = (b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ENABLE ID IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "
               b"SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES CONDSTORE QRESYNC "
               b"BINARY UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE STATUS=SIZE WITHIN APPENDLIMIT=26214400")


def test_greeting_capability_and_login(raw: Raw) -> None:
    assert raw.line() == b"* OK [CAPABILITY " + AUTHED_CAPS + b" STARTTLS AUTH=PLAIN AUTH=LOGIN] Postroom ready\r\n"
    assert raw.cmd(b"a1", b"CAPABILITY") == [
        b"* CAPABILITY " + AUTHED_CAPS + b" STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n",
        b"a1 OK CAPABILITY completed\r\n",
    ]
    raw.send(b"a2 LOGIN alice@example.test {12}\r\n")
    assert raw.line() == b"+ Ready for literal data\r\n"
    raw.send(b"alice secret\r\n")
    assert raw.until(b"a2") == [b"a2 OK [CAPABILITY " + AUTHED_CAPS + b"] Logged in\r\n"]
    assert raw.cmd(b"a3", b"LOGOUT") == [b"* BYE Postroom logging out\r\n", b"a3 OK LOGOUT completed\r\n"]


def test_select_reports_the_mailbox(server: IMAPServer, raw: Raw) -> None:
    server.deliver(ALICE, message("one"))
    server.deliver(ALICE, message("two"))
    status = server.store.mailbox(ALICE).status("INBOX")
    raw.login()
    assert raw.cmd(b"s", b"SELECT INBOX") == [
        b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n",
        b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] Flags permitted\r\n",
        b"* 2 EXISTS\r\n",
        b"* 2 RECENT\r\n",
        b"* OK [UNSEEN 1] First unseen message\r\n",
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % status.uidvalidity,
        b"* OK [UIDNEXT 3] Predicted next UID\r\n",
        b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % status.highestmodseq,
        b"s OK [READ-WRITE] SELECT completed\r\n",
    ]
    assert raw.cmd(b"f", b"FETCH 1:2 (UID FLAGS)") == [
        b"* 1 FETCH (UID 1 FLAGS (\\Recent))\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n",
        b"f OK FETCH completed\r\n",
    ]
    assert raw.cmd(b"t", b"STORE 2 +FLAGS (\\Flagged $Todo)") == [
        b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Todo)\r\n",
        b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Todo \\*)] Flags permitted\r\n",
        b"* 2 FETCH (FLAGS (\\Flagged $Todo \\Recent))\r\n",
        b"t OK STORE completed\r\n",
    ]
    body = b"Hi there.\r\n"
    assert raw.cmd(b"b", b"UID FETCH 1 (BODY[TEXT] BODY.PEEK[HEADER.FIELDS (Subject)])") == [
        b"* 1 FETCH (UID 1 BODY[TEXT] {%d}\r\n%s BODY[HEADER.FIELDS (Subject)] {16}\r\nSubject: one\r\n\r\n"
        b" FLAGS (\\Seen \\Recent))\r\n" % (len(body), body),
        b"b OK UID FETCH completed\r\n",
    ]


def test_examine_is_read_only(server: IMAPServer, raw: Raw) -> None:
    server.deliver(ALICE, message("one"))
    raw.login()
    out = raw.cmd(b"e", b"EXAMINE INBOX")
    assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n" in out
    assert b"* 1 RECENT\r\n" in out      # RFC 3501 §6.3.2: the same answer as SELECT, but nothing taken
    assert out[-1] == b"e OK [READ-ONLY] EXAMINE completed\r\n"
    assert raw.cmd(b"s", b"STORE 1 +FLAGS (\\Seen)") == [b"s NO [READ-ONLY] Mailbox is read-only\r\n"]
    # BODY[] does not set \Seen in a read-only mailbox
    assert raw.cmd(b"f", b"FETCH 1 (BODY[TEXT])")[0].endswith(b"Hi there.\r\n)\r\n")
    assert raw.cmd(b"g", b"FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n"
    # the first read-write session still gets the message as \Recent; after it, nobody does
    assert b"* 1 RECENT\r\n" in raw.cmd(b"s", b"SELECT INBOX")
    assert b"* 0 RECENT\r\n" in raw.cmd(b"e", b"EXAMINE INBOX")


def test_bad_syntax_gets_bad_and_the_session_lives_on(raw: Raw) -> None:
    raw.login()
    assert raw.cmd(b"x1", b"FROB") == [b"x1 BAD unknown command FROB\r\n"]
    assert raw.cmd(b"x2", b"FETCH 1 FLAGS") == [b"x2 BAD No mailbox selected\r\n"]
    assert raw.cmd(b"x3", b"SELECT") == [b"x3 BAD expected a space at position 9\r\n"]
    raw.send(b"((((garbage\x00\xff\r\n")
    assert raw.response() == b"* BAD expected a tag at position 0 near '((((garbage\\x00\\xff'\r\n"
    assert raw.cmd(b"x4", b"SELECT INBOX")[-1] == b"x4 OK [READ-WRITE] SELECT completed\r\n"
    assert raw.cmd(b"x5", b"FETCH 99 FLAGS") == [b"x5 BAD No message with sequence number 99 (there are 0)\r\n"]
    assert raw.cmd(b"x6", b"NOOP") == [b"x6 OK NOOP completed\r\n"]


def test_names_that_leave_the_account_are_refused(raw: Raw) -> None:
    raw.login()
    for name in (b'"../bob"', b'"/etc"', b'"a/../../b"', b'{5}\r\na\x00bcd', b'"Foo/./Bar"', b'"INBOX//x"'):
        tag = b"n"
        if name.startswith(b"{"):
            raw.send(b"n CREATE {5}\r\n")
            assert raw.line() == b"+ Ready for literal data\r\n"
            raw.send(b"a\x00bcd\r\n")
            out = raw.until(tag)
        else:
            out = raw.cmd(tag, b"CREATE " + name)
        assert out[-1].startswith(b"n NO "), (name, out)
    assert raw.cmd(b"s", b'SELECT "../bob@example.test"')[-1].startswith(b"s NO ")
    assert raw.cmd(b"o", b"LIST \"\" *")[-1] == b"o OK LIST completed\r\n"


def test_one_account_cannot_name_anothers_mailbox(server: IMAPServer, raw: Raw) -> None:
    server.deliver(BOB, message("for bob"))
    raw.login()
    for name in (b"bob@example.test/INBOX", b"../bob/INBOX", b"~bob/INBOX"):
        out = raw.cmd(b"s", b'STATUS "' + name + b'" (MESSAGES)')
        assert out[-1].startswith(b"s NO"), out


def test_giant_literal_is_refused_before_it_is_sent(raw: Raw) -> None:
    raw.login()
    raw.send(b"big APPEND INBOX {999999999}\r\n")
    assert raw.line() == (b"big NO [TOOBIG] Literal of 999999999 octets is larger than allowed (26214400)\r\n")
    raw.send(b"lg LOGIN {70000}\r\n")
    assert raw.line() == b"lg NO [TOOBIG] Literal of 70000 octets is larger than allowed (65536)\r\n"
    assert raw.cmd(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]


def test_overlong_line_is_skipped(raw: Raw) -> None:
    raw.login()
    raw.send(b"long NOOP " + b"x" * 70000 + b"\r\nn NOOP\r\n")
    assert raw.line() == b"long BAD Command line longer than 65536 octets\r\n"
    assert raw.until(b"n") == [b"n OK NOOP completed\r\n"]


def test_oversized_non_synchronising_literal_ends_the_session(raw: Raw) -> None:
    raw.login()
    raw.send(b"big APPEND INBOX {999999999+}\r\nxxxx")
    assert raw.line() == b"* BYE [TOOBIG] Literal larger than this server accepts\r\n"


def test_literal_plus_needs_no_continuation(server: IMAPServer, raw: Raw) -> None:
    raw.login()
    data = message("plus")
    out = raw.cmd(b"ap", b"APPEND INBOX (\\Seen) {%d+}\r\n%s" % (len(data), data))
    assert out == [b"ap OK [APPENDUID %d 1] APPEND completed\r\n"
                   % server.store.mailbox(ALICE).status("INBOX").uidvalidity]


def test_expunge_is_held_back_during_fetch_store_and_search(server: IMAPServer, raw: Raw,
                                                            other: Raw) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    other.login()
    raw.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"s", b"SELECT INBOX")
    assert other.cmd(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)") == [b"d OK STORE completed\r\n"]
    assert other.cmd(b"x", b"EXPUNGE") == [b"* 2 EXPUNGE\r\n", b"x OK EXPUNGE completed\r\n"]
    # RFC 3501 §7.4.1: not during FETCH (the flag change may be told, the expunge may not)
    fetched = raw.cmd(b"f", b"FETCH 1:3 (UID)")
    assert not any(b"EXPUNGE" in line for line in fetched)
    assert b"* 3 FETCH (UID 3)\r\n" in fetched
    assert not any(b"EXPUNGE" in line for line in raw.cmd(b"g", b"SEARCH ALL"))
    assert raw.cmd(b"n", b"NOOP") == [b"* 2 EXPUNGE\r\n", b"n OK NOOP completed\r\n"]
    assert raw.cmd(b"u", b"SEARCH ALL") == [b"* SEARCH 1 2\r\n", b"u OK SEARCH completed\r\n"]


def test_flag_changes_reach_the_other_session(server: IMAPServer, raw: Raw, other: Raw) -> None:
    server.deliver(ALICE, message("m"))
    raw.login()
    other.login()
    raw.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"t", b"STORE 1 +FLAGS.SILENT (\\Answered)")
    assert raw.cmd(b"n", b"NOOP") == [b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))\r\n",
                                     b"n OK NOOP completed\r\n"]


def test_esearch_and_searchres(server: IMAPServer, raw: Raw) -> None:
    for i in range(5):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    raw.cmd(b"t", b"STORE 2,4 +FLAGS (\\Flagged)")
    assert raw.cmd(b"e1", b"UID SEARCH RETURN (MIN MAX COUNT ALL) UNFLAGGED") == [
        b'* ESEARCH (TAG "e1") UID MIN 1 MAX 5 ALL 1,3,5 COUNT 3\r\n', b"e1 OK UID SEARCH completed\r\n"]
    assert raw.cmd(b"e2", b"SEARCH RETURN (SAVE) FLAGGED") == [b"e2 OK SEARCH completed, result saved\r\n"]
    assert raw.cmd(b"e3", b"FETCH $ (UID)") == [b"* 2 FETCH (UID 2)\r\n", b"* 4 FETCH (UID 4)\r\n",
                                                  b"e3 OK FETCH completed\r\n"]
    assert raw.cmd(b"e4", b"SEARCH RETURN () 99:*")[0] == b'* ESEARCH (TAG "e4") ALL 5\r\n'


def test_condstore_and_qresync(server: IMAPServer, raw: Raw) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    assert raw.cmd(b"en", b"ENABLE QRESYNC") == [b"* ENABLED QRESYNC\r\n", b"en OK ENABLE completed\r\n"]
    out = raw.cmd(b"s", b"SELECT INBOX")
    modseq = int(next(x for x in out if b"HIGHESTMODSEQ" in x).split()[3].strip(b"]"))
    uidvalidity = int(next(x for x in out if b"UIDVALIDITY" in x).split()[3].strip(b"]"))
    out = raw.cmd(b"t", b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % modseq)
    # RFC 7162 §3.1: with CONDSTORE on, untagged FETCH replies carry the UID as well as the MODSEQ
    assert out == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (modseq + 1),
                   b"t OK STORE completed\r\n"]
    out = raw.cmd(b"t2", b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % modseq)
    assert out == [b"t2 OK [MODIFIED 1] Conditional STORE failed for some messages\r\n"]
    raw.cmd(b"d", b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd(b"x", b"UID EXPUNGE 3") == [b"* VANISHED 3\r\n", b"x OK UID EXPUNGE completed\r\n"]
    assert raw.cmd(b"c", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq) == [
        b"* VANISHED (EARLIER) 3\r\n",
        b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (modseq + 1),
        b"c OK UID FETCH completed\r\n"]
    raw.cmd(b"u", b"UNSELECT")
    out = raw.cmd(b"q", b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq))
    assert b"* VANISHED (EARLIER) 3\r\n" in out
    assert b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (%d))\r\n" % (modseq + 1) in out


def test_list_special_use_and_status(raw: Raw) -> None:
    raw.login()
    assert raw.cmd(b"l", b'LIST "" ""') == [b'* LIST (\\Noselect) "/" ""\r\n', b"l OK LIST completed\r\n"]
    assert raw.cmd(b"l2", b'LIST (SPECIAL-USE) "" * RETURN (STATUS (MESSAGES UIDNEXT))') == [
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive\r\n',
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n',
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n',
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n',
        b"* STATUS Archive (MESSAGES 0 UIDNEXT 1)\r\n",
        b"* STATUS Drafts (MESSAGES 0 UIDNEXT 1)\r\n",
        b"* STATUS Junk (MESSAGES 0 UIDNEXT 1)\r\n",
        b"* STATUS Sent (MESSAGES 0 UIDNEXT 1)\r\n",
        b"* STATUS Trash (MESSAGES 0 UIDNEXT 1)\r\n",
        b"l2 OK LIST completed\r\n"]
    raw.cmd(b"c", "CREATE \"Entwürfe/日本\"".encode())
    assert raw.cmd(b"l3", b'LIST "" "Entw&APw-rfe/%"') == [
        b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe/&ZeVnLA-\r\n', b"l3 OK LIST completed\r\n"]
    assert raw.cmd(b"e", b"ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT\r\n", b"e OK ENABLE completed\r\n"]
    assert raw.cmd(b"l4", b'LIST "" "Entw*"') == [
        '* LIST (\\HasChildren) "/" "Entwürfe"\r\n'.encode(),
        '* LIST (\\HasNoChildren) "/" "Entwürfe/日本"\r\n'.encode(), b"l4 OK LIST completed\r\n"]
    assert raw.cmd(b"ns", b"NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL\r\n', b"ns OK NAMESPACE completed\r\n"]


def test_starttls_discards_pipelined_plaintext(server: IMAPServer) -> None:
    raw = Raw(server.port)
    try:
        raw.line()
        # the injected NOOP rides in the same packet as STARTTLS; it must not run inside the TLS session
        raw.send(b"t STARTTLS\r\ninjected NOOP\r\n")
        assert raw.line() == b"t OK Begin TLS negotiation now\r\n"
        raw.sock = server.client_tls.wrap_socket(raw.sock, server_hostname="localhost")
        raw.buf = b""
        assert raw.cmd(b"c", b"CAPABILITY") == [
            b"* CAPABILITY " + AUTHED_CAPS + b" AUTH=PLAIN AUTH=LOGIN\r\n", b"c OK CAPABILITY completed\r\n"]
    finally:
        raw.close()


def test_login_is_disabled_before_tls_for_remote_clients(tmp_path: object) -> None:
    from pathlib import Path
    srv = IMAPServer(Path(str(tmp_path)), loopback_is_secure=False)
    raw = Raw(srv.port)
    try:
        assert raw.line().endswith(b" STARTTLS LOGINDISABLED] Postroom ready\r\n")
        assert raw.cmd(b"l", b'LOGIN alice@example.test "alice secret"') == [
            b"l NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n"]
        assert raw.cmd(b"a", b"AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZSBzZWNyZXQ=") == [
            b"a NO [PRIVACYREQUIRED] Use STARTTLS before authenticating\r\n"]
        raw.send(b"t STARTTLS\r\n")
        assert raw.line() == b"t OK Begin TLS negotiation now\r\n"
        raw.sock = srv.client_tls.wrap_socket(raw.sock, server_hostname="localhost")
        raw.buf = b""
        assert raw.cmd(b"a", b"AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZSBzZWNyZXQ=")[-1] == (
            b"a OK [CAPABILITY " + AUTHED_CAPS + b"] Logged in\r\n")
    finally:
        raw.close()
        srv.close()


def test_authenticate_plain_with_a_continuation(raw: Raw) -> None:
    raw.line()
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n")     # wrong password
    assert raw.line() == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    raw.send(b"b AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"*\r\n")
    assert raw.line() == b"b BAD AUTHENTICATE cancelled\r\n"
    assert raw.cmd(b"c", b"LOGIN alice@example.test \"alice secret\"")[-1].startswith(b"c OK")


def test_imap4rev2_behaviour_after_enable(server: IMAPServer, raw: Raw) -> None:
    server.deliver(ALICE, message("one"))
    raw.login()
    assert raw.cmd(b"e", b"ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2\r\n", b"e OK ENABLE completed\r\n"]
    out = raw.cmd(b"s", b"SELECT INBOX")
    assert b"* 1 EXISTS\r\n" in out and b'* LIST () "/" INBOX\r\n' in out
    assert not any(b"RECENT" in x or b"[UNSEEN" in x for x in out)
    assert raw.cmd(b"f", b"FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS ())\r\n", b"f OK FETCH completed\r\n"]
    assert raw.cmd(b"q", b"SEARCH ALL") == [b'* ESEARCH (TAG "q") ALL 1\r\n', b"q OK SEARCH completed\r\n"]
    assert raw.cmd(b"c", 'CREATE "Brief/Entwürfe"'.encode()) == [b"c OK CREATE completed\r\n"]
    assert raw.cmd(b"t", b'STATUS INBOX (MESSAGES SIZE DELETED)') == [
        b"* STATUS INBOX (MESSAGES 1 SIZE %d DELETED 0)\r\n" % len(message("one")), b"t OK STATUS completed\r\n"]


def test_wildcards_in_names_are_refused(raw: Raw) -> None:
    raw.login()
    assert raw.cmd(b"c", b'CREATE "a*b"') == [b"c NO [CANNOT] Mailbox names cannot contain the LIST wildcards * and %\r\n"]


def test_expunge_reports_each_message_once_with_current_numbers(server: IMAPServer, raw: Raw) -> None:
    for i in range(5):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    raw.cmd(b"d", b"STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    # highest first: each number is still valid when the client applies it (RFC 3501 §7.4.1)
    assert raw.cmd(b"x", b"EXPUNGE") == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"x OK EXPUNGE completed\r\n"]
    assert raw.cmd(b"f", b"FETCH 1:* (UID)") == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n",
                                                   b"* 3 FETCH (UID 5)\r\n", b"f OK FETCH completed\r\n"]
    raw.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd(b"c", b"CLOSE") == [b"c OK CLOSE completed\r\n"]          # silently
    assert raw.cmd(b"t", b"STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 2)\r\n",
                                                          b"t OK STATUS completed\r\n"]


def test_a_message_renamed_behind_the_stores_back_is_still_served(server: IMAPServer, raw: Raw) -> None:
    import os
    uid = server.deliver(ALICE, message("renamed"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    path = server.store.mailbox(ALICE).path_of("INBOX", uid)
    os.rename(path, path.parent.parent / "cur" / (path.name.split(":2,")[0] + ":2,FS"))   # e.g. mutt
    out = raw.cmd(b"f", b"UID FETCH %d (BODY.PEEK[])" % uid)
    assert out[0].endswith(message("renamed") + b")\r\n"), out
    assert raw.cmd(b"n", b"NOOP")[0] == b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged \\Recent))\r\n"


def test_renaming_the_selected_mailbox_keeps_it_selected(server: IMAPServer, raw: Raw) -> None:
    raw.login()
    raw.cmd(b"c", b"CREATE Old")
    data = message("kept")
    raw.cmd(b"a", b"APPEND Old {%d+}\r\n%s" % (len(data), data))
    raw.cmd(b"s", b"SELECT Old")
    assert raw.cmd(b"r", b"RENAME Old New") == [b"r OK RENAME completed\r\n"]
    assert raw.cmd(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]
    assert raw.cmd(b"f", b"FETCH 1 (RFC822.SIZE)") == [b"* 1 FETCH (RFC822.SIZE %d)\r\n" % len(data),
                                                       b"f OK FETCH completed\r\n"]


def test_a_read_only_session_sees_new_mail_recent_without_taking_it(server: IMAPServer, raw: Raw) -> None:
    server.deliver(ALICE, message("one"))
    raw.login()
    assert b"* 1 RECENT\r\n" in raw.cmd(b"e", b"EXAMINE INBOX")
    server.deliver(ALICE, message("two"))
    out = raw.cmd(b"n", b"NOOP")
    assert b"* 2 EXISTS\r\n" in out and b"* 2 RECENT\r\n" in out
    assert b"* 2 RECENT\r\n" in raw.cmd(b"s", b"SELECT INBOX")     # both still there for a read-write one
