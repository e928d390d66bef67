"""DNS answers for mail authentication, with every failure turned into a value instead of an exception.

SPF (RFC 7208 §2.6.6), DKIM (RFC 6376 §6.1.2) and DMARC (RFC 7489 §6.6.3) all say the same thing: a
DNS failure is a temporary error and never evidence against the sender.  So a lookup here answers the
records, "no such record" (empty), or an `Answer` whose `error` says why DNS did not answer; callers map
the last to "temperror".  `ResolverSource` goes through the engine's resolver (engine/dns) with a
timeout; `StaticSource` answers from a dict, for benchmarks and for replaying answers already fetched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.name
import dns.resolver

from engine.dns import Resolver

# What the checks ask for; anything else is refused before it reaches the network.
RDTYPES = frozenset({"TXT", "A", "AAAA", "MX", "PTR"})


@dataclass(frozen=True)
class Answer:
    """One lookup's outcome.  Values by type: TXT -> bytes (the record's strings joined, RFC 7208 §3.3,
    RFC 6376 §3.6.2.2), A/AAAA -> address text, MX -> (preference, exchange), PTR -> host name; names
    without the trailing dot."""

    values: tuple[Any, ...] = ()
    error: str | None = None          # the DNS did not answer: temperror, with this reason

    @property
    def failed(self) -> bool:
        return self.error is not None


class DNSSource(Protocol):
    """Where the checks get DNS answers from (the network in the engine, a dict in benchmarks)."""

    async def lookup(self, name: str, rdtype: str) -> Answer: ...


def normal_name(name: str | bytes) -> str:
    """Lower case, no trailing dot: the key answers are filed under."""
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    return text.rstrip(".").lower()


def _values(answer: dns.resolver.Answer, rdtype: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for rdata in answer:
        if rdtype == "TXT":
            out.append(b"".join(rdata.strings))
        elif rdtype in ("A", "AAAA"):
            out.append(str(rdata.address))
        elif rdtype == "MX":
            out.append((int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower()))
        elif rdtype == "PTR":
            out.append(rdata.target.to_text(omit_final_dot=True).lower())
    return tuple(out)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (dns.exception.Timeout, TimeoutError)):
        return "DNS timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "the name servers failed (SERVFAIL or refused)"
    return f"DNS error: {exc or type(exc).__name__}"


class ResolverSource:
    """Lookups through the engine's resolver (its nameservers, cache and per-query timeout)."""

    def __init__(self, resolver: Resolver, timeout: float) -> None:
        self.resolver = resolver
        self.timeout = timeout

    async def lookup(self, name: str, rdtype: str) -> Answer:
        if rdtype not in RDTYPES:
            return Answer(error=f"unsupported query type {rdtype}")
        qname = normal_name(name)
        if not qname or len(qname) > 253:
            return Answer()                     # not a name DNS could hold: nothing there
        try:
            answer = await asyncio.wait_for(self.resolver.lookup(qname, rdtype), self.timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Answer()
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.IDNAException,
                UnicodeError, ValueError):
            return Answer()     # a name DNS cannot hold (from a hostile message): nothing is published there
        except (dns.exception.DNSException, TimeoutError, OSError) as exc:
            return Answer(error=_describe(exc))
        return Answer(_values(answer, rdtype))


class StaticSource:
    """Answers from a mapping {(name, rdtype): Answer}; anything not in it does not exist."""

    def __init__(self, answers: Mapping[tuple[str, str], Answer]) -> None:
        self.answers = {(normal_name(n), t): a for (n, t), a in answers.items()}

    async def lookup(self, name: str, rdtype: str) -> Answer:
        return self.answers.get((normal_name(name), rdtype), Answer())

    @classmethod
    def txt(cls, records: Mapping[str, str | bytes | list[str]]) -> StaticSource:
        """A TXT-only zone: {name: record} (a list for several records at one name)."""
        answers: dict[tuple[str, str], Answer] = {}
        for name, value in records.items():
            items = value if isinstance(value, list) else [value]
            answers[(name, "TXT")] = Answer(tuple(v.encode() if isinstance(v, str) else v for v in items))
        return cls(answers)
