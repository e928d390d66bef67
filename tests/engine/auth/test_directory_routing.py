"""Where mail to an address goes (resolve/expand) and which senders a logged-in account may use."""

from __future__ import annotations

import pytest

from engine.auth import MAX_ALIAS_DEPTH, Directory

ALICE = "alice@example.org"
BOB = "bob@example.org"


# ---------------------------------------------------------------- accounts

@pytest.mark.parametrize("address", [
    ALICE, "ALICE@EXAMPLE.ORG", "Alice@example.org.", "<alice@example.org>", '"alice"@example.org',
    "alice+news@example.org", "ALICE+News+more@example.org",
])
def test_an_account_receives_under_any_spelling_and_any_tag(example: Directory, address: str) -> None:
    assert example.resolve(address) == [ALICE]
    assert example.expand(address) == ([ALICE], [])


@pytest.mark.parametrize("address", [
    "carol@example.org", "carol@example.net", "+tag@example.org", "alice@", "alice", "", '"a b"@example.org',
    "alice@sub.example.org",
])
def test_nobody_takes_unknown_addresses(example: Directory, address: str) -> None:
    assert example.resolve(address) == []


def test_addresses_in_other_domains_are_remote(example: Directory) -> None:
    assert example.expand("Someone@Elsewhere.EXAMPLE") == ([], ["Someone@elsewhere.example"])
    assert example.resolve("someone@elsewhere.example") == []


def test_disabled_accounts_receive_nothing(example: Directory) -> None:
    example.set_enabled(ALICE, False)
    example.add_alias("@example.org", [BOB])
    assert example.resolve(ALICE) == []
    assert example.resolve("alice+tag@example.org") == []


def test_idn_domains_match_in_either_form(directory: Directory) -> None:
    directory.add_domain("bücher.example")
    directory.add_account("anna@BÜCHER.example", "pw")
    assert directory.resolve("Anna@xn--bcher-kva.example") == ["anna@xn--bcher-kva.example"]
    assert directory.resolve("anna@Bücher.Example") == ["anna@xn--bcher-kva.example"]


# ---------------------------------------------------------------- aliases

def test_an_alias_delivers_to_local_accounts_and_forwards_the_rest(example: Directory) -> None:
    example.add_alias("team@example.org", [ALICE, BOB, "friend@remote.example"])
    assert example.expand("Team@example.org") == ([ALICE, BOB], ["friend@remote.example"])
    assert example.resolve("team+urgent@example.org") == [ALICE, BOB]


def test_an_alias_skips_disabled_accounts(example: Directory) -> None:
    example.add_alias("team@example.org", [ALICE, BOB])
    example.set_enabled(BOB, False)
    assert example.resolve("team@example.org") == [ALICE]


def test_alias_chains_are_followed_and_deduplicated(example: Directory) -> None:
    example.add_alias("staff@example.org", [ALICE, "x@remote.example"])
    example.add_alias("sales@example.org", ["staff@example.org", BOB])
    example.add_alias("all@example.net", ["sales@example.org", "staff@example.org", ALICE, "x@remote.example"])
    assert example.expand("all@example.net") == ([ALICE, BOB], ["x@remote.example"])


def chain(directory: Directory, hops: int) -> str:
    """hop<hops>@example.org -> ... -> hop1@example.org -> alice: `hops` aliases to follow."""
    previous = ALICE
    for n in range(1, hops + 1):
        directory.add_alias(f"hop{n}@example.org", [previous])
        previous = f"hop{n}@example.org"
    return previous


def test_chains_up_to_the_depth_limit_resolve(example: Directory) -> None:
    assert example.resolve(chain(example, MAX_ALIAS_DEPTH)) == [ALICE]


def test_chains_beyond_the_depth_limit_do_not(example: Directory) -> None:
    assert example.resolve(chain(example, MAX_ALIAS_DEPTH + 1)) == []


