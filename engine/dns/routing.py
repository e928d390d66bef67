"""Where mail for a domain goes: MX lookup, then the addresses of each exchanger (RFC 5321 §5.1).

Every failure says whether it is permanent (bounce: the domain does not exist, or says it takes no mail)
or temporary (retry: the DNS did not answer), because a temporary DNS failure must never bounce mail.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from engine.config import DNSSettings

log = logging.getLogger(__name__)


class RouteError(Exception):
    """No way to reach the domain now; str() is a sentence fit for a DSN's Diagnostic-Code."""

    def __init__(self, message: str, *, permanent: bool, status: str) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status        # RFC 3463 enhanced status code, e.g. "5.1.2"


@dataclass(frozen=True)
class MXHost:
    name: str                       # exchanger host name; the domain itself when there is no MX
    preference: int
    addresses: tuple[str, ...]      # IPv4 first, then IPv6


@dataclass(frozen=True)
class Route:
    domain: str
    hosts: tuple[MXHost, ...]       # in the order to try them
    implicit: bool = False          # no MX records: the domain's own address (RFC 5321 §5.1)


def order_mx(records: Sequence[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """Sorted by preference; equal preferences shuffled so load spreads (RFC 5321 §5.1)."""
    by_pref: dict[int, list[str]] = {}
    for pref, host in records:
        names = by_pref.setdefault(pref, [])
        if host not in names:
            names.append(host)
    ordered: list[tuple[int, str]] = []
    for pref in sorted(by_pref):
        names = list(by_pref[pref])
        rng.shuffle(names)
        ordered += [(pref, name) for name in names]
    return ordered


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _Lookup:
    """Outcome of one A/AAAA lookup pair: addresses, or why there are none."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.temporary: str | None = None
        self.missing = False


class Resolver:
    """DNS lookups for delivery, over the configured nameservers or the system's."""

    def __init__(self, settings: DNSSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        if settings.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                    for host, port in settings.nameservers]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = settings.timeout
        resolver.timeout = max(0.5, settings.timeout / 2)
        resolver.cache = dns.resolver.LRUCache(4096)
        self._resolver = resolver

    async def route(self, domain: str) -> Route:
        """The hosts to try for `domain`, or RouteError saying whether to bounce or retry."""
        domain = domain.rstrip(".").lower()
        if domain.startswith("[") and domain.endswith("]"):
            # RFC 5321 §4.1.3: an address literal names the host directly.
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            if not _is_ip(literal):
                raise RouteError(f"{domain} is not an address literal", permanent=True, status="5.1.2")
            return Route(domain, (MXHost(literal, 0, (literal,)),), implicit=True)
        try:
            answer = await self._resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            raise RouteError(f"the domain {domain} does not exist (DNS: NXDOMAIN)", permanent=True,
                             status="5.1.2") from None
        except dns.resolver.NoAnswer:
            return await self._implicit(domain)
        except dns.exception.DNSException as exc:     # SERVFAIL, REFUSED, timeouts, YXDOMAIN
            raise RouteError(f"DNS lookup of MX for {domain} failed: {_describe(exc)}", permanent=False,
                             status="4.4.3") from None
        records: list[tuple[int, str]] = []
        for rdata in answer:
            exchange = rdata.exchange
            if exchange == dns.name.root:
                # RFC 7505 §3: a null MX says the domain accepts no mail at all.
                raise RouteError(f"the domain {domain} accepts no mail (null MX)", permanent=True,
                                 status="5.1.10")
            records.append((int(rdata.preference), exchange.to_text(omit_final_dot=True).lower()))
        if not records:
            return await self._implicit(domain)
        hosts: list[MXHost] = []
        temporary: list[str] = []
        for pref, name in order_mx(records, self.rng):
            found = await self._addresses(name)
            if found.addresses:
                hosts.append(MXHost(name, pref, tuple(found.addresses)))
            elif found.temporary:
                temporary.append(found.temporary)
        if hosts:
            return Route(domain, tuple(hosts))
        # RFC 5321 §5.1: MX records exist, so never fall back to the domain's own address.
        if temporary:
            raise RouteError(f"no address for any mail exchanger of {domain}: {temporary[0]}",
                             permanent=False, status="4.4.3")
        names = ", ".join(name for _, name in records)
        raise RouteError(f"the mail exchangers of {domain} ({names}) have no address", permanent=True,
                         status="5.4.4")

    async def _implicit(self, domain: str) -> Route:
        """RFC 5321 §5.1: no MX records, so the domain itself is the one host (preference 0)."""
        found = await self._addresses(domain)
        if found.addresses:
            return Route(domain, (MXHost(domain, 0, tuple(found.addresses)),), implicit=True)
        if found.temporary:
            raise RouteError(f"DNS lookup of {domain} failed: {found.temporary}", permanent=False,
                             status="4.4.3")
        raise RouteError(f"the domain {domain} has no mail exchanger and no address", permanent=True,
                         status="5.1.2")

    async def _addresses(self, host: str) -> _Lookup:
        found = _Lookup()
        if _is_ip(host):
            found.addresses.append(host)
            return found
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(host, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                found.missing = True
                continue
            except dns.exception.DNSException as exc:
                found.temporary = f"{rdtype} {host}: {_describe(exc)}"
                continue
            found.addresses += [rdata.to_text() for rdata in answer]
        return found

    async def lookup(self, name: str, rdtype: str) -> dns.resolver.Answer:
        """One query (TXT, A, AAAA, MX, PTR) over the same nameservers, timeouts and cache as routing.

        For mail authentication (engine/mailauth), which classifies dnspython's exceptions itself:
        NXDOMAIN/NoAnswer mean "no such record", anything else a temporary failure.
        """
        return await self._resolver.resolve(name, rdtype, search=False)

    async def addresses(self, host: str) -> tuple[str, ...]:
        """A then AAAA of one host (the smarthost); RouteError when there are none."""
        found = await self._addresses(host)
        if found.addresses:
            return tuple(found.addresses)
        if found.temporary:
            raise RouteError(f"DNS lookup of {found.temporary}", permanent=False, status="4.4.3")
        raise RouteError(f"the host {host} has no address", permanent=True, status="5.4.4")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "the name servers failed (SERVFAIL or refused)"
    return str(exc) or type(exc).__name__
