"""What happens to a received message given its verdicts and the `[authentication]` settings.

RFC 7489 §6.6.2 leaves enforcement to the receiver; ours:
- DMARC fails and the domain says p=reject: refused with 550 5.7.1 (setting `dmarc_reject = "reject"`),
  or delivered to Junk (`"quarantine"`), or only marked (`"mark"`);
- DMARC fails and the domain says p=quarantine: delivered to the recipient's Junk folder;
- SPF fails (hard, `-all`) and the domain has no usable DMARC policy: `spf_fail` decides — marked
  (the default, RFC 7208 §8.4 allows but does not require refusal), Junk, or refused with 550 5.7.23;
- anything that could not be checked because DNS failed (temperror) is only marked, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import AuthenticationSettings
from engine.mailauth.results import AuthResults
from engine.smtp.codes import Reply

DELIVER = "deliver"
JUNK = "junk"
REFUSE = "refuse"
JUNK_FOLDER = "Junk"

# RFC 7489 §7.2 leaves the code open; 5.7.1 "delivery not authorized, message refused" (RFC 3463 §3.8).
DMARC_REFUSED = Reply(550, "5.7.1", "Message refused: it fails the DMARC policy of its From domain")
# RFC 7372 §3.2: 5.7.23 "SPF validation failed".
SPF_REFUSED = Reply(550, "5.7.23", "Message refused: the sender's SPF policy does not allow this server")


@dataclass(frozen=True)
class Decision:
    action: str                  # deliver | junk | refuse
    reason: str = ""
    reply: Reply | None = None


def decide(results: AuthResults, settings: AuthenticationSettings) -> Decision:
    dmarc = results.dmarc
    if dmarc.result == "fail":
        domain = dmarc.from_domain
        if dmarc.policy == "reject":
            why = f"fails the DMARC policy of {domain} (p=reject)"
            if settings.dmarc_reject == "reject":
                return Decision(REFUSE, why, DMARC_REFUSED.with_text(
                    f"Message refused: it fails the DMARC policy of {domain}, which asks for such mail "
                    f"to be rejected"))
            if settings.dmarc_reject == "quarantine":
                return Decision(JUNK, why)
            return Decision(DELIVER, why)
        if dmarc.policy == "quarantine":
            return Decision(JUNK, f"fails the DMARC policy of {domain} (p=quarantine)")
        return Decision(DELIVER, f"fails the DMARC policy of {domain} (p=none: report only)")
    if dmarc.result in ("none", "permerror") and results.spf.result == "fail":
        domain = results.spf.domain
        why = f"{domain}'s SPF does not allow {results.spf.client_ip} to send for it"
        if settings.spf_fail == "reject":
            return Decision(REFUSE, why, SPF_REFUSED.with_text(
                f"Message refused: {domain}'s SPF policy does not allow {results.spf.client_ip} to send for it"))
        if settings.spf_fail == "junk":
            return Decision(JUNK, why)
        return Decision(DELIVER, why)
    return Decision(DELIVER)
