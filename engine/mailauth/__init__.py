"""Mail authentication: DKIM signing of submitted mail, and SPF, DKIM, DMARC and ARC checks of received mail.

The verdicts go into an Authentication-Results field (RFC 8601) and the delivery log, and the policy
refuses, files as Junk or only marks failing mail.  Keys live under <data>/dkim/ (see `keys`); the DNS
records that make it all work are listed by `records` for `postroom dns-records` and the DNS panel.
"""

from engine.mailauth.keys import KeyStore, Selector, SigningKey
from engine.mailauth.results import AuthResults
from engine.mailauth.service import MailAuth, Verifier
from engine.mailauth.words import describe

__all__ = ["AuthResults", "KeyStore", "MailAuth", "Selector", "SigningKey", "Verifier", "describe"]
