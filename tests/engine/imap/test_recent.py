"""The \\Recent ledger for copies: each UID goes to exactly one claimant, and only once it knows the UID."""

from __future__ import annotations

from engine.imap.recent import MAX_PER_FOLDER, RecentLedger


def test_each_copy_is_recent_for_one_claimant_only() -> None:
    ledger = RecentLedger()
    key = (1, "Other", 7)
    ledger.offer(key, [3, 4, 5])
    assert ledger.count(key) == 3
    assert ledger.claim(key, upto=4) == {3, 4}          # a session that has seen UIDs up to 4
    assert ledger.claim(key, upto=4) == set()
    assert ledger.claim((1, "Other", 8), upto=99) == set()   # another UIDVALIDITY is another mailbox
    assert ledger.claim(key, upto=99) == {5}
    assert ledger.count(key) == 0


def test_the_ledger_stays_bounded() -> None:
    ledger = RecentLedger()
    ledger.offer((1, "Big", 1), range(1, MAX_PER_FOLDER + 500))
    assert ledger.count((1, "Big", 1)) == MAX_PER_FOLDER
    assert min(ledger.claim((1, "Big", 1), upto=10**9)) == 500      # the newest are kept
