"""Authentication verdicts in words, for the message viewer and the delivery log.

`describe` is a pure function: give it the value of an Authentication-Results field (or the
`AuthResults` the verifier produced) and it returns one sentence per check, e.g. "signed by bank.test
and the signature is valid", or "claims to be from bank.test, but bank.test's SPF does not allow
203.0.113.5 to send for it".  It does not decide whose field to trust: callers pass only our own
(RFC 8601 §5; the viewer compares the authserv-id with our host name, see `headers.authserv_id`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from engine.mailauth.results import AuthResults, clauses, parse

_IP_COMMENT = re.compile(r"sender IP is ([0-9A-Fa-f:.]+)")
_POLICY_COMMENT = re.compile(r"\bp=(none|quarantine|reject)\b")


def clause_comments(value: str) -> list[str]:
    """The first comment of each resinfo clause (RFC 8601 §2.2), in order; "" where there is none.

    authres drops comments when parsing, but the client's address and the DMARC policy live in them.
    The field's first segment (the authserv-id) is skipped, so the list lines up with the results.
    """
    segments: list[str] = []
    comment = ""
    depth = 0
    quoted = escaped = False
    current: list[str] = []
    for ch in value:
        if escaped:
            escaped = False
            if depth:
                current.append(ch)
            continue
        if ch == "\\":
            escaped = True
            continue
        if quoted:
            quoted = ch != '"'
            continue
        if depth:
            if ch == ")":
                depth -= 1
                if depth == 0 and not comment:
                    comment = "".join(current).strip()
                    continue
            elif ch == "(":
                depth += 1
            current.append(ch)
            continue
        if ch == "(":
            depth = 1
            current = []
        elif ch == '"':
            quoted = True
        elif ch == ";":
            segments.append(comment)
            comment = ""
    segments.append(comment)
    return segments[1:]


def _prop(result: Any, ptype: str, name: str) -> str:
    for prop in getattr(result, "properties", None) or ():
        if str(prop.type).lower() == ptype and str(prop.name).lower() == name:
            return str(prop.value)
    return ""


def _domain(value: str) -> str:
    return value.rpartition("@")[2].lower() if value else ""


def _spf(result: str, r: Any, comment: str) -> str:
    mailfrom = _prop(r, "smtp", "mailfrom")
    domain = _domain(mailfrom) or _prop(r, "smtp", "helo").lower() or "the sender's domain"
    m = _IP_COMMENT.search(comment)
    ip = m.group(1) if m else "the sending server"
    return {   # RFC 7208 §2.6
        "pass": f"sent from {ip}, which {domain}'s SPF allows to send for it",
        "fail": f"claims to be from {domain}, but {domain}'s SPF does not allow {ip} to send for it",
        "softfail": f"claims to be from {domain}, but {domain}'s SPF says {ip} is probably not allowed "
                    f"to send for it",
        "neutral": f"{domain}'s SPF says neither yes nor no about {ip} sending for it",
        "none": f"{domain} publishes no SPF policy, so the sending server ({ip}) could not be checked",
        "temperror": f"the SPF policy of {domain} could not be checked (a temporary DNS failure)",
        "permerror": f"the SPF policy of {domain} is broken, so it proves nothing",
    }.get(result, f"SPF for {domain}: {result}")


def _dkim(result: str, r: Any, comment: str) -> str:
    domain = _prop(r, "header", "d").lower() or _domain(_prop(r, "header", "i")) or "an unnamed domain"
    why = f" ({r.reason})" if getattr(r, "reason", None) else ""
    return {   # RFC 8601 §2.7.1
        "pass": f"signed by {domain} and the signature is valid",
        "fail": f"signed by {domain}, but the signature does not match the message (changed on the way, "
                f"or forged){why}",
        "none": "not signed (no DKIM signature)",
        "neutral": f"the signature by {domain} could not be judged{why}",
        "policy": f"the signature by {domain} is valid but not acceptable here{why}",
        "temperror": f"the signature by {domain} could not be checked (a temporary DNS failure)",
        "permerror": f"the signature by {domain} cannot be used{why}",
    }.get(result, f"DKIM signature by {domain}: {result}")


def _dmarc(result: str, r: Any, comment: str) -> str:
    domain = _prop(r, "header", "from").lower() or "the From domain"
    m = _POLICY_COMMENT.search(comment)
    policy = m.group(1) if m else ""
    asks = {"reject": f"; {domain} asks for such mail to be refused",
            "quarantine": f"; {domain} asks for such mail to be treated as junk"}.get(policy, "")
    return {   # RFC 7489 §11.2
        "pass": f"really from {domain}: a valid signature or SPF check belongs to the From domain",
        "fail": f"claims to be from {domain}, but nothing proves it{asks}",
        "none": f"{domain} publishes no DMARC policy",
        "temperror": f"the DMARC policy of {domain} could not be checked (a temporary DNS failure)",
        "permerror": f"the DMARC policy of {domain} is broken",
    }.get(result, f"DMARC for {domain}: {result}")


def _arc(result: str, r: Any, comment: str) -> str:
    m = re.search(r"sealed by (\S+)", comment)
    via = f" through {m.group(1)}" if m else ""
    return {   # RFC 8617 §4.4
        "pass": f"forwarded{via}, with a valid record of the checks made before (ARC)",
        "fail": f"forwarded{via}, but its record of earlier checks is broken (ARC)",
        "temperror": "the forwarding record (ARC) could not be checked (a temporary DNS failure)",
    }.get(result, "")


_WORDS: dict[str, Callable[[str, Any, str], str]] = {"spf": _spf, "dkim": _dkim, "dmarc": _dmarc, "arc": _arc}


def describe(results: str | AuthResults) -> list[str]:
    """One sentence per check, in the field's order; an unreadable field gives one sentence saying so."""
    value = "x; " + "; ".join(clauses(results)) if isinstance(results, AuthResults) else results
    try:
        parsed = parse(value)
    except Exception:       # authres raises several unrelated types on malformed input
        return ["the record of the authentication checks could not be read"]
    comments = clause_comments(" ".join(value.split()))
    out: list[str] = []
    for index, r in enumerate(parsed.results):
        method = str(r.method).lower()
        words = _WORDS.get(method)
        comment = comments[index] if index < len(comments) else ""
        sentence = words(str(r.result).lower(), r, comment) if words else f"{method}: {r.result}"
        if sentence:
            out.append(sentence)
    return out
