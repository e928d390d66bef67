"""Routing from DNS: MX order, the implicit MX, null MX, and which failures bounce and which retry."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from engine.config import DNSSettings
from engine.dns import MXHost, Resolver, RouteError, order_mx

from .conftest import load_loopback

lb = load_loopback()

ZONE = """
    accept.test.        0 IN MX 10 mx1.accept.test.
    accept.test.        0 IN MX 20 mx2.accept.test.
    mx1.accept.test.    0 IN A 127.0.0.1
    mx1.accept.test.    0 IN AAAA ::1
    mx2.accept.test.    0 IN A 127.0.0.2
    bare.test.          0 IN A 127.0.0.1
    bare.test.          0 IN TXT "v=spf1 -all"
    nomail.test.        0 IN TXT "nothing here"
    null.test.          0 IN MX 0 .
    dangling.test.      0 IN MX 10 gone.dangling.test.
    halfbroken.test.    0 IN MX 10 gone.dangling.test.
    halfbroken.test.    0 IN MX 20 mx1.accept.test.
    flaky-mx.test.      0 IN MX 10 mx.broken.test.
    equal.test.         0 IN MX 10 a.equal.test.
    equal.test.         0 IN MX 10 b.equal.test.
    equal.test.         0 IN MX 10 c.equal.test.
    a.equal.test.       0 IN A 127.0.0.1
    b.equal.test.       0 IN A 127.0.0.1
    c.equal.test.       0 IN A 127.0.0.1
"""


@pytest.fixture
def zone_server() -> Iterator[Any]:
    zone = lb.Zone(ZONE, servfail={"broken.test", "mx.broken.test"}, silent={"slow.test"})
    server = lb.ZoneServer(zone).start()
    yield server
    server.stop()


@pytest.fixture
def resolver(zone_server: Any) -> Resolver:
    return Resolver(DNSSettings(nameservers=(("127.0.0.1", zone_server.port),), timeout=1.0),
                    rng=random.Random(7))


async def test_mx_hosts_come_in_preference_order_with_their_addresses(resolver: Resolver) -> None:
    route = await resolver.route("Accept.Test")
    assert not route.implicit
    assert route.hosts == (MXHost("mx1.accept.test", 10, ("127.0.0.1", "::1")),
                           MXHost("mx2.accept.test", 20, ("127.0.0.2",)))


async def test_no_mx_falls_back_to_the_domains_own_address(resolver: Resolver) -> None:
    route = await resolver.route("bare.test")
    assert route.implicit
    assert route.hosts == (MXHost("bare.test", 0, ("127.0.0.1",)),)


async def test_a_domain_without_mx_or_address_bounces(resolver: Resolver) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("nomail.test")
    assert info.value.permanent


async def test_null_mx_bounces(resolver: Resolver) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("null.test")
    assert info.value.permanent
    assert info.value.status == "5.1.10"
    assert "null MX" in str(info.value)


async def test_nxdomain_bounces(resolver: Resolver) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("no-such-domain.test")
    assert info.value.permanent
    assert "does not exist" in str(info.value)


async def test_servfail_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("broken.test")
    assert not info.value.permanent
    assert info.value.status.startswith("4.")


async def test_a_dns_timeout_is_temporary(zone_server: Any) -> None:
    resolver = Resolver(DNSSettings(nameservers=(("127.0.0.1", zone_server.port),), timeout=0.3))
    with pytest.raises(RouteError) as info:
        await resolver.route("slow.test")
    assert not info.value.permanent
    assert "timed out" in str(info.value)


async def test_mx_records_that_do_not_resolve_never_fall_back_to_a(resolver: Resolver,
                                                                    zone_server: Any) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("dangling.test")
    assert info.value.permanent
    assert ("dangling.test", "A") not in zone_server.zone.queries


async def test_an_mx_host_whose_lookup_fails_temporarily_defers(resolver: Resolver) -> None:
    with pytest.raises(RouteError) as info:
        await resolver.route("flaky-mx.test")
    assert not info.value.permanent


async def test_hosts_that_do_resolve_are_kept_when_others_do_not(resolver: Resolver) -> None:
    route = await resolver.route("halfbroken.test")
    assert [h.name for h in route.hosts] == ["mx1.accept.test"]


async def test_equal_preferences_are_shuffled(zone_server: Any) -> None:
    orders = set()
    for seed in range(12):
        resolver = Resolver(DNSSettings(nameservers=(("127.0.0.1", zone_server.port),), timeout=1.0),
                            rng=random.Random(seed))
        route = await resolver.route("equal.test")
        orders.add(tuple(h.name for h in route.hosts))
    assert len(orders) > 1
    assert all(sorted(order) == ["a.equal.test", "b.equal.test", "c.equal.test"] for order in orders)


async def test_address_literals_route_to_the_address(resolver: Resolver) -> None:
    route = await resolver.route("[127.0.0.1]")
    assert route.hosts[0].addresses == ("127.0.0.1",)
    route = await resolver.route("[IPv6:::1]")
    assert route.hosts[0].addresses == ("::1",)


def test_order_mx_sorts_by_preference_and_drops_duplicates() -> None:
    ordered = order_mx([(20, "b"), (10, "a"), (20, "b"), (5, "c")], random.Random(1))
    assert ordered == [(5, "c"), (10, "a"), (20, "b")]
