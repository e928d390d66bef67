"""The authentication records a domain publishes for this server: SPF, DKIM keys, DMARC.

engine/dns_records.py (the DNS panel, `postroom dns-records`) lists them beside MX and checks each
against live DNS; the values are decided here, next to the code that relies on them.
"""

from __future__ import annotations

import ipaddress

from engine.config import Config
from engine.mailauth import dkim
from engine.mailauth.dmarc import organizational_domain

SPF_DEFAULT = "v=spf1 mx -all"            # RFC 7208 §5.4 "mx": our MX hosts send; §5.1 "-all": nobody else


def smarthost_mechanism(host: str) -> str:
    """What lets a smarthost send for us: its address, or an include of its provider's SPF record.

    Providers publish the SPF record for their outbound servers at their organisational domain (or a
    name under it they document); `include:` of the organisational domain is the usual instruction.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"include:{organizational_domain(host)}"          # RFC 7208 §5.2
    return f"ip4:{ip}" if ip.version == 4 else f"ip6:{ip}"        # RFC 7208 §5.6


def spf_value(config: Config) -> str:
    """`v=spf1 mx -all`, with the smarthost's mechanism before `-all` when mail leaves through one."""
    smarthost = config.delivery.smarthost
    if smarthost is None:
        return SPF_DEFAULT
    return f"v=spf1 mx {smarthost_mechanism(smarthost.host)} -all"


def dmarc_value(domain: str) -> str:
    """RFC 7489 §6.3: quarantine what fails, aggregate reports to the domain's postmaster."""
    return f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"


def dkim_records(config: Config, domain: str) -> list[tuple[str, str]]:
    """(owner name, TXT value) for every DKIM selector the domain publishes now."""
    return dkim.dns_records(config, domain)
