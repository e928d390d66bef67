"""Authentication-Results (RFC 8601) in words, trusting only our own server's header."""

from __future__ import annotations

from desktop.viewer.authresults import auth_verdicts

OURS = "mx.example.test"


def test_only_the_topmost_header_of_our_own_server_counts() -> None:
    verdicts = auth_verdicts([
        "evil.test; dmarc=pass header.from=bank.test",
        f"{OURS}; spf=softfail smtp.mailfrom=bob@bank.test; dkim=none; dmarc=fail header.from=bank.test",
        f"{OURS}; spf=pass smtp.mailfrom=bob@bank.test",
    ], OURS)
    assert [v.text for v in verdicts] == [
        "SPF: softfail — claims to be from bank.test, but bank.test's SPF says the sending server is probably "
        "not allowed to send for it.",
        "DKIM: none — not signed (no DKIM signature).",
        "DMARC: fail — claims to be from bank.test, but nothing proves it.",
    ]
    assert [v.good for v in verdicts] == [False, None, False]


def test_case_of_the_authserv_id_does_not_matter() -> None:
    assert auth_verdicts(["MX.Example.TEST; dkim=pass header.d=x.test"], OURS)[0].good is True


def test_nothing_from_us_means_no_verdicts() -> None:
    assert auth_verdicts(["other.test; spf=pass"], OURS) == []
    assert auth_verdicts([f"{OURS}; spf=pass"], "") == []


def test_unreadable_header_of_ours_is_said_so() -> None:
    (v,) = auth_verdicts([f"{OURS}; ;;= garbage ("], OURS)
    assert v.result == "unreadable"


def test_words_of_our_own_when_the_engine_has_none() -> None:
    (v,) = auth_verdicts([f"{OURS}; arc=none"], OURS)
    assert v.text == "ARC: none — ARC reported none."
    (v,) = auth_verdicts([f"{OURS}; x-custom=pass"], OURS)
    assert (v.method, v.good) == ("X-CUSTOM", True)


def test_sender_controlled_words_are_escaped() -> None:
    (v,) = auth_verdicts([f"{OURS}; dkim=pass header.d=bank.test\u202e"], OURS)
    assert "\u202e" not in v.text
