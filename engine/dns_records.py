"""What a domain must publish in DNS for this server, and whether DNS says so right now.

One list serves the desktop's DNS view and the CLI: MX, the host's A record, SPF, DMARC, DKIM (once the
domain has a signing key) and the autoconfiguration hints mail programs look for.  Each record is checked
live against the configured nameservers (or the system's) and marked present, missing or different, with
what was found; a lookup that fails (timeout, SERVFAIL) is marked "error" with the reason, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from engine.config import Config

PRESENT = "present"
MISSING = "missing"
DIFFERENT = "different"
ERROR = "error"          # the lookup itself failed; `found` says why

SPF_VALUE = "v=spf1 mx -all"                                     # RFC 7208 §5.4: "mx"; §5.1: "-all"


def dmarc_value(domain: str) -> str:
    return f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"   # RFC 7489 §6.3


@dataclass(frozen=True)
class Record:
    kind: str            # MX, A, TXT, CNAME, SRV
    name: str            # the owner name, fully qualified, no trailing dot
    value: str           # what to publish
    found: str = ""      # what DNS returned ("; "-joined), or why the lookup failed
    status: str = MISSING
    purpose: str = ""    # one line: why this record matters


def _resolver(config: Config) -> dns.asyncresolver.Resolver:
    if config.dns.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in config.dns.nameservers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = config.dns.timeout
    resolver.timeout = max(0.5, config.dns.timeout / 2)
    return resolver


class _Failed(Exception):
    pass


async def _lookup(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[str]:
    """Answers as text; [] when the name or the type does not exist; _Failed when DNS did not answer."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.NoNameservers:
        raise _Failed("the nameservers failed to answer (SERVFAIL or refused)") from None
    except dns.exception.Timeout:
        raise _Failed("no answer from DNS in time") from None
    except dns.exception.DNSException as exc:
        raise _Failed(str(exc) or type(exc).__name__) from None
    out: list[str] = []
    for rdata in answer:
        if rdtype == "TXT":
            out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        else:
            out.append(rdata.to_text())
    return out


def _host(text: str) -> str:
    return text.rstrip(".").lower()


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip()).lower()


def _tags(text: str) -> dict[str, str]:
    """DMARC tag list (RFC 7489 §6.4) as a dict, for comparing without caring about spacing or order."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip().lower()
    return out


def public_address(config: Config) -> str | None:
    """This server's address as others should see it: the SMTP listener's own, else the outgoing route's.

    Only a global address is offered; behind NAT the public address is not knowable here.
    """
    listen = config.listen.get("smtp")
    candidates: list[str] = []
    if listen is not None and listen.host not in ("0.0.0.0", "::", ""):
        candidates.append(listen.host)
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))        # RFC 5737 TEST-NET-1: picks a route, sends nothing
        candidates.append(probe.getsockname()[0])
    for candidate in candidates:
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(candidate)
            if ip.is_global:
                return str(ip)
    return None


def _dkim_records(config: Config, domain: str) -> list[tuple[str, str]]:
    """(owner name, TXT value) for each DKIM selector the domain publishes (engine/mailauth); [] if none."""
    try:
        module = importlib.import_module("engine.mailauth.records")
    except ImportError:
        return []
    func: Callable[[Config, str], list[tuple[str, str]]] | None = getattr(module, "dkim_records", None)
    if func is None:
        return []
    try:
        return func(config, domain)
    except Exception:
        return []


def _spf_value(config: Config) -> str:
    """SPF_VALUE, or with the smarthost's mechanism when one is set (engine/mailauth decides which)."""
    try:
        return str(importlib.import_module("engine.mailauth.records").spf_value(config))
    except Exception:
        return SPF_VALUE


