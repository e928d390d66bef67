"""Admin operations on domains, accounts and aliases, and the one-line errors they give."""

from __future__ import annotations

import pytest

from engine.auth import Account, Alias, Directory, DirectoryError
from engine.events import DirectoryChanged, Event


def one_line_error(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(DirectoryError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    message = str(info.value)
    assert message and "\n" not in message
    return message


# ---------------------------------------------------------------- domains

def test_domains_are_added_listed_and_recognised(directory: Directory) -> None:
    assert directory.add_domain("Example.ORG") == "example.org"
    assert directory.add_domain("bücher.example") == "xn--bcher-kva.example"
    assert directory.list_domains() == ["example.org", "xn--bcher-kva.example"]
    for name in ("example.org", "EXAMPLE.org.", "Bücher.example", "xn--bcher-kva.example"):
        assert directory.is_local_domain(name)
    for name in ("example.net", "sub.example.org", "", "not a domain"):
        assert not directory.is_local_domain(name)


def test_a_domain_is_added_once_whatever_its_spelling(directory: Directory) -> None:
    directory.add_domain("bücher.example")
    assert "already exists" in one_line_error(directory.add_domain, "XN--BCHER-KVA.example")


def test_invalid_domains_are_refused(directory: Directory) -> None:
    assert "not a valid domain" in one_line_error(directory.add_domain, "exa_mple.org")
    assert directory.list_domains() == []


def test_removing_an_unknown_domain_is_an_error(directory: Directory) -> None:
    assert "no domain" in one_line_error(directory.remove_domain, "example.org")


def test_an_empty_domain_is_removed(directory: Directory) -> None:
    directory.add_domain("example.org")
    directory.remove_domain("EXAMPLE.org")
    assert directory.list_domains() == []


def test_a_domain_with_accounts_is_kept_unless_forced(example: Directory) -> None:
    message = one_line_error(example.remove_domain, "example.org")
    assert "2 account(s)" in message
    assert example.is_local_domain("example.org")
    example.add_alias("sales@example.net", ["alice@example.org"])
    assert "1 alias(es)" in one_line_error(example.remove_domain, "example.net")

    example.remove_domain("example.org", force=True)
    assert example.list_domains() == ["example.net"]
    assert example.list_accounts() == []
    assert example.get_account("alice@example.org") is None


# ---------------------------------------------------------------- accounts

def test_accounts_are_stored_lower_case_with_their_quota(example: Directory) -> None:
    created = example.add_account("Carol.Jones@EXAMPLE.net", "pw", quota=10_000_000)
    assert created == Account("carol.jones@example.net", enabled=True, quota=10_000_000)
    assert example.get_account("CAROL.JONES@example.net") == created
    assert example.list_accounts() == [
        Account("carol.jones@example.net", True, 10_000_000),
        Account("alice@example.org", True, None),
        Account("bob@example.org", True, None),
    ]
    assert example.list_accounts("example.net") == [created]


def test_an_account_needs_its_domain(directory: Directory) -> None:
    assert "add the domain first" in one_line_error(directory.add_account, "a@example.org", "pw")


def test_duplicate_accounts_are_refused_case_insensitively(example: Directory) -> None:
    assert "already exists" in one_line_error(example.add_account, "ALICE@example.org", "pw")


@pytest.mark.parametrize("address", [
    "alice", "@example.org", "a+b@example.org", '"a b"@example.org', "a..b@example.org", "a@b@example.org",
])
def test_account_names_must_be_plain_dot_atoms(example: Directory, address: str) -> None:
    one_line_error(example.add_account, address, "pw")


@pytest.mark.parametrize("password", ["", "a\x00b", "x" * 5000])
def test_unusable_passwords_are_refused(example: Directory, password: str) -> None:
    one_line_error(example.add_account, "carol@example.org", password)
    one_line_error(example.set_password, "alice@example.org", password)
    assert example.get_account("carol@example.org") is None


@pytest.mark.parametrize("quota", [0, -1, True, 1.5, "10M"])
def test_quotas_are_positive_byte_counts_or_none(example: Directory, quota: object) -> None:
    one_line_error(example.set_quota, "alice@example.org", quota)
    one_line_error(example.add_account, "carol@example.org", "pw", quota=quota)


def test_quota_enable_and_password_changes(example: Directory) -> None:
    example.set_quota("alice@example.org", 5000)
    example.set_enabled("alice@example.org", False)
    assert example.get_account("alice@example.org") == Account("alice@example.org", False, 5000)
    example.set_quota("alice@example.org", None)
    example.set_enabled("alice@example.org", True)
    assert example.get_account("alice@example.org") == Account("alice@example.org", True, None)
    example.set_password("alice@example.org", "new-secret")
    assert example.authenticate("alice@example.org", "new-secret") is not None
    assert example.authenticate("alice@example.org", "alice-secret") is None


@pytest.mark.parametrize("operation", [
    lambda d: d.remove_account("nobody@example.org"),
    lambda d: d.set_password("nobody@example.org", "pw"),
    lambda d: d.set_enabled("nobody@example.org", False),
    lambda d: d.set_quota("nobody@example.org", 10),
    lambda d: d.list_accounts("example.com"),
])
def test_operations_on_unknown_names_are_errors(example: Directory, operation: object) -> None:
    assert "no " in one_line_error(operation, example)


def test_removed_accounts_are_gone(example: Directory) -> None:
    example.remove_account("Alice@Example.org")
    assert example.get_account("alice@example.org") is None
    assert [a.address for a in example.list_accounts()] == ["bob@example.org"]
    assert example.authenticate("alice@example.org", "alice-secret") is None


# ---------------------------------------------------------------- aliases

def test_aliases_are_stored_normalised_and_deduplicated(example: Directory) -> None:
    alias = example.add_alias("Team@Example.org", ["ALICE@example.org", "bob@example.org",
                                                  "alice@example.org", "Friend@Remote.EXAMPLE"])
    assert alias == Alias("team@example.org", ("alice@example.org", "bob@example.org", "Friend@remote.example"))
    example.add_alias("@example.net", ["bob@example.org"])
    assert example.list_aliases() == [Alias("@example.net", ("bob@example.org",)), alias]


def test_duplicate_aliases_are_refused_unless_replacing(example: Directory) -> None:
    example.add_alias("team@example.org", ["alice@example.org"])
    assert "already exists" in one_line_error(example.add_alias, "TEAM@example.org", ["bob@example.org"])
    example.add_alias("team@example.org", ["bob@example.org"], replace=True)
    assert example.list_aliases() == [Alias("team@example.org", ("bob@example.org",))]


@pytest.mark.parametrize(("source", "targets", "why"), [
    ("team@example.com", ["alice@example.org"], "add the domain first"),
    ("alice@example.org", ["bob@example.org"], "is an account"),
    ("team@example.org", [], "at least one target"),
    ("team@example.org", "alice@example.org", "at least one target"),
    ("team@example.org", ["team@example.org"], "itself"),
    ("team@example.org", ["nobody@example.org"], "neither an account nor an alias"),
    ("team@example.org", ["not an address"], "user@domain"),
    ("team@example.org", ["x@bad_domain.org"], "not a valid domain"),
    ("a+b@example.org", ["alice@example.org"], "sub-addresses"),
])
def test_bad_aliases_are_refused(example: Directory, source: str, targets: object, why: str) -> None:
    assert why in one_line_error(example.add_alias, source, targets)
    assert example.list_aliases() == []


def test_an_account_cannot_take_an_alias_name(example: Directory) -> None:
    example.add_alias("team@example.org", ["alice@example.org"])
    assert "already an alias" in one_line_error(example.add_account, "team@example.org", "pw")


def test_local_targets_may_be_tags_disabled_accounts_or_catch_all_covered(example: Directory) -> None:
    example.set_enabled("bob@example.org", False)
    example.add_alias("a@example.org", ["alice+lists@example.org", "bob@example.org", "postmaster@example.org"])
    example.add_alias("@example.net", ["alice@example.org"])
    example.add_alias("b@example.org", ["anything@example.net"])


def test_removing_aliases(example: Directory) -> None:
    example.add_alias("@example.org", ["alice@example.org"])
    example.remove_alias("@EXAMPLE.org")
    assert example.list_aliases() == []
    assert "no alias" in one_line_error(example.remove_alias, "@example.org")


# ---------------------------------------------------------------- notifications

def test_every_change_is_announced_and_failures_are_not(example: Directory, events: list[Event]) -> None:
    events.clear()
    example.set_quota("alice@example.org", 100)
    example.add_alias("team@example.org", ["alice@example.org"])
    with pytest.raises(DirectoryError):
        example.add_alias("team@example.org", ["alice@example.org"])
    example.resolve("team@example.org")
    assert events == [DirectoryChanged(), DirectoryChanged()]
