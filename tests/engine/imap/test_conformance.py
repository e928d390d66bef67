"""Corners of RFC 3501/9051 that third-party suites (Dovecot's imaptest scripts, client test suites) probe,
as byte-exact transcripts over a real socket."""

from __future__ import annotations

from .conftest import ALICE, IMAPServer, Raw, message


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


def test_a_subscription_outlives_its_mailbox_and_moves_with_a_rename(raw: Raw) -> None:
    raw.login()
    for name in (b"box/kept", b"box/gone", b"box/old/child"):
        raw.cmd(b"c", b"CREATE " + name)
        assert raw.cmd(b"s", b"SUBSCRIBE " + name)[-1] == b"s OK SUBSCRIBE completed\r\n"
    assert raw.cmd(b"d", b"DELETE box/gone")[-1] == b"d OK DELETE completed\r\n"
    # RFC 3501 §6.3.6: the server MUST NOT drop a subscribed name because its mailbox no longer exists
    assert raw.cmd(b"l", b'LSUB "" box/*') == [
        b'* LSUB (\\Noselect) "/" box/gone\r\n',
        b'* LSUB () "/" box/kept\r\n',
        b'* LSUB () "/" box/old/child\r\n',
        b"l OK LSUB completed\r\n",
    ]
    # RFC 5258 §3.1: LIST (SUBSCRIBED) lists it \NonExistent; a plain LIST does not list it at all
    assert b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" box/gone\r\n' in raw.cmd(
        b"l", b'LIST (SUBSCRIBED) "" box/*')
    assert not any(b"box/gone" in line for line in raw.cmd(b"l", b'LIST "" *'))
    # a rename takes the subscriptions of the mailbox and its children along
    assert raw.cmd(b"r", b"RENAME box/old box/new")[-1] == b"r OK RENAME completed\r\n"
    assert raw.cmd(b"l", b'LSUB "" box/*/*') == [b'* LSUB () "/" box/new/child\r\n', b"l OK LSUB completed\r\n"]
    # a name may be subscribed before it exists, and creating it then keeps the subscription
    assert raw.cmd(b"s", b"SUBSCRIBE later")[-1] == b"s OK SUBSCRIBE completed\r\n"
    assert raw.cmd(b"c", b"CREATE later")[-1] == b"c OK CREATE completed\r\n"
    assert raw.cmd(b"l", b'LSUB "" later') == [b'* LSUB () "/" later\r\n', b"l OK LSUB completed\r\n"]
    assert raw.cmd(b"u", b"UNSUBSCRIBE box/gone")[-1] == b"u OK UNSUBSCRIBE completed\r\n"
    assert raw.cmd(b"u", b"UNSUBSCRIBE box/gone")[-1].startswith(b"u NO ")


def test_sequence_sets_at_the_edges(server: IMAPServer, raw: Raw) -> None:
    raw.login()
    raw.cmd(b"c", b"CREATE Empty")
    raw.cmd(b"s", b"SELECT Empty")
    # RFC 9051 §9: "*" in an empty mailbox names no message -> BAD for sequence numbers; UIDs and SEARCH
    # keys just match nothing
    assert raw.cmd(b"f", b"FETCH 1:* FLAGS")[-1].startswith(b"f BAD ")
    assert raw.cmd(b"t", b"STORE * +FLAGS (\\Seen)")[-1].startswith(b"t BAD ")
    assert raw.cmd(b"u", b"UID FETCH 1:* FLAGS") == [b"u OK UID FETCH completed\r\n"]
    assert raw.cmd(b"q", b"SEARCH 1:*") == [b"* SEARCH\r\n", b"q OK SEARCH completed\r\n"]
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.cmd(b"s", b"SELECT INBOX")
    # RFC 3501 §6.4.8: "*" is the highest UID in use, so 999999:* is the last message however high 999999 is
    assert raw.cmd(b"u", b"UID FETCH 999999:* FLAGS") == [
        b"* 3 FETCH (UID 3 FLAGS (\\Recent))\r\n", b"u OK UID FETCH completed\r\n"]
    assert raw.cmd(b"u", b"UID FETCH 4:5 FLAGS") == [b"u OK UID FETCH completed\r\n"]
    assert raw.cmd(b"f", b"FETCH 4:* FLAGS")[-1].startswith(b"f BAD ")
    assert raw.cmd(b"q", b"SEARCH 4:*") == [b"* SEARCH 3\r\n", b"q OK SEARCH completed\r\n"]
    assert raw.cmd(b"q", b"SEARCH *:2 NOT 3") == [b"* SEARCH 2\r\n", b"q OK SEARCH completed\r\n"]
    assert raw.cmd(b"q", b"UID SEARCH UID 2:1") == [b"* SEARCH 1 2\r\n", b"q OK UID SEARCH completed\r\n"]