async def dns_records(config: Config, domain: str) -> list[Record]:
    """The records `domain` should publish, each checked against live DNS (lookups run concurrently)."""
    domain = _host(domain)
    host = _host(config.hostname)
    resolver = _resolver(config)
    address = public_address(config)
    checks: list[tuple[Record, Callable[[list[str]], tuple[str, str]], str, str]] = []

    def add(record: Record, rdtype: str, judge: Callable[[list[str]], tuple[str, str]]) -> None:
        checks.append((record, judge, record.name, rdtype))

    # RFC 5321 §5.1: other servers find us by the domain's MX.
    def judge_mx(found: list[str]) -> tuple[str, str]:
        hosts = [_host(f.split()[-1]) for f in found]
        return (PRESENT if host in hosts else DIFFERENT if hosts else MISSING), "; ".join(found)

    add(Record("MX", domain, f"10 {host}.", purpose="Tells other servers to deliver this domain's mail here."),
        "MX", judge_mx)

    def judge_a(found: list[str]) -> tuple[str, str]:
        if not found:
            return MISSING, ""
        if address is None or address in found:
            return PRESENT, "; ".join(found)
        return DIFFERENT, "; ".join(found)

    add(Record("A", host, address or "this server's public IPv4 address",
               purpose="The MX host name must resolve to this server."), "A", judge_a)

    def judge_tagged(prefix: str, wanted: str, by_tags: bool) -> Callable[[list[str]], tuple[str, str]]:
        def judge(found: list[str]) -> tuple[str, str]:
            mine = [f for f in found if f.strip().lower().startswith(prefix.lower())]
            if not mine:
                return MISSING, "; ".join(found)
            def same(text: str) -> bool:
                return _tags(text) == _tags(wanted) if by_tags else _squash(text) == _squash(wanted)

            return (PRESENT if any(same(f) for f in mine) else DIFFERENT), "; ".join(mine)
        return judge

    spf = _spf_value(config)
    add(Record("TXT", domain, spf, purpose="SPF: only this domain's MX hosts (and the smarthost, if one is "
               "set) send its mail."), "TXT", judge_tagged("v=spf1", spf, False))
    dmarc = dmarc_value(domain)
    add(Record("TXT", f"_dmarc.{domain}", dmarc,
               purpose="DMARC: what receivers do with mail failing SPF/DKIM, and where to send reports."),
        "TXT", judge_tagged("v=DMARC1", dmarc, True))
    for dkim_name, dkim_value in _dkim_records(config, domain):
        key = re.search(r"p=([A-Za-z0-9+/=\s]+)", dkim_value)

        def judge_dkim(found: list[str], key: re.Match[str] | None = key) -> tuple[str, str]:
            if not found:
                return MISSING, ""
            want = re.sub(r"\s", "", key.group(1)) if key else ""
            ok = any(want and want in re.sub(r"\s", "", f) for f in found)
            return (PRESENT if ok else DIFFERENT), "; ".join(found)

        add(Record("TXT", _host(dkim_name), dkim_value, purpose="DKIM: the public key receivers verify "
                   "this server's signatures with."), "TXT", judge_dkim)

    # Autoconfiguration: Thunderbird's autoconfig host and RFC 6186 / RFC 8314 SRV records.
    def judge_cname(found: list[str]) -> tuple[str, str]:
        targets = [_host(f) for f in found]
        return (PRESENT if host in targets else DIFFERENT if targets else MISSING), "; ".join(found)

    add(Record("CNAME", f"autoconfig.{domain}", f"{host}.",
               purpose="Lets mail programs find their settings (Thunderbird autoconfig)."), "CNAME", judge_cname)
    for service, port, why in (("_submissions._tcp", 465, "mail programs send over TLS (RFC 8314)"),
                               ("_submission._tcp", 587, "mail programs send with STARTTLS (RFC 6186)"),
                               ("_imaps._tcp", 993, "mail programs read over IMAP with TLS (RFC 6186)")):
        def judge_srv(found: list[str], port: int = port) -> tuple[str, str]:
            parts = [f.split() for f in found]
            ok = any(len(p) == 4 and int(p[2]) == port and _host(p[3]) == host for p in parts)
            return (PRESENT if ok else DIFFERENT if found else MISSING), "; ".join(found)

        add(Record("SRV", f"{service}.{domain}", f"0 1 {port} {host}.", purpose=f"Hint: {why}."),
            "SRV", judge_srv)

    async def check(record: Record, judge: Callable[[list[str]], tuple[str, str]], name: str,
                    rdtype: str) -> Record:
        try:
            found = await _lookup(resolver, name, rdtype)
        except _Failed as exc:
            return Record(record.kind, record.name, record.value, str(exc), ERROR, record.purpose)
        status, shown = judge(found)
        return Record(record.kind, record.name, record.value, shown, status, record.purpose)

    return list(await asyncio.gather(*(check(*c) for c in checks)))
