"""All the verdicts for one received message, and the Authentication-Results field that records them.

RFC 8601: one field, our host name as the authserv-id, one clause per check (spf, every dkim signature,
dmarc, arc).  Clauses are built with `authres` so values are quoted as the grammar requires; comments
carry what a reader needs to put the verdict in words (the client's address, the DMARC policy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import authres
import authres.arc
import authres.dkim_b
import authres.dmarc

from engine.mailauth.arc import ARCResult
from engine.mailauth.dkim import DKIMResult
from engine.mailauth.dmarc import DMARCResult
from engine.mailauth.headers import fold
from engine.mailauth.spf_check import SPFResult

FIELD_NAME = "Authentication-Results"


@dataclass(frozen=True)
class AuthResults:
    spf: SPFResult
    dkim: tuple[DKIMResult, ...]
    dmarc: DMARCResult
    arc: ARCResult

    def summary(self) -> str:
        """One line for the delivery log: `spf=pass dkim=pass,fail dmarc=pass arc=none`."""
        dkim = ",".join(d.result for d in self.dkim) or "none"
        return f"spf={self.spf.result} dkim={dkim} dmarc={self.dmarc.result} arc={self.arc.result}"


_UNSAFE_COMMENT = re.compile(r"[^A-Za-z0-9 .,:@=_+/-]")


def _comment(text: str) -> str:
    """Comment text from values a sender chose: nothing that could close or nest the comment."""
    return _UNSAFE_COMMENT.sub("?", text)[:200]


_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9!#$%&'*+./=?^_`{|}~@:-]+$")


def _value(text: str) -> str:
    """A property value (RFC 8601 §2.2 pvalue): as is when it is token-like (addresses, domains and
    base64 included, as receivers commonly write them), else a quoted-string."""
    text = re.sub(r"[^\x20-\x7e]", "?", text)[:255]
    if not text or _PLAIN_VALUE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(text: str) -> str | None:
    # authres leaves any value with an "@" unquoted (right for addresses, wrong for a sentence).
    return re.sub(r"[^\x20-\x7e]", "?", text).replace("@", " at ")[:200] or None


def clauses(results: AuthResults) -> list[str]:
    """The resinfo clauses (RFC 8601 §2.2) in the order we write them."""
    out: list[str] = []
    spf = results.spf
    spf_args: dict[str, str] = {"result": spf.result}
    if spf.client_ip:
        spf_args["result_comment"] = _comment(f"sender IP is {spf.client_ip}")   # as policyd-spf writes it
    if spf.identity == "helo":
        spf_args["smtp_helo"] = _value(spf.sender or spf.domain)
    else:
        spf_args["smtp_mailfrom"] = _value(spf.sender or spf.domain)
    out.append(str(authres.SPFAuthenticationResult(**spf_args)))
    if not results.dkim:
        out.append(str(authres.DKIMAuthenticationResult(result="none")))
    for d in results.dkim:
        clause = authres.dkim_b.DKIMAuthenticationResult(
            result=d.result, reason=_reason(d.reason) if d.result != "pass" else None,
            header_d=_value(d.domain) or None, header_i=_value(d.identity) or None,
            header_b=_value(d.b) or None)
        if d.selector:
            clause.header_s = _value(d.selector)          # RFC 8601 §2.7.1 header.s, header.a
        if d.algorithm:
            clause.header_a = _value(d.algorithm)
        out.append(str(clause))
    dm = results.dmarc
    policy_comment = f"p={dm.published} dis={dm.disposition}" if dm.published else ""
    out.append(str(authres.dmarc.DMARCAuthenticationResult(
        result=dm.result, result_comment=_comment(policy_comment) or None,
        reason=_reason(dm.reason) if dm.result not in ("pass", "none") else None,
        header_from=_value(dm.from_domain) or None)))
    arc = results.arc
    out.append(str(authres.arc.ARCAuthenticationResult(
        result=arc.result,
        result_comment=_comment(f"{arc.instances} sets, sealed by {arc.domain}") if arc.instances else None,
        reason=_reason(arc.reason) if arc.result in ("fail", "temperror") else None)))
    return out


def header_field(hostname: str, results: AuthResults) -> bytes:
    """`Authentication-Results: <hostname>;` and one clause per folded line, CRLF-terminated."""
    return fold(FIELD_NAME, [hostname.lower(), *clauses(results)])


def parse(value: str) -> authres.AuthenticationResultsHeader:
    """An Authentication-Results value (with or without the field name), unfolded and parsed."""
    text = " ".join(value.split())
    context = authres.all_features()
    if text.lower().startswith(FIELD_NAME.lower() + ":"):
        return context.parse(text)
    return context.parse_value(text)
