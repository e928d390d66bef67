"""DMARC (RFC 7489) as pure functions: the record, the organisational domain, alignment and the verdict."""

from __future__ import annotations

import random

import pytest

from engine.mailauth.dmarc import (
    Discovered,
    DMARCSyntaxError,
    Identifier,
    aligned,
    evaluate,
    organizational_domain,
    parse_record,
    pick_record,
    worst,
)


def test_record_tags_and_defaults() -> None:
    record = parse_record("v=DMARC1; p=reject; rua=mailto:d@bank.test, https://x.test/r; adkim=s")
    assert (record.policy, record.subdomain_policy, record.adkim, record.aspf, record.pct) == (
        "reject", "reject", "s", "r", 100)
    assert record.rua == ("mailto:d@bank.test",)
    assert parse_record("v=DMARC1;p=quarantine;sp=none;pct=20").subdomain_policy == "none"


@pytest.mark.parametrize("text", ["p=reject; v=DMARC1", "v=DMARC2; p=reject", "v=DMARC1; p=block",
                                  "v=DMARC1", "v=DMARC1; p=reject; p=none", "v=DMARC1; garbage"])
def test_unusable_records_are_refused(text: str) -> None:
    with pytest.raises(DMARCSyntaxError):
        parse_record(text)


def test_a_bad_policy_with_reports_acts_as_none() -> None:
    # RFC 7489 §6.6.3 step 6
    assert parse_record("v=DMARC1; p=bogus; rua=mailto:r@bank.test").policy == "none"


def test_only_one_dmarc_record_counts() -> None:
    assert pick_record([b"spf-ish", b"v=DMARC1; p=none"]) == "v=DMARC1; p=none"
    assert pick_record([b"v=DMARC1; p=none", b"v=DMARC1; p=reject"]) is None     # two: no policy at all
    assert pick_record([]) is None


def test_organizational_domain_uses_the_public_suffix_list() -> None:
    assert organizational_domain("mail.bank.test") == "bank.test"
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("co.uk") == "co.uk"
    assert organizational_domain("MAIL.Bank.Test.") == "bank.test"


def test_alignment_relaxed_and_strict() -> None:
    assert aligned("mail.bank.test", "bank.test", "r")
    assert not aligned("mail.bank.test", "bank.test", "s")
    assert aligned("bank.test", "bank.test", "s")
    assert not aligned("bank.test.evil.test", "bank.test", "r")
    assert not aligned("a.co.uk", "b.co.uk", "r")          # public suffixes never align with each other
    assert not aligned("", "bank.test", "r")


def found(text: str, at: str = "bank.test") -> Discovered:
    return Discovered(parse_record(text), at)


def test_pass_when_spf_or_dkim_aligns() -> None:
    record = found("v=DMARC1; p=reject")
    assert evaluate("bank.test", record, Identifier("mail.bank.test", "pass"), []).result == "pass"
    assert evaluate("bank.test", record, Identifier("evil.test", "pass"),
                    [Identifier("bank.test", "pass")]).result == "pass"
    failed = evaluate("bank.test", record, Identifier("evil.test", "pass"), [Identifier("evil.test", "pass")])
    assert (failed.result, failed.policy, failed.disposition) == ("fail", "reject", "reject")


def test_subdomains_follow_sp() -> None:
    record = found("v=DMARC1; p=reject; sp=quarantine")
    assert evaluate("news.bank.test", record, None, []).policy == "quarantine"


def test_dns_failure_behind_a_check_is_never_a_fail() -> None:
    record = found("v=DMARC1; p=reject")
    verdict = evaluate("bank.test", record, Identifier("bank.test", "temperror"), [])
    assert (verdict.result, verdict.disposition) == ("temperror", "none")
    assert evaluate("bank.test", Discovered(None, error="timed out"), None, []).result == "temperror"


def test_pct_samples_failures_and_softens_the_rest() -> None:
    record = found("v=DMARC1; p=reject; pct=50")
    policies = {evaluate("bank.test", record, None, [], random.Random(seed)).policy for seed in range(40)}
    assert policies == {"reject", "quarantine"}


def test_the_worst_of_several_from_domains_is_acted_on() -> None:
    ok = evaluate("a.test", found("v=DMARC1; p=reject", "a.test"), Identifier("a.test", "pass"), [])
    bad = evaluate("b.test", found("v=DMARC1; p=quarantine", "b.test"), Identifier("a.test", "pass"), [])
    assert worst([ok, bad]) is bad
