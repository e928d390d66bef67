"""Syntax rules for what the directory stores and what it is asked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.auth import DirectoryError, names


@pytest.mark.parametrize(("given_name", "stored"), [
    ("example.org", "example.org"),
    ("EXAMPLE.Org", "example.org"),
    ("example.org.", "example.org"),
    ("Bücher.Example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("localhost", "localhost"),
])
def test_domains_are_stored_as_lower_case_a_labels(given_name: str, stored: str) -> None:
    assert names.domain(given_name) == stored


@pytest.mark.parametrize("bad", [
    "", ".", "a..b", "-a.org", "a-.org", "exa_mple.org", "a b.org", "[127.0.0.1]", "1.2.3.4",
    "x" * 64 + ".org", ("a" * 60 + ".") * 5 + "org", "xn--zz.org", "user@example.org",
])
def test_bad_domains_are_refused_with_a_sentence(bad: str) -> None:
    with pytest.raises(DirectoryError) as info:
        names.domain(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("local", "stored"), [
    ("Alice", "alice"), ("first.last", "first.last"), ("o'hara", "o'hara"), ("x_y-z", "x_y-z"),
])
def test_account_local_parts_are_dot_atoms_stored_lower_case(local: str, stored: str) -> None:
    assert names.account_local_part(local) == stored


@pytest.mark.parametrize("bad", [
    "", ".a", "a.", "a..b", '"quoted"', "a b", "a@b", "a+tag", "ü", "x" * 65, "a,b", "(c)a",
])
def test_bad_account_local_parts_are_refused(bad: str) -> None:
    with pytest.raises(DirectoryError):
        names.account_local_part(bad)


@pytest.mark.parametrize(("address", "key"), [
    ("alice@example.org", ("alice", "example.org")),
    ("ALICE@EXAMPLE.ORG", ("alice", "example.org")),
    ("<alice@example.org>", ("alice", "example.org")),
    ('"alice"@example.org', ("alice", "example.org")),
    ('"al\\ice"@example.org', ("alice", "example.org")),
    ("alice@Bücher.example", ("alice", "xn--bcher-kva.example")),
    ("alice+tag@example.org", ("alice+tag", "example.org")),
])
def test_lookup_keys_are_lenient_about_what_arrives(address: str, key: tuple[str, str]) -> None:
    assert names.lookup_key(address) == key


@pytest.mark.parametrize("address", ["alice", "", "@example.org", '"a b"@example.org', "a@b_c.org", "a@"])
def test_lookup_keys_for_unusable_addresses_are_none(address: str) -> None:
    assert names.lookup_key(address) is None


@given(st.text(max_size=80))
def test_lookup_key_never_raises(text: str) -> None:
    names.lookup_key(text)


@pytest.mark.parametrize(("local", "base"), [("a+b", "a"), ("a+b+c", "a"), ("a", None), ("+b", None)])
def test_subaddress_base(local: str, base: str | None) -> None:
    assert names.base_local_part(local) == base
