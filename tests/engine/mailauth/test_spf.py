"""SPF (RFC 7208) through the engine's resolver against a real DNS server on loopback."""

from __future__ import annotations

import time

import pytest

from engine.config import DNSSettings
from engine.dns import Resolver
from engine.mailauth.dnssource import ResolverSource
from engine.mailauth.spf_check import check_spf

from .conftest import DNSZone


@pytest.fixture
def source(zone: DNSZone) -> ResolverSource:
    zone.txt("bank.test", "v=spf1 mx include:_spf.mailer.test -all")
    zone.mx("bank.test", "mx.bank.test")
    zone.a("mx.bank.test", "198.51.100.7")
    zone.txt("_spf.mailer.test", "v=spf1 ip4:203.0.113.0/24 ip6:2001:db8::/32 ~all")
    zone.txt("relay.test", "v=spf1 a:out.relay.test ?all")
    zone.a("out.relay.test", "127.0.0.1")
    # Eleven includes: one more DNS mechanism than RFC 7208 §4.6.4 allows.
    zone.txt("greedy.test", "v=spf1 " + " ".join(f"include:i{n}.greedy.test" for n in range(11)) + " -all")
    for n in range(11):
        zone.txt(f"i{n}.greedy.test", "v=spf1 ip4:192.0.2.1 -all")
    # Three mechanisms pointing at names that do not exist: over the void-lookup limit of two.
    zone.txt("void.test", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all")
    zone.txt("two.test", "v=spf1 -all")
    zone.txt("two.test", "v=spf1 +all")                          # two records: permerror (§4.5)
    zone.txt("helo.relay.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.servfail("broken.test")
    zone.zone.silent.add("slow.test")
    return ResolverSource(Resolver(DNSSettings(nameservers=(("127.0.0.1", zone.port),), timeout=0.5)), 0.5)


@pytest.mark.parametrize(("ip", "sender", "result", "mechanism"), [
    ("198.51.100.7", "a@bank.test", "pass", "mx"),
    ("203.0.113.9", "a@bank.test", "pass", "include:_spf.mailer.test"),
    ("2001:db8::25", "a@bank.test", "pass", "include:_spf.mailer.test"),
    ("192.0.2.99", "a@bank.test", "fail", "-all"),
    ("127.0.0.1", "a@relay.test", "pass", "a:out.relay.test"),
    ("192.0.2.99", "a@relay.test", "neutral", "?all"),
    ("192.0.2.99", "a@nothing.test", "none", ""),
])
async def test_results_and_the_mechanism_that_decided(source: ResolverSource, ip: str, sender: str,
                                                      result: str, mechanism: str) -> None:
    checked = await check_spf(source, ip, sender, "client.test")
    assert (checked.result, checked.mechanism, checked.identity) == (result, mechanism, "mailfrom")


async def test_more_than_ten_dns_mechanisms_is_a_permerror(source: ResolverSource) -> None:
    assert (await check_spf(source, "192.0.2.99", "a@greedy.test", "x.test")).result == "permerror"


async def test_more_than_two_void_lookups_is_a_permerror(source: ResolverSource) -> None:
    assert (await check_spf(source, "192.0.2.99", "a@void.test", "x.test")).result == "permerror"


async def test_two_spf_records_is_a_permerror(source: ResolverSource) -> None:
    assert (await check_spf(source, "192.0.2.99", "a@two.test", "x.test")).result == "permerror"


async def test_the_null_sender_is_checked_by_its_helo_name(source: ResolverSource) -> None:
    checked = await check_spf(source, "127.0.0.1", "", "helo.relay.test")
    assert (checked.result, checked.identity, checked.domain) == ("pass", "helo", "helo.relay.test")
    unnamed = await check_spf(source, "127.0.0.1", "", "[127.0.0.1]")
    assert unnamed.result == "none"                            # RFC 7208 §2.3: only a real host name


async def test_dns_failures_are_temperrors_within_the_timeout(source: ResolverSource) -> None:
    assert (await check_spf(source, "192.0.2.99", "a@broken.test", "x.test")).result == "temperror"
    started = time.monotonic()
    assert (await check_spf(source, "192.0.2.99", "a@slow.test", "x.test")).result == "temperror"
    assert time.monotonic() - started < 2.0
