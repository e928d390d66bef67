"""Per-address connection counting shared by the SMTP, IMAP and POP3 listeners."""

from __future__ import annotations

import pytest

from engine.connections import ConnectionCounter


def test_an_address_gets_up_to_the_limit_and_slots_come_back() -> None:
    counter = ConnectionCounter(2)
    assert counter.acquire("192.0.2.1") and counter.acquire("192.0.2.1")
    assert not counter.acquire("192.0.2.1")
    assert counter.acquire("192.0.2.2")
    assert counter.total == 3
    counter.release("192.0.2.1")
    assert counter.count("192.0.2.1") == 1
    assert counter.acquire("192.0.2.1")


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address() -> None:
    counter = ConnectionCounter(1)
    assert counter.acquire("::ffff:192.0.2.1")
    assert not counter.acquire("192.0.2.1")
    counter.release("192.0.2.1")
    assert counter.total == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        ConnectionCounter(0)