def test_delete_and_rename_of_mailboxes_with_children(server: IMAPServer, raw: Raw) -> None:
    raw.login()
    raw.cmd(b"c", b"CREATE Proj/Sub/Deep")
    server.deliver(ALICE, message("deep"), folder="Proj/Sub/Deep")
    # RFC 3501 §6.3.4: deleting a mailbox with children removes it, its children stay; it becomes \Noselect
    assert raw.cmd(b"d", b"DELETE Proj")[-1] == b"d OK DELETE completed\r\n"
    assert raw.cmd(b"l", b'LIST "" Proj*') == [
        b'* LIST (\\Noselect \\HasChildren) "/" Proj\r\n',
        b'* LIST (\\HasChildren) "/" Proj/Sub\r\n',
        b'* LIST (\\HasNoChildren) "/" Proj/Sub/Deep\r\n',
        b"l OK LIST completed\r\n",
    ]
    assert raw.cmd(b"s", b"SELECT Proj")[-1].startswith(b"s NO ")
    assert raw.cmd(b"d", b"DELETE Proj")[-1].startswith(b"d NO ")         # \Noselect with children
    # RFC 3501 §6.3.5: renaming takes the inferior names along, also from a \Noselect name
    assert raw.cmd(b"x", b"EXAMINE Proj/Sub/Deep")[-1].startswith(b"x OK ")
    assert raw.cmd(b"r", b"RENAME Proj Work")[-1] == b"r OK RENAME completed\r\n"
    listed = raw.cmd(b"l", b'LIST "" *')
    assert b'* LIST (\\HasNoChildren) "/" Work/Sub/Deep\r\n' in listed
    assert not any(b"Proj" in line for line in listed)
    assert raw.cmd(b"t", b"STATUS Work/Sub/Deep (MESSAGES)") == [
        b"* STATUS Work/Sub/Deep (MESSAGES 1)\r\n", b"t OK STATUS completed\r\n"]
    # the selected mailbox moved with its parent and is still the one selected
    assert raw.cmd(b"f", b"FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")[0] == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: deep\r\n\r\n)\r\n")
    assert raw.cmd(b"r", b"RENAME Work/Sub Work")[-1].startswith(b"r NO ")   # into itself / exists
    assert raw.cmd(b"r", b"RENAME Nothing Else")[-1].startswith(b"r NO [NONEXISTENT]")