def test_alias_loops_end_where_they_close(example: Directory) -> None:
    example.add_alias("a@example.org", [ALICE])
    example.add_alias("b@example.org", ["a@example.org", BOB])
    example.add_alias("a@example.org", ["b@example.org", "far@remote.example"], replace=True)   # a -> b -> a
    assert example.expand("a@example.org") == ([BOB], ["far@remote.example"])
    assert example.expand("b@example.org") == ([BOB], ["far@remote.example"])


def test_dangling_targets_deliver_nowhere(example: Directory) -> None:
    example.add_alias("team@example.org", [ALICE, BOB])
    example.remove_account(BOB)
    assert example.resolve("team@example.org") == [ALICE]


# ---------------------------------------------------------------- catch-all and postmaster

def test_the_catch_all_takes_what_nobody_else_does(example: Directory) -> None:
    example.add_alias("team@example.org", [BOB])
    example.add_alias("@example.org", [ALICE, "backup@remote.example"])
    assert example.expand("whoever@example.org") == ([ALICE], ["backup@remote.example"])
    assert example.resolve("whoever+tag@example.org") == [ALICE]
    assert example.resolve("team@example.org") == [BOB]
    assert example.resolve("bob@example.org") == [BOB]
    assert example.resolve("whoever@example.net") == []


def test_a_catch_all_pointing_into_its_own_domain_does_not_loop(example: Directory) -> None:
    example.add_alias("@example.net", [ALICE])
    example.add_alias("@example.org", ["ghost@example.net"])
    assert example.resolve("anyone@example.org") == [ALICE]


def test_postmaster_goes_to_its_alias_when_there_is_one(example: Directory) -> None:
    example.add_alias("postmaster@example.org", [BOB])
    assert example.resolve("PostMaster@example.org") == [BOB]


def test_postmaster_falls_back_to_the_domains_first_account(example: Directory) -> None:
    assert example.resolve("postmaster@example.org") == [ALICE]
    example.set_enabled(ALICE, False)
    assert example.resolve("postmaster@example.org") == [BOB]


def test_postmaster_of_a_domain_without_accounts_reaches_the_first_account_anywhere(example: Directory) -> None:
    assert example.resolve("postmaster@example.net") == [ALICE]


def test_bare_postmaster_is_accepted(example: Directory) -> None:
    # RFC 5321 §4.5.1: RCPT TO:<Postmaster> without a domain.
    assert example.resolve("Postmaster") == [ALICE]
    assert example.resolve("<postmaster>") == [ALICE]


def test_postmaster_with_no_accounts_at_all_goes_nowhere(directory: Directory) -> None:
    directory.add_domain("example.org")
    assert directory.resolve("postmaster@example.org") == []


# ---------------------------------------------------------------- sending as

def test_an_account_may_send_as_itself_its_tags_and_the_null_sender(example: Directory) -> None:
    for address in (ALICE, "ALICE@Example.ORG", "alice+lists@example.org", "", "<>"):
        assert example.may_send_as("Alice@example.org", address), address


def test_an_account_may_send_as_aliases_that_reach_it(example: Directory) -> None:
    example.add_alias("staff@example.org", [ALICE])
    example.add_alias("team@example.net", ["staff@example.org", BOB])
    for address in ("staff@example.org", "Team@example.net", "team+x@example.net"):
        assert example.may_send_as(ALICE, address), address
    assert example.may_send_as(BOB, "team@example.net")
    assert not example.may_send_as(BOB, "staff@example.org")


def test_an_account_may_not_send_as_others(example: Directory) -> None:
    example.add_alias("@example.org", [ALICE])
    example.add_alias("fwd@example.org", ["x@remote.example"])
    for address in (BOB, "bob+x@example.org", "anyone@example.org", "postmaster@example.org",
                    "fwd@example.org", "someone@remote.example", "not an address"):
        assert not example.may_send_as(ALICE, address), address


def test_unknown_accounts_may_not_send_at_all(example: Directory) -> None:
    assert not example.may_send_as("carol@example.org", "carol@example.org")
