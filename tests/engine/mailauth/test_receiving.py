"""The MX checks every received message: SPF, DKIM, DMARC and ARC verdicts in Authentication-Results, and
the policy — refused at end of DATA, filed as Junk, or only marked — each over real SMTP on loopback."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import dkim
import pytest

from .conftest import ALICE, HOSTNAME, DNSZone, Running, SenderKey
from .mail import compose, dkim_sign, field_values

Start = Callable[..., Running]


def publish_senders(zone: DNSZone, keys: dict[str, SenderKey]) -> None:
    """The remote domains of these scenarios, each with its SPF, DKIM and DMARC records."""
    rsa, ed = keys["rsa"], keys["ed25519"]
    # bank.test: everything right, and it asks for failures to be rejected.
    zone.txt("bank.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("s1._domainkey.bank.test", rsa.record("rsa"))
    zone.txt("s2._domainkey.bank.test", ed.record("ed25519"))
    zone.txt("_dmarc.bank.test", "v=DMARC1; p=reject; rua=mailto:dmarc@bank.test")
    zone.txt("mail.bank.test", "v=spf1 ip4:127.0.0.1 -all")      # bounces come from a subdomain
    # shop.test: does not allow us (127.0.0.1), and wants failures quarantined.
    zone.txt("shop.test", "v=spf1 ip4:192.0.2.10 ~all")
    zone.txt("s1._domainkey.shop.test", rsa.record("rsa"))
    zone.txt("_dmarc.shop.test", "v=DMARC1; p=quarantine")
    # plain.test: SPF hard fail, no DMARC at all.
    zone.txt("plain.test", "v=spf1 ip4:192.0.2.10 -all")
    # watch.test: SPF fails, DMARC only monitors.
    zone.txt("watch.test", "v=spf1 -all")
    zone.txt("_dmarc.watch.test", "v=DMARC1; p=none")
    # flaky.test: its DNS fails (SERVFAIL) for SPF and DMARC.
    zone.servfail("flaky.test")
    zone.servfail("_dmarc.flaky.test")
    # lists.test: a mailing list that seals what it forwards with ARC.
    zone.txt("lists.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("s1._domainkey.lists.test", rsa.record("rsa"))


@pytest.fixture
def mx(make_engine: Start, zone: DNSZone, sender_keys: dict[str, SenderKey]) -> Running:
    publish_senders(zone, sender_keys)
    return make_engine()


def send(running: Running, sender: str, message: bytes, to: str = ALICE, helo: str = "client.remote.test") -> None:
    with running.mx(helo) as client:
        client.sendmail(sender, [to], message)


def our_results(message: bytes) -> list[str]:
    return [v for v in field_values(message, "Authentication-Results") if v.lower().startswith(HOSTNAME)]


def test_a_signed_message_from_an_allowed_server_passes_everything(mx: Running,
                                                                    sender_keys: dict[str, SenderKey]) -> None:
    message = compose("Bank <alerts@bank.test>", ALICE, "Your statement")
    message = dkim_sign(dkim_sign(message, sender_keys["rsa"], "bank.test"), sender_keys["ed25519"], "bank.test")
    send(mx, "alerts@bank.test", message)

    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert "spf=pass (sender IP is 127.0.0.1) smtp.mailfrom=alerts@bank.test" in results
    assert results.count("dkim=pass header.d=bank.test") == 2
    assert "header.a=ed25519-sha256" in results and "header.a=rsa-sha256" in results
    assert "dmarc=pass (p=reject dis=none) header.from=bank.test" in results
    assert "arc=none" in results
    # Right under our own Received line: this hop's trace, above everything that came with the message.
    assert stored.startswith(b"Received: from client.remote.test")
    starts = [line for line in stored.split(b"\r\n\r\n")[0].split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    assert starts[1].startswith(b"Authentication-Results: " + HOSTNAME.encode())
    assert message in stored                                                  # the rest untouched


def test_dmarc_reject_failure_is_refused_at_end_of_data_and_logged(mx: Running) -> None:
    # The envelope is plain.test (SPF fails for us), the From claims bank.test: nothing aligns.
    message = compose("Bank <security@bank.test>", ALICE, "Urgent: verify your account")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, "noreply@plain.test", message)
    assert (refused.value.smtp_code, refused.value.smtp_error[:6]) == (550, b"5.7.1 ")
    assert mx.folder(ALICE) == []
    row = mx.wait_for(lambda: mx.log_rows("rejected"), "the rejection in the delivery log")[-1]
    assert "dmarc=fail" in row.extra["auth"] and "spf=fail" in row.extra["auth"]
    assert any("claims to be from bank.test, but nothing proves it" in w for w in row.extra["auth_words"])


def test_dmarc_reject_setting_quarantine_files_it_as_junk(mx: Running) -> None:
    mx.configure(dmarc_reject="quarantine")
    send(mx, "noreply@plain.test", compose("Bank <security@bank.test>", ALICE, "Urgent"))
    assert mx.folder(ALICE) == []
    [junk] = mx.folder(ALICE, "Junk")
    [results] = our_results(junk)
    assert "dmarc=fail (p=reject dis=reject)" in results and "header.from=bank.test" in results


def test_dmarc_reject_setting_mark_only_marks(mx: Running) -> None:
    mx.configure(dmarc_reject="mark")
    send(mx, "noreply@plain.test", compose("Bank <security@bank.test>", ALICE, "Urgent"))
    [stored] = mx.folder(ALICE)
    assert "dmarc=fail" in our_results(stored)[0]


def test_dmarc_quarantine_failure_goes_to_junk_with_a_broken_signature(mx: Running,
                                                                     sender_keys: dict[str, SenderKey]) -> None:
    signed = dkim_sign(compose("Shop <news@shop.test>", ALICE, "Sale"), sender_keys["rsa"], "shop.test")
    tampered = signed.replace(b"See you.", b"See you!")          # changed on the way
    send(mx, "news@shop.test", tampered)

    assert mx.folder(ALICE) == []
    [junk] = mx.folder(ALICE, "Junk")
    [results] = our_results(junk)
    assert "spf=softfail" in results
    assert "dkim=fail reason=\"body hash mismatch\" header.d=shop.test" in results
    assert "dmarc=fail (p=quarantine dis=quarantine)" in results and "header.from=shop.test" in results
    row = mx.wait_for(lambda: mx.log_rows("delivered"), "the delivery in the log")[-1]
    assert row.extra["folder"] == "Junk"
    assert row.extra["auth"] == "spf=softfail dkim=fail dmarc=fail arc=none"


def test_a_valid_aligned_signature_passes_dmarc_even_when_spf_fails(mx: Running,
                                                                    sender_keys: dict[str, SenderKey]) -> None:
    # Forwarded mail: the forwarder's envelope (plain.test) fails SPF, bank.test's signature survives.
    message = dkim_sign(compose("Bank <alerts@bank.test>", ALICE, "Forwarded"), sender_keys["ed25519"],
                        "bank.test")
    send(mx, "fwd@plain.test", message)
    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert "spf=fail" in results and "dkim=pass" in results and "dmarc=pass" in results


def test_relaxed_alignment_accepts_a_subdomain_envelope(mx: Running) -> None:
    send(mx, "bounces@mail.bank.test", compose("Bank <alerts@bank.test>", ALICE, "Receipt"))
    [stored] = mx.folder(ALICE)
    assert "dmarc=pass" in our_results(stored)[0]


def test_spf_fail_without_dmarc_is_only_marked_by_default(mx: Running) -> None:
    send(mx, "someone@plain.test", compose("someone@plain.test", ALICE))
    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert "spf=fail (sender IP is 127.0.0.1) smtp.mailfrom=someone@plain.test" in results
    assert "dkim=none" in results and "dmarc=none header.from=plain.test" in results


def test_spf_fail_setting_reject_refuses_with_5_7_23(mx: Running) -> None:
    mx.configure(spf_fail="reject")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, "someone@plain.test", compose("someone@plain.test", ALICE))
    assert (refused.value.smtp_code, refused.value.smtp_error[:7]) == (550, b"5.7.23 ")


def test_spf_fail_setting_junk_files_it_as_junk(mx: Running) -> None:
    mx.configure(spf_fail="junk")
    send(mx, "someone@plain.test", compose("someone@plain.test", ALICE))
    assert len(mx.folder(ALICE, "Junk")) == 1 and mx.folder(ALICE) == []


def test_dmarc_none_policy_is_reported_not_enforced(mx: Running) -> None:
    send(mx, "x@watch.test", compose("x@watch.test", ALICE))
    [stored] = mx.folder(ALICE)
    assert "dmarc=fail (p=none dis=none)" in our_results(stored)[0]


def test_dns_failure_is_temperror_and_never_a_refusal(mx: Running) -> None:
    mx.configure(spf_fail="reject")
    send(mx, "x@flaky.test", compose("x@flaky.test", ALICE))
    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert "spf=temperror" in results and "dmarc=temperror" in results


def test_signature_without_a_published_key_is_a_permerror(mx: Running, sender_keys: dict[str, SenderKey]) -> None:
    message = dkim_sign(compose("Bank <alerts@bank.test>", ALICE), sender_keys["rsa"], "bank.test",
                        selector="gone")
    send(mx, "alerts@bank.test", message)
    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert 'dkim=permerror reason="no key published at gone._domainkey.bank.test"' in results
    assert "dmarc=pass" in results                      # SPF still passes and aligns


def test_forged_results_for_our_host_name_are_removed_and_others_kept(mx: Running) -> None:
    forged = compose("someone@plain.test", ALICE, extra=(
        f"Authentication-Results: {HOSTNAME.upper()}; spf=pass smtp.mailfrom=bank.test; dkim=pass header.d=bank.test",
        f"Authentication-Results: (looks official) {HOSTNAME} 1; dmarc=pass header.from=bank.test",
        "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=plain.test"))
    send(mx, "someone@plain.test", forged)
    [stored] = mx.folder(ALICE)
    ours = our_results(stored)
    assert len(ours) == 1 and "spf=fail" in ours[0]
    assert "mx.elsewhere.test; spf=pass smtp.mailfrom=plain.test" in field_values(stored, "Authentication-Results")
    row = mx.wait_for(lambda: mx.log_rows("delivered"), "the delivery in the log")[-1]
    assert row.extra["forged_auth_results_removed"] == 2


def test_arc_chain_from_a_mailing_list(mx: Running, sender_keys: dict[str, SenderKey]) -> None:
    original = compose("Carol <carol@nowhere.test>", ALICE, "[list] Minutes", extra=(
        "Authentication-Results: lists.test; spf=none smtp.mailfrom=carol@nowhere.test",))
    seal = dkim.arc_sign(original, b"s1", b"lists.test", sender_keys["rsa"].private, b"lists.test")
    sealed = b"".join(seal) + original
    send(mx, "list-bounces@lists.test", sealed)
    send(mx, "list-bounces@lists.test", sealed.replace(b"See you.", b"See ya."))
    first, second = mx.folder(ALICE)
    assert "arc=pass (1 sets, sealed by lists.test)" in our_results(first)[0]
    assert "arc=fail" in our_results(second)[0]


def test_mail_without_any_records_is_none_everywhere(mx: Running) -> None:
    send(mx, "a@nowhere.test", compose("a@nowhere.test", ALICE))
    [stored] = mx.folder(ALICE)
    [results] = our_results(stored)
    assert "spf=none" in results and "dkim=none" in results and "dmarc=none" in results
