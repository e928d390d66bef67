"""Issue 3 as it will be checked: `postroom serve` sends submitted mail on through DNS (dnsmasq) to a remote
MX (aiosmtpd), retries what may succeed later, returns what cannot succeed, and keeps the rest queued —
across `kill -9` — while `postroom queue` and `postroom log` show and steer all of it from outside.
"""

from __future__ import annotations

import csv
import email
import email.message
import email.policy
import io
import json
import smtplib
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.e2e.conftest import Server, copy_data_dir, postroom, serving
from tests.e2e.peers import (
    DNSMASQ,
    GREYLIST_ONCE,
    REFUSE,
    STALL_ONCE,
    Dnsmasq,
    ServfailServer,
    SinkMX,
    needs_program,
)

pytestmark = [needs_program("swaks", "swaks"), needs_program("dnsmasq", "dnsmasq-base", DNSMASQ)]

ALICE = "alice@example.test"
ALICE_PW = "alice-pw"

# One recipient per kind of destination, and what must become of it.
ACCEPTED = "ok@accept.test"
GREYLISTED = "grey@accept.test"           # 451 once, then 250
REFUSED = "refused@accept.test"           # 550 5.1.1
A_ONLY = "user@aonly.test"                # no MX, an A record: RFC 5321 §5.1 implicit MX
NULL_MX = "user@nullmx.test"              # RFC 7505 null MX
NO_DOMAIN = "user@nx.test"                # NXDOMAIN
DNS_BROKEN = "user@servfail.test"         # every lookup SERVFAILs: temporary, never a bounce
IN_FLIGHT = "stall@slow.test"             # its MX holds the first RCPT reply until serve is killed
RECIPIENTS = (ACCEPTED, GREYLISTED, REFUSED, A_ONLY, NULL_MX, NO_DOMAIN, DNS_BROKEN)
DELIVERED = (ACCEPTED, GREYLISTED, A_ONLY)
BOUNCED = {REFUSED: "5.1.1", NULL_MX: "5.1.10", NO_DOMAIN: "5.1.2"}


@dataclass
class Remote:
    """The world outside: a DNS zone and one receiving MX that every name in it points at."""

    dns: Dnsmasq
    servfail: ServfailServer
    mx: SinkMX

    def settings(self, retry_schedule: str) -> str:
        return (f'hostname = "mx.example.test"\n\n[dns]\nnameservers = ["{self.dns.nameserver}"]\ntimeout = "2s"\n\n'
                f'[delivery]\nremote_port = {self.mx.port}\nretry_schedule = "{retry_schedule}"\n')


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    servfail = ServfailServer().start()
    mx = SinkMX({"grey": GREYLIST_ONCE, "refused": REFUSE, "stall": STALL_ONCE}).start()
    zone = Dnsmasq(mx=[("accept.test", "mx.accept.test", 10), ("slow.test", "mx.accept.test", 10),
                       ("nullmx.test", ".", 0)],
                   hosts={"mx.accept.test": "127.0.0.1", "aonly.test": "127.0.0.1"},
                   nxdomain=["nx.test"], local=["test"], forward={"servfail.test": servfail.port})
    try:
        zone.start()
        yield Remote(zone, servfail, mx)
    finally:
        zone.stop()
        mx.stop()
        servfail.stop()


# --- what a person at the terminal runs --------------------------------------------------------------------

def swaks_submit(server: Server, recipients: tuple[str, ...], subject: str) -> str:
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.ports["submission"]), "--tls",
                          "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", ALICE_PW,
                          "--from", ALICE, "--to", ",".join(recipients), "--header", f"Subject: {subject}",
                          "--body", "Outbound test."], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def queue_list(server: Server) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(postroom(server.data_dir, "queue", "list", "--format", "json").stdout)
    return items


def states(server: Server) -> dict[str, dict[str, Any]]:
    """Every queued recipient's state, by address."""
    return {r["address"]: r for item in queue_list(server) for r in item["recipients"]}


def log_rows(server: Server) -> list[dict[str, str]]:
    text = postroom(server.data_dir, "log", "--format", "csv", "--limit", "0").stdout
    return list(csv.DictReader(io.StringIO(text, newline="")))


