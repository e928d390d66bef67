"""dns_records: what a domain must publish, judged against a real DNS server on loopback.

The server is dnslib's, answering over UDP on 127.0.0.1:<ephemeral> from zone-file text; names under
`broken.test` get SERVFAIL, and a second socket that never answers stands for a nameserver that is down.
"""

from __future__ import annotations

import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from engine.config import Config, parse_config
from engine.dns_records import DIFFERENT, ERROR, MISSING, PRESENT, SPF_VALUE, Record, dmarc_value, dns_records

HOST = "mx.postroom.test"
ADDRESS = "93.184.216.34"        # a global address the SMTP listener is "on" (never bound by these tests)

ZONE = f"""
example.test.                    60 IN MX    10 {HOST}.
{HOST}.                          60 IN A     {ADDRESS}
example.test.                    60 IN TXT   "v=spf1 " "mx -all"
example.test.                    60 IN TXT   "google-site-verification=abc"
_dmarc.example.test.             60 IN TXT   "v=DMARC1;rua=mailto:postmaster@example.test;  p=quarantine"
autoconfig.example.test.         60 IN CNAME {HOST}.
_submissions._tcp.example.test.  60 IN SRV   0 1 465 {HOST}.
_submission._tcp.example.test.   60 IN SRV   0 1 587 {HOST}.
_imaps._tcp.example.test.        60 IN SRV   0 1 993 {HOST}.

other.test.                      60 IN MX    10 mx.elsewhere.test.
mx2.postroom.test.               60 IN A     192.0.2.99
other.test.                      60 IN TXT   "v=spf1 a -all"
_dmarc.other.test.               60 IN TXT   "v=DMARC1; p=none"
autoconfig.other.test.           60 IN CNAME autoconfig.elsewhere.test.
_submissions._tcp.other.test.    60 IN SRV   0 1 4650 {HOST}.
_submission._tcp.other.test.     60 IN SRV   0 1 587 mail.elsewhere.test.
_imaps._tcp.other.test.          60 IN SRV   0 1 993 mail.elsewhere.test.

bare.test.                       60 IN TXT   "google-site-verification=xyz"
"""


class _Zone(BaseResolver):  # type: ignore[misc]
    """Answers from zone text: NXDOMAIN for unknown names, SERVFAIL for anything under broken.test."""

    def __init__(self, text: str) -> None:
        self.records = RR.fromZone(textwrap.dedent(text).strip())

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).lower().rstrip(".")
        reply = request.reply()
        if name == "broken.test" or name.endswith(".broken.test"):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        matches = [rr for rr in self.records if str(rr.rname).lower().rstrip(".") == name]
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
        for rr in matches:
            if rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        return reply


class _Quiet(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    server = DNSServer(_Zone(ZONE), address="127.0.0.1", port=0, logger=_Quiet())
    server.start_thread()
    try:
        yield f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()
        server.thread.join(5)


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """A UDP port that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def config_for(tmp_path: Path, nameserver: str, hostname: str = HOST, timeout: str = "2s") -> Config:
    return parse_config(textwrap.dedent(f"""\
        hostname = "{hostname}"
        [listen]
        smtp = "{ADDRESS}:25"
        [dns]
        nameservers = ["{nameserver}"]
        timeout = "{timeout}"
        """), tmp_path)


def by_name(records: list[Record]) -> dict[tuple[str, str], Record]:
    table = {(r.kind, r.name): r for r in records}
    assert len(table) == len(records), "one record per kind and name"
    return table


def expected_names(domain: str, host: str) -> set[tuple[str, str]]:
    return {("MX", domain), ("A", host), ("TXT", domain), ("TXT", f"_dmarc.{domain}"),
            ("CNAME", f"autoconfig.{domain}"), ("SRV", f"_submissions._tcp.{domain}"),
            ("SRV", f"_submission._tcp.{domain}"), ("SRV", f"_imaps._tcp.{domain}")}


async def test_a_domain_that_publishes_everything_is_present_throughout(tmp_path: Path, nameserver: str) -> None:
    records = by_name(await dns_records(config_for(tmp_path, nameserver), "Example.Test."))
    assert set(records) == expected_names("example.test", HOST)
    assert {name: r.status for name, r in records.items()} == {name: PRESENT for name in records}
    assert records[("MX", "example.test")].value == f"10 {HOST}."
    assert records[("A", HOST)].value == ADDRESS
    spf = records[("TXT", "example.test")]
    assert spf.value == SPF_VALUE
    assert spf.found == "v=spf1 mx -all", "TXT strings are joined; other TXT records are not shown"
    dmarc = records[("TXT", "_dmarc.example.test")]
    assert dmarc.value == dmarc_value("example.test"), "tags compared without caring for order or spaces"
    assert all(r.purpose for r in records.values())


async def test_records_that_say_something_else_are_different_and_show_what_was_found(
        tmp_path: Path, nameserver: str) -> None:
    config = config_for(tmp_path, nameserver, hostname="mx2.postroom.test")
    records = by_name(await dns_records(config, "other.test"))
    assert set(records) == expected_names("other.test", "mx2.postroom.test")
    assert {name: r.status for name, r in records.items()} == {name: DIFFERENT for name in records}
    assert records[("MX", "other.test")].found == "10 mx.elsewhere.test."
    assert records[("A", "mx2.postroom.test")].found == "192.0.2.99"
    assert records[("TXT", "other.test")].found == "v=spf1 a -all"
    assert records[("TXT", "_dmarc.other.test")].found == "v=DMARC1; p=none"
    assert records[("SRV", "_submissions._tcp.other.test")].found == f"0 1 4650 {HOST}.", "wrong port"


async def test_records_that_do_not_exist_are_missing(tmp_path: Path, nameserver: str) -> None:
    config = config_for(tmp_path, nameserver, hostname="mx3.postroom.test")
    records = by_name(await dns_records(config, "bare.test"))
    assert {name: r.status for name, r in records.items()} == {name: MISSING for name in records}
    # The name has TXT records, just no SPF one: what is there is shown, so the person sees why.
    assert records[("TXT", "bare.test")].found == "google-site-verification=xyz"
    assert records[("MX", "bare.test")].found == ""


async def test_a_failing_nameserver_is_an_error_with_the_reason_never_a_guess(tmp_path: Path,
                                                                             nameserver: str) -> None:
    records = by_name(await dns_records(config_for(tmp_path, nameserver), "broken.test"))
    for (kind, name), record in records.items():
        if name.endswith("broken.test"):
            assert record.status == ERROR, (kind, name)
            assert "SERVFAIL" in record.found
        else:
            assert record.status == PRESENT, "the host's own A record still resolves"


async def test_a_nameserver_that_never_answers_is_an_error_within_the_timeout(tmp_path: Path,
                                                                             silent_nameserver: str) -> None:
    config = config_for(tmp_path, silent_nameserver, timeout="300ms")
    started = time.monotonic()
    records = await dns_records(config, "example.test")
    assert time.monotonic() - started < 3.0, "lookups run concurrently, each bounded by the timeout"
    assert {r.status for r in records} == {ERROR}
    assert all(r.found == "no answer from DNS in time" for r in records)