def test_copy_and_move_keep_flags_dates_and_report_to_a_watching_session(server: IMAPServer, raw: Raw) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    raw.cmd(b"c", b"CREATE Other")
    watcher = Raw(server.port)
    try:
        watcher.login()
        assert b"* 0 EXISTS\r\n" in watcher.cmd(b"w", b"SELECT Other")
        raw.cmd(b"s", b"SELECT INBOX")
        raw.cmd(b"t", b"STORE 1 FLAGS (\\Seen)")
        raw.cmd(b"t", b"STORE 2 FLAGS (\\Draft \\Flagged $Hello)")
        dates = [line.split(b"INTERNALDATE ")[1] for line in raw.cmd(b"f", b"FETCH 1:2 INTERNALDATE")[:-1]]
        copied = raw.cmd(b"c", b"COPY 1:2 Other")
        other_uidvalidity = copied[-1].split()[3]
        assert copied[-1] == b"c OK [COPYUID %s 1:2 1:2] COPY completed\r\n" % other_uidvalidity
        # the session watching Other learns of both, and is the one that sees them \Recent (RFC 3501 §7.3.2)
        assert watcher.cmd(b"n", b"NOOP")[-3:] == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n", b"n OK NOOP completed\r\n"]
        fetched = watcher.cmd(b"f", b"FETCH 1:2 (FLAGS INTERNALDATE)")
        assert fetched[:2] == [b"* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE " + dates[0],
                               b"* 2 FETCH (FLAGS (\\Flagged \\Draft $Hello \\Recent) INTERNALDATE " + dates[1]]
        # MOVE: COPYUID untagged before the EXPUNGE (RFC 6851 §4.3); into the same mailbox: a new UID
        assert raw.cmd(b"m", b"MOVE 1 Other") == [
            b"* OK [COPYUID %s 1 3] Moved\r\n" % other_uidvalidity, b"* 1 EXPUNGE\r\n",
            b"m OK MOVE completed\r\n"]
        uidvalidity = next(line for line in raw.cmd(b"s", b"SELECT INBOX") if b"UIDVALIDITY" in line).split()[3]
        assert raw.cmd(b"m", b"MOVE 1 INBOX") == [
            b"* OK [COPYUID " + uidvalidity.rstrip(b"]") + b" 2 4] Moved\r\n", b"* 1 EXPUNGE\r\n",
            b"* 2 EXISTS\r\n", b"* 1 RECENT\r\n", b"m OK MOVE completed\r\n"]
    finally:
        watcher.close()