def poll(check: Callable[[], Any], what: str, deadline: float = 20.0, every: float = 0.2) -> Any:
    """Calls `check` until it returns something true, or fails saying what was awaited."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"not after {deadline}s: {what} (last: {result!r})")
        time.sleep(every)


def delivery_reports(data: Path, address: str) -> list[email.message.Message]:
    """The message/delivery-status parts of the DSNs in a local mailbox."""
    user, domain = address.split("@")
    box = data / "mail" / domain / user
    reports: list[email.message.Message] = []
    for path in sorted([*box.joinpath("new").iterdir(), *box.joinpath("cur").iterdir()]):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message.get_content_type() == "multipart/report", f"not a DSN: {message['Subject']}"
        reports += [part for part in message.walk() if part.get_content_type() == "message/delivery-status"]
    return reports


def reported_failures(data: Path, address: str) -> dict[str, list[str]]:
    """Final-Recipient -> the Status of each per-recipient block reporting it, across all DSNs."""
    found: dict[str, list[str]] = {}
    for report in delivery_reports(data, address):
        blocks = cast(list[email.message.Message], report.get_payload())
        assert isinstance(blocks, list)
        for block in blocks[1:]:                                    # RFC 3464 §2.1: per-message first
            if block["Action"] == "failed":
                recipient = str(block["Final-Recipient"]).split(";", 1)[1].strip()
                found.setdefault(recipient, []).append(str(block["Status"]))
    return found


def check_dsns(data: Path, item_subject: str) -> None:
    """Every DSN is a proper RFC 3464 report from MAILER-DAEMON that no robot should answer."""
    user, domain = ALICE.split("@")
    for path in (data / "mail" / domain / user / "new").iterdir():
        dsn = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert dsn.get_content_type() == "multipart/report"
        assert dsn.get_param("report-type") == "delivery-status"
        assert str(dsn["From"]).endswith("<MAILER-DAEMON@mx.example.test>")
        assert dsn["Auto-Submitted"] == "auto-replied"                     # RFC 3834 §5
        parts = list(dsn.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                         "text/rfc822-headers"]        # RFC 6522 §3
        status = cast(list[email.message.Message], parts[1].get_payload())
        assert isinstance(status, list) and status[0]["Reporting-MTA"] == "dns; mx.example.test"
        for block in status[1:]:
            recipient = str(block["Final-Recipient"]).split(";", 1)[1].strip()
            if recipient == REFUSED:       # the remote's own words, and who said them (RFC 3464 §2.3.5-6)
                assert block["Remote-MTA"] == "dns; mx.accept.test"
                assert str(block["Diagnostic-Code"]).startswith("smtp; 550 5.1.1")
        assert f"Subject: {item_subject}" in str(parts[2].get_payload())


# --- the scenarios -------------------------------------------------------------------------------------------

def test_one_submission_to_seven_destinations_ends_as_each_must(remote: Remote, data_template: Path,
                                                                tmp_path: Path) -> None:
    data = copy_data_dir(data_template, tmp_path / "data", remote.settings("2s,2s"))
    mx = remote.mx
    with serving(data) as server:
        swaks_submit(server, RECIPIENTS, "seven destinations")

        # Accepted at once, the greylisted one on its retry two seconds later, the A-only domain via its A.
        assert mx.wait_for(lambda: all(mx.received_by(r) for r in DELIVERED)), mx.rcpt_replies
        final = poll(lambda: (s := states(server)) and all(s[r]["status"] == "delivered" for r in DELIVERED)
                     and s, "the queue records the three deliveries")
        assert final[GREYLISTED]["attempts"] == 2
        assert final[ACCEPTED]["attempts"] == 1 and final[A_ONLY]["attempts"] == 1

        # Refused, null MX and NXDOMAIN: failed without a retry, and reported to Alice in her own Maildir.
        for address in BOUNCED:
            assert final[address]["status"] == "failed", final[address]
            assert final[address]["attempts"] == 1
        failures = poll(lambda: (f := reported_failures(data, ALICE)) and set(f) == set(BOUNCED) and f,
                        "DSNs for the three permanent failures in Alice's Maildir")
        assert failures == {address: [status] for address, status in BOUNCED.items()}
        check_dsns(data, item_subject="seven destinations")
        assert [r for r, code in mx.rcpt_replies if r == REFUSED] == [REFUSED], "a 550 must not be retried"

        # SERVFAIL: still queued, and `queue list` says so and why.
        (item,) = [i for i in queue_list(server) if any(r["address"] == DNS_BROKEN for r in i["recipients"])]
        pending = [r for r in item["recipients"] if r["status"] in ("queued", "sending")]
        assert [r["address"] for r in pending] == [DNS_BROKEN]
        assert item["status"] in ("deferred", "sending") and item["sender"] == ALICE
        assert "SERVFAIL" in pending[0]["last_error"] or "SERVFAIL" in item["last_error"], item
        attempts_before = pending[0]["attempts"]
        assert attempts_before >= 1

        # kill -9 with a delivery in flight (a second message, whose MX holds its RCPT reply): the queue
        # survives, retries the one whose fate was unknown, and delivers nothing a second time.
        swaks_submit(server, (IN_FLIGHT,), "in flight")
        assert mx.wait_for(lambda: IN_FLIGHT in mx.stalls), mx.rcpt_replies
        server.kill9()
        mx.release()
        server.start()
        assert mx.wait_for(lambda: bool(mx.received_by(IN_FLIGHT))), "the interrupted delivery is retried"
        after = poll(lambda: (s := states(server)).get(DNS_BROKEN, {}).get("attempts", 0) > attempts_before and s,
                     "a retry of the SERVFAIL recipient after the restart")
        assert {a: r["status"] for a, r in after.items() if a in RECIPIENTS and a != DNS_BROKEN} == \
            {a: r["status"] for a, r in final.items() if a != DNS_BROKEN}
        for address in (*DELIVERED, IN_FLIGHT):
            assert len(mx.received_by(address)) == 1, f"{address} received twice"
        assert len(mx.deliveries) == len(DELIVERED) + 1
        assert set(reported_failures(data, ALICE)) == set(BOUNCED), "no second DSN after the restart"

        # `postroom log --format csv` is CSV that Python's csv module reads, and it tells the whole story.
        rows = log_rows(server)
        assert rows and set(rows[0]) >= {"time", "event", "queue_id", "message_id", "sender", "recipient",
                                         "remote_host", "remote_reply", "detail"}
        mine = [r for r in rows if r["queue_id"] == item["id"]]
        by_event: dict[str, list[dict[str, str]]] = {}
        for row in mine:
            by_event.setdefault(row["event"], []).append(row)
        assert sorted(r["recipient"] for r in by_event["received"]) == sorted(RECIPIENTS)
        assert all(r["client_ip"] == "127.0.0.1" and r["tls"].startswith("TLS") and r["sender"] == ALICE
                   for r in by_event["received"])
        assert sorted(r["recipient"] for r in by_event["relayed"]) == sorted(DELIVERED), "each relayed once"
        assert {r["recipient"]: r["remote_host"].split("[")[0] for r in by_event["relayed"]} == \
            {ACCEPTED: "mx.accept.test", GREYLISTED: "mx.accept.test", A_ONLY: "aonly.test"}
        assert all(r["remote_reply"].startswith("250") for r in by_event["relayed"])
        assert [r["event"] for r in rows if r["recipient"] == IN_FLIGHT and r["event"] != "received"] == \
            ["relayed"], "the attempt killed mid-way left no outcome; the retry's is the only one"
        deferred = by_event["deferred"]
        assert {r["recipient"] for r in deferred} == {GREYLISTED, DNS_BROKEN}
        assert [r["remote_reply"][:3] for r in deferred if r["recipient"] == GREYLISTED] == ["451"]
        assert all("SERVFAIL" in r["detail"] for r in deferred if r["recipient"] == DNS_BROKEN)
        assert len([r for r in deferred if r["recipient"] == DNS_BROKEN]) >= attempts_before + 1
        assert sorted(r["recipient"] for r in by_event["bounced"]) == sorted(BOUNCED)
        (refusal,) = [r["remote_reply"] for r in by_event["bounced"] if r["recipient"] == REFUSED]
        assert refusal.startswith("550 5.1.1") and '"no such user" here' in refusal   # commas, quotes intact
        dsn_rows = [r for r in rows if r["event"] == "delivered" and r["recipient"] == ALICE]
        assert dsn_rows and all(r["sender"] == "" and item["id"] in r["detail"] for r in dsn_rows)
        server.stop()

        # One message, one Message-ID: the log names it the same from receipt to relay (the GUI shows the
        # column as "Message-ID", and a person searching the log for it must find the whole story).
        (message_id,) = {r["message_id"] for r in by_event["relayed"]}
        assert message_id.startswith("<") and message_id.endswith(">")
        assert {r["message_id"] for r in mine} == {message_id}, \
            {r["event"]: r["message_id"] for r in mine}


def submit_with_smtplib(server: Server, recipient: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.login(ALICE, ALICE_PW)
        smtp.sendmail(ALICE, [recipient], f"From: {ALICE}\r\nTo: {recipient}\r\nSubject: t\r\n\r\nBody.\r\n")


def test_queue_retry_delete_and_bounce_from_the_command_line_reach_the_running_server(
        remote: Remote, data_template: Path, tmp_path: Path) -> None:
    data = copy_data_dir(data_template, tmp_path / "data", remote.settings("1h"))  # nothing retries by itself
    first, second = "first@servfail.test", "second@servfail.test"

    def lookups_since(moment: float) -> int:
        """MX lookups of servfail.test that reached its (failing) name server: one per delivery attempt."""
        return sum(1 for when, name, _ in remote.servfail.queries if when >= moment and name == "servfail.test")

    def attempts_are(count: int) -> dict[str, dict[str, Any]] | None:
        s = states(server)
        return s if all(s.get(r, {}).get("attempts") == count and s[r]["status"] == "queued"
                        for r in (first, second)) else None

    with serving(data) as server:
        start = time.time()
        submit_with_smtplib(server, first)
        submit_with_smtplib(server, second)
        poll(lambda: lookups_since(start) >= 1, "the first attempts asked the DNS", every=0.05)
        tried = poll(lambda: attempts_are(1), "a first (failed) attempt of both messages")
        assert all(tried[r]["next_attempt"] > time.time() + 3000 for r in (first, second))

        # `queue retry --all`: the server tries both again within a second of the command.  (It may begin
        # before the command's process has even exited: the change is committed before it tidies up.)
        asked = time.time()
        postroom(data, "queue", "retry", "--all")
        done = time.time()
        poll(lambda: lookups_since(asked) >= 1, "a lookup after `queue retry --all`", deadline=10, every=0.05)
        again = poll(lambda: attempts_are(2), "the second attempts after `queue retry --all`")
        for address in (first, second):
            assert asked <= again[address]["last_attempt"] < done + 1.0, "retried within a second of the command"

        # `queue delete ID`: gone from the queue and the spool, and never tried again.
        (doomed,) = [i["id"] for i in queue_list(server) if i["recipients"][0]["address"] == first]
        postroom(data, "queue", "delete", doomed)
        assert [i["recipients"][0]["address"] for i in queue_list(server)] == [second]
        assert not (data / "spool" / doomed).exists()
        asked = time.time()
        postroom(data, "queue", "retry", "--all")
        poll(lambda: lookups_since(asked) >= 1, "a lookup after the second `queue retry --all`", every=0.05)
        after = poll(lambda: (s := states(server)).get(second, {}).get("attempts") == 3 and s,
                     "the third attempt of the message kept")
        assert first not in after
        events = json.loads(postroom(data, "log", "--format", "json", "--limit", "0", "--text", doomed).stdout)
        mine = [e["event"] for e in events if e["queue_id"] == doomed]
        assert mine.count("deferred") == 2 and mine[-1] == "deleted", mine

        # `queue bounce ID`: the running server returns it to Alice at once, and the queue is empty.
        (kept,) = [i["id"] for i in queue_list(server)]
        postroom(data, "queue", "bounce", kept)
        returned = poll(lambda: reported_failures(data, ALICE).get(second), "the DSN after `queue bounce`",
                        deadline=10, every=0.05)
        assert returned == ["5.0.0"]                                        # RFC 3463: other, by an admin
        poll(lambda: queue_list(server) == [], "an empty queue after the bounce")
        server.stop()
