"""The auth-failure limiter shared by SMTP, IMAP and POP3, on a clock the test turns by hand."""

from __future__ import annotations

import pytest

from engine.auth import AuthFailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> AuthFailureLimiter:
    return AuthFailureLimiter(max_failures=5, window=300.0, clock=clock)


def test_the_first_failures_cost_nothing_then_delays_grow(limiter: AuthFailureLimiter) -> None:
    delays = []
    for _ in range(5):
        delays.append(limiter.delay("192.0.2.1"))
        limiter.failure("192.0.2.1")
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] > 0 and delays[2:] == sorted(delays[2:]) and delays[4] > delays[2]


def test_delays_are_capped() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(max_failures=100, window=300.0, clock=clock, max_delay=15.0)
    for _ in range(50):
        limiter.failure("192.0.2.1")
    assert limiter.delay("192.0.2.1") == 15.0


def test_too_many_failures_block_until_the_window_passes(limiter: AuthFailureLimiter, clock: Clock) -> None:
    for _ in range(4):
        limiter.failure("192.0.2.1")
        clock.now += 10
    assert not limiter.blocked("192.0.2.1")
    limiter.failure("192.0.2.1")
    assert limiter.blocked("192.0.2.1")
    assert not limiter.blocked("192.0.2.2")
    clock.now += 300 - 40             # the first failure has left the window
    assert not limiter.blocked("192.0.2.1")
    assert limiter.failures("192.0.2.1") == 4


def test_success_forgives(limiter: AuthFailureLimiter) -> None:
    for _ in range(5):
        limiter.failure("192.0.2.1")
    limiter.success("192.0.2.1")
    assert not limiter.blocked("192.0.2.1")
    assert limiter.delay("192.0.2.1") == 0.0


def test_loopback_is_not_exempt(limiter: AuthFailureLimiter) -> None:
    for ip in ("127.0.0.1", "::1"):
        for _ in range(5):
            limiter.failure(ip)
        assert limiter.blocked(ip)


def test_an_ipv6_host_cannot_rotate_through_its_64(limiter: AuthFailureLimiter) -> None:
    for n in range(5):
        limiter.failure(f"2001:db8:1:2::{n + 1:x}")
    assert limiter.blocked("2001:db8:1:2:ffff::1")
    assert not limiter.blocked("2001:db8:1:3::1")


def test_ipv4_mapped_addresses_count_as_ipv4(limiter: AuthFailureLimiter) -> None:
    for _ in range(5):
        limiter.failure("::ffff:192.0.2.7")
    assert limiter.blocked("192.0.2.7")


def test_memory_stays_bounded(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock=clock, max_addresses=100)
    for n in range(1000):
        limiter.failure(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.failures("10.0.3.231") == 1       # the most recent are kept
    assert limiter.failures("10.0.0.0") == 0


def test_expired_addresses_are_dropped(limiter: AuthFailureLimiter, clock: Clock) -> None:
    limiter.failure("192.0.2.1")
    clock.now += 301
    assert limiter.failures("192.0.2.1") == 0
    assert len(limiter) == 0


def test_unparseable_addresses_still_count(limiter: AuthFailureLimiter) -> None:
    for _ in range(5):
        limiter.failure("unix-socket")
    assert limiter.blocked("unix-socket")


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AuthFailureLimiter(max_failures=0)
