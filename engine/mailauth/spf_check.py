"""SPF (RFC 7208) with pyspf's evaluator and the engine's asynchronous DNS.

pyspf evaluates synchronously and fetches DNS through its module-level `DNSLookup` function (its own test
suite swaps that function the same way).  We install a dispatcher that answers from a per-thread table
of answers already fetched; when pyspf asks for something not yet in the table, the dispatcher stops the
evaluation, the name is looked up asynchronously on the engine loop, and the evaluation starts again
from the top with one more answer.  An evaluation is a few hundred microseconds, so the replays cost far
less than DNS does, no thread ever waits on the network, and pyspf's own processing limits (10 DNS
mechanisms, 10 MX/PTR names, 2 void lookups, RFC 7208 §4.6.4) apply unchanged to the final run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import spf

from engine.mailauth.dnssource import Answer, DNSSource, normal_name

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")   # RFC 7208 §2.6

# RFC 7208 §4.6.4: "at least 20 seconds" for the whole check.
SPF_DEADLINE = 20.0
# pyspf stops after its own limits (about 10 + 10*10 + 10 lookups); this only guards against a bug.
MAX_LOOKUPS = 150

_FQDN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$")


@dataclass(frozen=True)
class SPFResult:
    result: str                 # one of RESULTS
    identity: str               # "mailfrom" or "helo" (RFC 7208 §2.3, §2.4)
    domain: str                 # the domain whose policy was checked
    sender: str                 # MAIL FROM address, or the HELO name for the helo identity
    client_ip: str
    explanation: str = ""       # pyspf's words, or why the check did not run
    mechanism: str = ""         # the mechanism that matched, e.g. "ip4:192.0.2.0/24" or "-all"


class _NeedDNS(Exception):
    """Not an error: pyspf asked for an answer we have not fetched yet (see the module docstring)."""

    def __init__(self, key: tuple[str, str]) -> None:
        super().__init__(key)
        self.key = key


_local = threading.local()
_original_lookup: Callable[..., Any] = spf.DNSLookup


def _table_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    """pyspf's DNSLookup contract: [((name, type), value), ...]; [] when nothing is there."""
    table: dict[tuple[str, str], Answer] | None = getattr(_local, "table", None)
    if table is None:
        return list(_original_lookup(name, qtype, strict, timeout))
    key = (normal_name(str(name)), str(qtype))
    answer = table.get(key)
    if answer is None:
        raise _NeedDNS(key)
    if answer.error is not None:
        raise spf.TempError(answer.error)
    if qtype in ("TXT", "SPF"):
        return [((name, qtype), (value,)) for value in answer.values]
    return [((name, qtype), value) for value in answer.values]


spf.DNSLookup = _table_lookup


def _evaluate(ip: str, sender: str, helo: str, receiver: str,
              table: dict[tuple[str, str], Answer]) -> tuple[str, str, str, str, str]:
    """One run of pyspf over the answers so far: (result, explanation, mechanism, identity, domain)."""
    query = spf.query(i=ip, s=sender, h=helo, receiver=receiver, strict=True, querytime=0)
    _local.table = table
    try:
        result, _code, explanation = query.check()
    finally:
        _local.table = None
    mechanism = str(getattr(query, "mechanism", "") or "")
    return str(result), str(explanation or ""), mechanism, str(query.ident), str(query.o or "")


async def check_spf(dns_source: DNSSource, client_ip: str, sender: str, helo: str, *,
                    receiver: str = "", deadline: float = SPF_DEADLINE) -> SPFResult:
    """The SPF result for this client and MAIL FROM (the HELO identity for the null sender)."""
    helo = helo.strip()
    identity = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2].lower() if sender else helo.lower()
    shown = sender if sender else helo
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return SPFResult("none", identity, domain, shown, client_ip, "no client address to check")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        client_ip = str(address.ipv4_mapped)     # a dual-stack socket's view of an IPv4 client (RFC 7208 §5)
    if not sender and not _FQDN.match(helo):
        # RFC 7208 §2.3: the HELO identity is only checked when it is a fully qualified domain name.
        return SPFResult("none", identity, domain, shown, client_ip, "null sender and HELO is not a domain name")
    if not _FQDN.match(domain):
        # RFC 7208 §4.3: a malformed domain gives "none" without any lookup.
        return SPFResult("none", identity, domain, shown, client_ip, "the sender's domain is not a domain name")
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    table: dict[tuple[str, str], Answer] = {}
    for _ in range(MAX_LOOKUPS):
        try:
            result, explanation, mechanism, ident, checked = _evaluate(client_ip, sender, helo, receiver, table)
        except _NeedDNS as need:
            remaining = end - loop.time()
            if remaining <= 0:
                return SPFResult("temperror", identity, domain, shown, client_ip, "SPF check took too long")
            name, rdtype = need.key
            try:
                table[need.key] = await asyncio.wait_for(dns_source.lookup(name, rdtype), remaining)
            except TimeoutError:
                return SPFResult("temperror", identity, domain, shown, client_ip, "SPF check took too long")
            continue
        if result not in RESULTS:          # "ambiguous" exists only in pyspf's harsh mode
            result = "permerror"
        return SPFResult(result, ident or identity, checked or domain, shown, client_ip, explanation, mechanism)
    return SPFResult("permerror", identity, domain, shown, client_ip, "too many DNS lookups")