def test_search_charsets(server: IMAPServer, raw: Raw) -> None:
    server.deliver(ALICE, message("caf\u00e9", body="na\u00efve\r\n", extra="Content-Type: text/plain; charset=utf-8\r\n"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    # RFC 3501 §6.4.4: an unknown charset is NO [BADCHARSET (what we do support)]
    assert raw.cmd(b"q", b"SEARCH CHARSET X-NO-SUCH-CHARSET BODY x") == [
        b"q NO [BADCHARSET (UTF-8 US-ASCII)] charset X-NO-SUCH-CHARSET is not supported\r\n"]
    assert raw.cmd(b"q", b"SEARCH CHARSET BASE64 BODY x")[-1].startswith(b"q NO [BADCHARSET ")
    # ... and any text charset a client searches in is decoded before matching
    raw.send(b"q SEARCH CHARSET ISO-8859-1 BODY {5}\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"na\xefve\r\n")
    assert raw.until(b"q") == [b"* SEARCH 1\r\n", b"q OK SEARCH completed\r\n"]
    raw.send(b"q SEARCH CHARSET UTF-8 SUBJECT {5}\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send("café\r\n".encode())
    assert raw.until(b"q") == [b"* SEARCH 1\r\n", b"q OK SEARCH completed\r\n"]
    raw.send(b"q SEARCH CHARSET US-ASCII SUBJECT {5}\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send("café\r\n".encode())
    assert raw.until(b"q")[-1].startswith(b"q NO [BADCHARSET ")


def test_list_extended_options_and_childinfo(raw: Raw) -> None:
    raw.login()
    for name in (b"box/test7/test7", b"box/test8/test8", b"box/test8/test9", b"box/test2/test1"):
        raw.cmd(b"c", b"CREATE " + name)
        raw.cmd(b"s", b"SUBSCRIBE " + name)
    # RFC 5258 §3: unknown options are BAD; RECURSIVEMATCH alone (or with REMOTE) is BAD
    for bad in (b'LIST (imaptest) "" ""', b'LIST (RECURSIVEMATCH) "" ""', b'LIST (RECURSIVEMATCH REMOTE) "" ""',
                b'LIST "" "" RETURN (imaptest)'):
        assert raw.cmd(b"b", bad)[-1].startswith(b"b BAD "), bad
    assert raw.cmd(b"r", b'LIST (REMOTE) "" box')[-1] == b"r OK LIST completed\r\n"
    # CHILDINFO only where a subscribed child is not itself matched
    assert raw.cmd(b"l", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" box/%') == [
        b'* LIST (\\HasChildren) "/" box/test2 ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        b'* LIST (\\HasChildren) "/" box/test7 ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        b'* LIST (\\HasChildren) "/" box/test8 ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        b"l OK LIST completed\r\n",
    ]
    assert raw.cmd(b"l", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" *test7') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" box/test7/test7\r\n', b"l OK LIST completed\r\n"]
    assert raw.cmd(b"l", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" *test8') == [
        b'* LIST (\\HasChildren) "/" box/test8 ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" box/test8/test8\r\n', b"l OK LIST completed\r\n"]


def test_condstore_once_enabled_reports_highestmodseq_then_uid_and_modseq_on_every_fetch(
        server: IMAPServer, raw: Raw) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    # RFC 7162 §3.1: the first CONDSTORE enabling command issued with a mailbox selected reports its
    # HIGHESTMODSEQ; later ones do not repeat it
    out = raw.cmd(b"f", b"FETCH 1 (MODSEQ)")
    assert out[0].startswith(b"* OK [HIGHESTMODSEQ ") and out[1].startswith(b"* 1 FETCH (MODSEQ (")
    assert not any(b"HIGHESTMODSEQ" in line for line in raw.cmd(b"f", b"FETCH 2 (MODSEQ)"))
    # ...and from then on an untagged FETCH that reports a flag change carries UID and MODSEQ: one
    # caused by STORE, and one caused by a FETCH setting \Seen
    stored = raw.cmd(b"t", b"STORE 3 +FLAGS (\\Flagged)")[0]
    assert stored.startswith(b"* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent) MODSEQ (")
    fetched = b"".join(raw.cmd(b"b", b"FETCH 2 (BODY[TEXT])"))
    assert fetched.startswith(b"* 2 FETCH (UID 2 BODY[TEXT] {")
    assert b"FLAGS (\\Seen \\Recent) MODSEQ (" in fetched


def test_esearch_min_and_max_report_the_modseq_of_the_messages_they_name(server: IMAPServer, raw: Raw) -> None:
    for i in range(3):
        server.deliver(ALICE, message(f"m{i}"))
    raw.login()
    raw.cmd(b"s", b"SELECT INBOX")
    for seq in (b"1", b"3", b"2"):            # message 2 ends up with the highest MODSEQ
        raw.cmd(b"t", b"STORE " + seq + b" +FLAGS.SILENT (\\Seen)")
    modseq = {int(line.split()[1]): int(line.split(b"MODSEQ (")[1].split(b")")[0])
              for line in raw.cmd(b"f", b"FETCH 1:3 (MODSEQ)") if line.startswith(b"* ")
              and b"FETCH" in line}
    assert modseq[2] > modseq[3] > modseq[1]

    def esearch(returns: bytes) -> bytes:
        return raw.cmd(b"q", b"SEARCH RETURN (" + returns + b") MODSEQ 1")[0]

    # RFC 4731 §3.2: MIN and MAX alone report the MODSEQ of the message(s) they return; with ALL or COUNT
    # the highest of every match
    assert esearch(b"MIN") == b'* ESEARCH (TAG "q") MIN 1 MODSEQ %d\r\n' % modseq[1]
    assert esearch(b"MAX") == b'* ESEARCH (TAG "q") MAX 3 MODSEQ %d\r\n' % modseq[3]
    assert esearch(b"MIN MAX") == b'* ESEARCH (TAG "q") MIN 1 MAX 3 MODSEQ %d\r\n' % modseq[3]
    assert esearch(b"MIN COUNT") == b'* ESEARCH (TAG "q") MIN 1 COUNT 3 MODSEQ %d\r\n' % modseq[2]


def test_store_answers_with_the_flags_as_they_are_now_including_other_sessions_changes(
        server: IMAPServer, raw: Raw, other: Raw) -> None:
    server.deliver(ALICE, message("one"))
    other.login()
    raw.login()
    for client in (raw, other):
        client.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"o", b"STORE 1 +FLAGS (\\Flagged)")
    # RFC 3501 §6.4.6: the reply is "as if a FETCH FLAGS": the flag is there, though this session
    # asked for what was already done and has not been told about it yet
    assert raw.cmd(b"a", b"STORE 1 +FLAGS (\\Flagged)")[0] == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    # .SILENT still reports a change made elsewhere (\Deleted here), and only then
    other.cmd(b"o", b"STORE 1 +FLAGS (\\Deleted)")
    assert raw.cmd(b"b", b"STORE 1 +FLAGS.SILENT (\\Seen)") == [
        b"* 1 FETCH (FLAGS (\\Seen \\Flagged \\Deleted \\Recent))\r\n", b"b OK STORE completed\r\n"]
    assert raw.cmd(b"c", b"STORE 1 -FLAGS.SILENT (\\Seen)") == [b"c OK STORE completed\r\n"]
    # a keyword another session set is announced in FLAGS before a FETCH that sets \Seen shows it
    other.cmd(b"o", b"STORE 1 +FLAGS (NewKeyword)")
    out = raw.cmd(b"d", b"FETCH 1 (BODY[TEXT])")
    assert out[0].startswith(b"* FLAGS (") and b"NewKeyword" in out[0]
    assert b"NewKeyword" in b"".join(out[1:])


def test_recent_goes_to_exactly_one_session_for_appended_copied_and_moved_mail(server: IMAPServer,
                                                                                raw: Raw, other: Raw) -> None:
    other.login()
    raw.login()
    raw.cmd(b"c", b"CREATE Dest")
    raw.cmd(b"s", b"SELECT INBOX")
    # RFC 3501 §6.3.11: an APPENDed message is \Recent, with a system flag too (it is filed in cur/)
    for flags in (b"(\\Seen) ", b""):
        other.send(b"a APPEND INBOX " + flags + b"{15}\r\n")
        assert other.line().startswith(b"+")
        other.send(b"Subject: a\r\n\r\nx" + b"\r\n")          # 15 octets, then the line's end
        assert other.until(b"a")[-1].startswith(b"a OK")
    assert b"* 2 RECENT\r\n" in raw.cmd(b"n", b"NOOP")
    # copies and moves: the first session to see them gets them, the one watching the target here
    other.cmd(b"w", b"SELECT Dest")
    raw.cmd(b"k", b"COPY 1:2 Dest")
    raw.cmd(b"m", b"MOVE 2 Dest")
    assert b"* 3 RECENT\r\n" in other.cmd(b"n", b"NOOP")
    third = Raw(server.port)
    try:
        third.login()
        assert b"* 0 RECENT\r\n" in third.cmd(b"s", b"SELECT Dest")
    finally:
        third.close()


def test_a_conditional_store_that_fails_because_of_another_session_still_tells_what_changed(
        server: IMAPServer, raw: Raw, other: Raw) -> None:
    server.deliver(ALICE, message("one"))
    other.login()
    raw.login()
    out = raw.cmd(b"s", b"SELECT INBOX (CONDSTORE)")
    modseq = int(next(x for x in out if b"HIGHESTMODSEQ" in x).split()[3].strip(b"]"))
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"o", b"STORE 1 +FLAGS (\\Deleted)")
    out = raw.cmd(b"t", b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % modseq)
    assert out[-1] == b"t OK [MODIFIED 1] Conditional STORE failed for some messages\r\n"
    # the failed message gets no STORE reply, but the change that made it fail is reported
    assert any(line.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Deleted") for line in out[:-1])
