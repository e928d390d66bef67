"""SPF, DKIM and DMARC results in words, from the Authentication-Results header our own server added.

RFC 8601 §5: a reader trusts only results whose authserv-id is its own server; anyone can put an
Authentication-Results header into a message, so headers naming another (or no) authserv-id are ignored,
and of ours only the topmost (the last one added, by us on arrival) counts.  That decision is made here;
the sentences are the engine's own (engine.mailauth.describe, the same words as the delivery log), with
this module's as a fallback when the two parses do not line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import authres

from desktop.viewer.text import one_line
from engine.mailauth import describe

PASS_RESULTS = {"pass"}
BAD_RESULTS = {"fail", "softfail", "permerror"}


@dataclass(frozen=True)
class AuthVerdict:
    method: str          # "SPF", "DKIM", "DMARC", or another method name in upper case
    result: str          # as recorded: pass, fail, softfail, neutral, none, temperror, permerror, policy
    words: str           # one sentence for a person
    good: bool | None    # True: passed, False: failed, None: no verdict either way

    @property
    def text(self) -> str:
        return f"{self.method}: {self.result} — {self.words}"


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2] if "@" in value else value


def _prop(result: object, ptype: str, name: str) -> str:
    for p in getattr(result, "properties", ()) or ():
        if str(p.type).lower() == ptype and str(p.name).lower() == name:
            return one_line(str(p.value))
    return ""


def _spf(result: str, r: object) -> str:
    domain = _domain_of(_prop(r, "smtp", "mailfrom")) or _prop(r, "smtp", "helo") or "the sender's domain"
    return {  # RFC 7208 §2.6
        "pass": f"the server that delivered it is allowed to send mail for {domain}.",
        "fail": f"{domain} says the server that delivered it may not send its mail.",
        "softfail": f"{domain} says the server that delivered it is probably not allowed to send its mail.",
        "neutral": f"{domain} makes no statement about the server that delivered it.",
        "none": f"{domain} publishes no SPF policy.",
        "temperror": "SPF could not be checked (a temporary DNS error).",
        "permerror": f"the SPF record of {domain} is broken, so nothing could be concluded.",
    }.get(result, "")


def _dkim(result: str, r: object) -> str:
    domain = _prop(r, "header", "d") or _domain_of(_prop(r, "header", "i")) or "a domain"
    return {  # RFC 8601 §2.7.1
        "pass": f"signed by {domain}, and the signature matches the message.",
        "fail": f"the signature by {domain} does not match the message (changed on the way, or forged).",
        "neutral": f"the signature by {domain} could not be judged.",
        "none": "the message is not signed.",
        "policy": f"the signature by {domain} verifies but was not accepted by local policy.",
        "temperror": "the signature could not be checked (a temporary DNS error).",
        "permerror": f"the signature by {domain} is unusable (a broken signature or key).",
    }.get(result, "")


def _dmarc(result: str, r: object) -> str:
    domain = _prop(r, "header", "from") or "the From domain"
    return {  # RFC 7489 §11.2
        "pass": f"a passing SPF or DKIM check belongs to {domain}, the domain in From.",
        "fail": f"nothing shows that this really comes from {domain}; be suspicious of it.",
        "none": f"{domain} publishes no DMARC policy.",
        "temperror": "DMARC could not be checked (a temporary DNS error).",
        "permerror": f"the DMARC record of {domain} is broken.",
    }.get(result, "")


_WORDS = {"spf": _spf, "dkim": _dkim, "dmarc": _dmarc}


def auth_verdicts(header_values: Sequence[str], authserv_id: str) -> list[AuthVerdict]:
    """Verdicts from the first Authentication-Results value (in header order) whose authserv-id is ours.

    `header_values` are the field bodies in the order they appear (topmost first).  Unparseable
    headers of ours yield one verdict saying so, rather than silence that reads as "nothing checked".
    """
    ours = authserv_id.strip().lower()
    if not ours:
        return []
    for value in header_values:
        head = value.split(";", 1)[0].strip().split()
        if not head or head[0].lower() != ours:
            continue
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(" ".join(value.split()))
        except Exception:
            return [AuthVerdict("Authentication-Results", "unreadable",
                                "this server's record of the checks could not be read.", None)]
        try:
            engine_words = describe(" ".join(value.split()))
        except Exception:
            engine_words = []
        aligned = len(engine_words) == len(parsed.results)
        verdicts: list[AuthVerdict] = []
        for index, r in enumerate(parsed.results):
            method = str(r.method).lower()
            result = str(r.result).lower()
            words_for = _WORDS.get(method)
            words = words_for(result, r) if words_for else ""
            if not words:
                words = f"{one_line(method).upper()} reported {one_line(result)}."
            if r.reason:
                words = f"{words} ({one_line(str(r.reason))})"
            if aligned and engine_words[index]:
                words = one_line(engine_words[index]) + "."
            good = True if result in PASS_RESULTS else False if result in BAD_RESULTS else None
            verdicts.append(AuthVerdict(one_line(method).upper(), one_line(result), words, good))
        return verdicts
    return []
