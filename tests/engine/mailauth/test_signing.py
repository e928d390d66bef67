"""DKIM signing of submitted mail: a local user's message reaches a remote MX (the sink) through the queue
with an ed25519 and an RSA signature that an independent verifier (dkimpy over the test zone) accepts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import dkim
import dns.resolver
import pytest

from engine.mailauth.keys import KeyStore

from .conftest import ALICE, BOB, HOSTNAME, DNSZone, Running
from .mail import compose, field_values

Start = Callable[..., Running]


def zone_dnsfunc(zone: DNSZone) -> Callable[..., bytes | None]:
    """dkimpy's dnsfunc over the test's DNS server (so the check is independent of our resolver code)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = zone.port
    resolver.lifetime = 2.0

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return dnsfunc


@pytest.fixture
def signing(make_engine: Start, zone: DNSZone) -> Running:
    running = make_engine()
    store = KeyStore(running.data_dir)
    store.new("home.test")                      # what `postroom dkim new home.test` does
    zone.publish_keys(store, "home.test")
    zone.mx("remote.test", "mx.remote.test")
    zone.a("mx.remote.test")
    return running


def delivered(running: Running, count: int = 1) -> list[bytes]:
    sink = running.sink
    running.wait_for(lambda: len(sink.received) >= count, "delivery to the remote MX")
    return [m.content for m in sink.received]


def test_submitted_mail_arrives_with_valid_ed25519_and_rsa_signatures(signing: Running, zone: DNSZone) -> None:
    with signing.submission() as client:
        client.sendmail(ALICE, ["carol@remote.test"], compose("Alice <alice@home.test>", "carol@remote.test"))
    [message] = delivered(signing)

    signatures = field_values(message, "DKIM-Signature")
    assert len(signatures) == 2
    today = datetime.now(UTC).strftime("%Y%m%d")
    tags = [dict(re.findall(r"(\w+)=([^;]*)", sig.replace(" ", ""))) for sig in signatures]
    assert [(t["a"], t["s"], t["d"], t["c"]) for t in tags] == [
        ("ed25519-sha256", f"pr{today}e", "home.test", "relaxed/relaxed"),
        ("rsa-sha256", f"pr{today}r", "home.test", "relaxed/relaxed")]
    signed = tags[0]["h"].split(":")
    assert signed.count("from") == 2 and signed.count("subject") == 2 and "cc" in signed   # oversigned

    verifier = dkim.DKIM(message)
    assert verifier.verify(0, dnsfunc=zone_dnsfunc(zone))
    assert verifier.verify(1, dnsfunc=zone_dnsfunc(zone))


def test_oversigning_stops_an_added_header_and_a_changed_body(signing: Running, zone: DNSZone) -> None:
    with signing.submission() as client:
        client.sendmail(ALICE, ["carol@remote.test"], compose("Alice <alice@home.test>", "carol@remote.test"))
    [message] = delivered(signing)
    dnsfunc = zone_dnsfunc(zone)

    injected = message.replace(b"\r\nSubject:", b"\r\nSubject: Pay this invoice now\r\nSubject:", 1)
    assert not dkim.DKIM(injected).verify(0, dnsfunc=dnsfunc)
    with pytest.raises(dkim.ValidationError, match="body hash"):
        dkim.DKIM(message.replace(b"See you.", b"See me.")).verify(1, dnsfunc=dnsfunc)


def test_a_domain_without_keys_sends_unsigned(make_engine: Start, zone: DNSZone) -> None:
    running = make_engine()
    zone.mx("remote.test", "mx.remote.test")
    zone.a("mx.remote.test")
    with running.submission() as client:
        client.sendmail(ALICE, ["carol@remote.test"], compose("alice@home.test", "carol@remote.test"))
    [message] = delivered(running)
    assert field_values(message, "DKIM-Signature") == []


def test_submission_is_never_checked_against_our_own_spf(signing: Running, zone: DNSZone) -> None:
    # Our own policy says nobody may send for home.test and failures are rejected: a user submitting
    # from anywhere (here 127.0.0.1) must still get through, and no SPF verdict is recorded.
    zone.txt("home.test", "v=spf1 -all")
    zone.txt("_dmarc.home.test", "v=DMARC1; p=reject")
    signing.configure(spf_fail="reject")
    forged = compose("Alice <alice@home.test>", BOB, extra=(f"Authentication-Results: {HOSTNAME}; dmarc=pass",))
    with signing.submission() as client:
        client.sendmail(ALICE, [BOB], forged)
    [stored] = signing.folder(BOB)
    assert field_values(stored, "Authentication-Results") == []             # forged one removed, none added
    assert len(field_values(stored, "DKIM-Signature")) == 2


def test_rotation_keeps_the_old_selector_published_and_signs_with_the_new(signing: Running, zone: DNSZone) -> None:
    store = KeyStore(signing.data_dir)
    old = {s.selector for s in store.published("home.test")}
    new = {s.selector for s in store.rotate("home.test", retention=3600.0)}
    zone.publish_keys(store, "home.test")
    assert old.isdisjoint(new)
    assert {s.selector for s in store.published("home.test")} == old | new
    assert {s.selector for s in store.published("home.test", now=time.time() + 7200)} == new

    with signing.submission() as client:                   # the running server sees the new keys at once
        client.sendmail(ALICE, ["carol@remote.test"], compose("alice@home.test", "carol@remote.test"))
    [message] = delivered(signing)
    used = {dict(re.findall(r"(\w+)=([^;]*)", sig.replace(" ", "")))["s"]
            for sig in field_values(message, "DKIM-Signature")}
    assert used == new
    verifier = dkim.DKIM(message)
    assert verifier.verify(0, dnsfunc=zone_dnsfunc(zone)) and verifier.verify(1, dnsfunc=zone_dnsfunc(zone))


def test_a_message_dkimpy_cannot_read_is_sent_unsigned_not_held(signing: Running) -> None:
    odd = b"From: alice@home.test\r\nTo: carol@remote.test\r\nthis line is no header field\r\nSubject: x\r\n\r\nHi\r\n"
    with signing.submission() as client:
        client.sendmail(ALICE, ["carol@remote.test"], odd)
    [message] = delivered(signing)
    assert field_values(message, "DKIM-Signature") == []
    row = signing.wait_for(lambda: signing.log_rows("received"), "the submission in the log")[-1]
    assert "Unexpected characters" in row.extra["dkim_error"]
