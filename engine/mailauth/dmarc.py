"""DMARC (RFC 7489): policy records, the organisational domain, identifier alignment and the verdict.

Small enough to write here; the public suffix list comes from `publicsuffixlist` (RFC 7489 §3.2).
Everything in this module is a pure function except `discover`, which asks DNS for the policy record.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from engine.mailauth.dnssource import DNSSource

POLICIES = ("none", "quarantine", "reject")       # RFC 7489 §6.3 p=
_SEVERITY = {"none": 0, "quarantine": 1, "reject": 2}


class DMARCSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class DMARCRecord:
    policy: str                      # p=
    subdomain_policy: str            # sp=, defaulting to p (RFC 7489 §6.3)
    adkim: str = "r"                 # r (relaxed) | s (strict), RFC 7489 §3.1.1
    aspf: str = "r"                  # RFC 7489 §3.1.2
    pct: int = 100                   # RFC 7489 §6.6.4
    rua: tuple[str, ...] = ()


@dataclass(frozen=True)
class DMARCResult:
    result: str                      # pass | fail | none | temperror | permerror (RFC 7489 §11.2)
    from_domain: str                 # header.from
    policy: str = "none"             # what the domain asks for failing mail (p or sp), after pct
    published: str = ""              # p= as published ("" without a record)
    reason: str = ""
    spf_aligned: bool = False
    dkim_aligned: str = ""           # the d= that passed and aligned, if any

    @property
    def disposition(self) -> str:
        """What the domain's policy says to do with this message (RFC 7489 §7.2.1.1 "disposition")."""
        return self.policy if self.result == "fail" else "none"


# --- the organisational domain (RFC 7489 §3.2) ----------------------------------------------------------

_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def public_suffix_list() -> PublicSuffixList:
    """The bundled list, parsed once (about 0.15 s: callers on the loop first load it in a thread)."""
    global _psl
    with _psl_lock:
        if _psl is None:
            _psl = PublicSuffixList()
        return _psl


def psl_loaded() -> bool:
    return _psl is not None


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a public suffix itself is its own."""
    name = domain.rstrip(".").lower()
    found = public_suffix_list().privatesuffix(name)
    return str(found) if found else name


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict means identical; relaxed means the same organisational domain."""
    a = identifier.rstrip(".").lower()
    b = from_domain.rstrip(".").lower()
    if not a or not b:
        return False
    if a == b:
        return True
    return mode != "s" and organizational_domain(a) == organizational_domain(b)


# --- the record (RFC 7489 §6.3, §6.4) -------------------------------------------------------------------

def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise DMARCSyntaxError(f"{part.strip()!r} is not tag=value")
        key = key.strip().lower()
        if key in tags:
            raise DMARCSyntaxError(f"tag {key} appears twice")
        tags[key] = value.strip()
    return tags


def parse_record(text: str) -> DMARCRecord:
    """One `v=DMARC1; p=...` record; DMARCSyntaxError when it is not one."""
    tags = _tags(text)
    # RFC 7489 §6.4: v must be the first tag, and exactly DMARC1.
    first = text.split(";", 1)[0].partition("=")
    if first[0].strip().lower() != "v" or first[2].strip() != "DMARC1":
        raise DMARCSyntaxError("the record does not start with v=DMARC1")
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip().lower().startswith("mailto:"))
    policy = tags.get("p", "").lower()
    sub = tags.get("sp", policy).lower()
    if policy not in POLICIES or sub not in POLICIES:
        # RFC 7489 §6.6.3 step 6: a bad p= or sp= with a usable rua acts as p=none, else no DMARC at all.
        if rua:
            policy = sub = "none"
        else:
            raise DMARCSyntaxError("p= is missing or not none, quarantine or reject")
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100                   # RFC 7489 §6.3: ignore an invalid value
    return DMARCRecord(policy=policy, subdomain_policy=sub, adkim=adkim if adkim in ("r", "s") else "r",
                       aspf=aspf if aspf in ("r", "s") else "r", pct=min(100, max(0, pct)), rua=rua)


def pick_record(texts: Sequence[bytes]) -> str | None:
    """RFC 7489 §6.6.3 step 4-5: keep records starting with v=DMARC1; exactly one, or none at all."""
    mine = [t.decode("utf-8", "replace") for t in texts]
    mine = [t for t in mine if re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", t)]
    return mine[0] if len(mine) == 1 else None


@dataclass(frozen=True)
class Discovered:
    record: DMARCRecord | None
    at: str = ""                    # the domain the record was found at
    error: str = ""                 # temporary DNS failure
    problem: str = ""               # the record is there but unusable (permerror)


async def discover(dns_source: DNSSource, from_domain: str) -> Discovered:
    """RFC 7489 §6.6.3: _dmarc.<From domain>, else _dmarc.<organisational domain>."""
    candidates = [from_domain]
    org = organizational_domain(from_domain)
    if org != from_domain:
        candidates.append(org)
    for domain in candidates:
        answer = await dns_source.lookup(f"_dmarc.{domain}", "TXT")
        if answer.error is not None:
            return Discovered(None, domain, error=answer.error)
        text = pick_record(answer.values)
        if text is None:
            continue
        try:
            return Discovered(parse_record(text), domain)
        except DMARCSyntaxError as exc:
            return Discovered(None, domain, problem=str(exc))
    return Discovered(None)


# --- the verdict (RFC 7489 §6.6.2, §6.6.4) --------------------------------------------------------------

@dataclass(frozen=True)
class Identifier:
    """One authenticated identifier: an SPF-checked domain or a DKIM d=, with its result."""

    domain: str
    result: str


def evaluate(from_domain: str, found: Discovered, spf: Identifier | None, dkim: Sequence[Identifier],
             rng: random.Random | None = None) -> DMARCResult:
    """DMARC passes when SPF or any DKIM signature passes with an identifier aligned with From."""
    if found.error:
        return DMARCResult("temperror", from_domain, reason=found.error)
    if found.problem:
        return DMARCResult("permerror", from_domain, reason=found.problem)
    record = found.record
    if record is None:
        return DMARCResult("none", from_domain, reason="no DMARC policy published")
    subdomain = found.at != from_domain
    policy = record.subdomain_policy if subdomain else record.policy
    spf_ok = spf is not None and spf.result == "pass" and aligned(spf.domain, from_domain, record.aspf)
    dkim_ok = next((d.domain for d in dkim if d.result == "pass"
                    and aligned(d.domain, from_domain, record.adkim)), "")
    if spf_ok or dkim_ok:
        return DMARCResult("pass", from_domain, policy, record.policy, "", spf_ok, dkim_ok)
    # A DNS failure behind either check means we do not know: never act on it (RFC 7489 §6.6.2).
    unknown = (spf is not None and spf.result == "temperror") or any(d.result == "temperror" for d in dkim)
    if unknown:
        return DMARCResult("temperror", from_domain, "none", record.policy,
                           "SPF or DKIM could not be checked (DNS failure)")
    if record.pct < 100 and (rng or random).randrange(100) >= record.pct:
        # RFC 7489 §6.6.4: outside the sampled percentage, apply the next policy down.
        policy = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
    return DMARCResult("fail", from_domain, policy, record.policy,
                       "no SPF or DKIM result aligned with the From domain")


def worst(results: Sequence[DMARCResult]) -> DMARCResult:
    """For a From with several domains, the verdict to act on: the failure asking the most (§6.6.1)."""
    def key(r: DMARCResult) -> tuple[int, int]:
        return (1 if r.result == "fail" else 0, _SEVERITY.get(r.disposition, 0))

    return max(results, key=key)
