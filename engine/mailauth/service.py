"""The inbound filter the SMTP listeners run after DATA: sign what users submit, check what the MX receives.

Submission (or any logged-in session): forged Authentication-Results for our host name are removed and
the message is DKIM-signed with the keys of its From domain (or, failing that, its envelope sender's
domain), when that domain has keys.  It is never checked against SPF: the sender is one of ours.

MX: SPF, every DKIM signature, DMARC and ARC are checked (DNS concurrently on the loop, signature
arithmetic in a worker thread), forged Authentication-Results claiming our host name are removed, ours goes
right under our Received line, the policy decides deliver / Junk / refuse, and the verdicts go into the
delivery log.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from dkim import DKIMException

from engine.config import Config, DNSSettings
from engine.dns import Resolver
from engine.mailauth import arc, dkim, dmarc
from engine.mailauth.dnssource import Answer, DNSSource, ResolverSource
from engine.mailauth.headers import Field, from_domains, join_message, remove_results_for, split_message
from engine.mailauth.keys import KeyStore
from engine.mailauth.policy import JUNK, JUNK_FOLDER, REFUSE, decide
from engine.mailauth.results import AuthResults, header_field
from engine.mailauth.spf_check import check_spf
from engine.mailauth.words import describe
from engine.services import Services
from engine.smtp.filters import FilterResult, FilterVerdict, InboundMessage

log = logging.getLogger(__name__)

MAX_FROM_DOMAINS = 5          # RFC 7489 §6.6.1: a From with several domains is checked for each, up to this
MAX_KEY_LOOKUPS = 24          # DKIM (at most 8 signatures) plus ARC keys fetched for one message
MX_ROLES = frozenset({"smtp"})


class Verifier:
    """SPF, DKIM, DMARC and ARC for one message; DNS through `dns_source`, crypto in a worker thread."""

    def __init__(self, dns_source: DNSSource, *, hostname: str = "", rng: random.Random | None = None,
                 in_thread: bool = True) -> None:
        self.dns_source = dns_source
        self.hostname = hostname
        self.rng = rng
        self.in_thread = in_thread

    async def _keys(self, names: Sequence[str]) -> dict[str, Answer]:
        names = list(names)[:MAX_KEY_LOOKUPS]
        answers = await asyncio.gather(*(self.dns_source.lookup(n, "TXT") for n in names))
        return dict(zip(names, answers, strict=True))

    async def verify(self, data: bytes, client_ip: str, sender: str, helo: str,
                     fields: Sequence[Field] | None = None) -> AuthResults:
        if fields is None:
            fields = split_message(data)[0]
        if not dmarc.psl_loaded():
            await asyncio.to_thread(dmarc.public_suffix_list)
        refs = dkim.signature_refs(fields)
        dkim_keys = dkim.key_names(refs)
        wanted = dkim_keys + [n for n in arc.key_names(fields) if n not in dkim_keys]
        domains = from_domains(fields)[:MAX_FROM_DOMAINS]
        spf_task = asyncio.ensure_future(
            check_spf(self.dns_source, client_ip, sender, helo, receiver=self.hostname))
        keys_task = asyncio.ensure_future(self._keys(wanted))
        found = await asyncio.gather(*(dmarc.discover(self.dns_source, d) for d in domains))
        spf_result = await spf_task
        keys = await keys_task
        has_arc = any(f.name in arc.ARC_FIELDS for f in fields)
        if self.in_thread and (refs or has_arc):          # signature arithmetic: off the loop
            dkim_results, arc_result = await asyncio.to_thread(_crypto, data, fields, refs, keys)
        else:
            dkim_results, arc_result = _crypto(data, fields, refs, keys)
        spf_id = dmarc.Identifier(spf_result.domain, spf_result.result)
        dkim_ids = [dmarc.Identifier(d.domain, d.result) for d in dkim_results]
        verdicts = [dmarc.evaluate(d, f, spf_id, dkim_ids, self.rng) for d, f in zip(domains, found, strict=True)]
        if verdicts:
            dmarc_result = dmarc.worst(verdicts)
        else:
            dmarc_result = dmarc.DMARCResult("permerror", "", reason="the message has no From address")
        return AuthResults(spf_result, tuple(dkim_results), dmarc_result, arc_result)


def _crypto(data: bytes, fields: Sequence[Field], refs: Sequence[dkim.SignatureRef],
            keys: dict[str, Answer]) -> tuple[list[dkim.DKIMResult], arc.ARCResult]:
    return dkim.verify(data, refs, keys), arc.verify(data, fields, keys)


def retention(config: Config) -> float:
    """How long a retired DKIM key stays published: as long as one of its signatures can still be checked.

    Receivers check a signature when the message arrives; our queue gives up on a message after
    `max_queue_lifetime`, so no signature of ours is in transit longer than that.  A week more covers
    forwarders and lists that re-check later, DNS caches (TTL) and clocks that are off.
    """
    return config.delivery.max_queue_lifetime + 7 * 86400.0


class MailAuth:
    """Owns the key store and the DNS source; `inbound` is the filter the runtime registers."""

    def __init__(self, services: Services, *, dns_source: DNSSource | None = None,
                 rng: random.Random | None = None) -> None:
        self.services = services
        self.keys = KeyStore(services.config.data_dir)
        self._fixed_source = dns_source
        self._source: DNSSource | None = None
        self._source_settings: DNSSettings | None = None
        self.rng = rng

    @property
    def config(self) -> Config:
        return self.services.config

    def dns_source(self) -> DNSSource:
        """The engine resolver over `[dns]` (rebuilt when the settings change while running)."""
        if self._fixed_source is not None:
            return self._fixed_source
        settings = self.config.dns
        if self._source is None or self._source_settings != settings:
            self._source = ResolverSource(Resolver(settings), settings.timeout)
            self._source_settings = settings
        return self._source

    async def inbound(self, message: InboundMessage) -> FilterResult:
        """The inbound filter (engine/smtp/filters.py)."""
        if message.authenticated_as or message.role not in MX_ROLES:
            return await self.sign_submitted(message)
        return await self.check_received(message)

    # --- submission -----------------------------------------------------------------------------------

    def signing_domain(self, fields: Sequence[Field], sender: str) -> str | None:
        """The From domain when it has keys (so DMARC aligns, RFC 7489 §3.1.1), else the envelope's."""
        candidates = from_domains(fields)[:1]
        if "@" in sender:
            candidates.append(sender.rpartition("@")[2].lower())
        for domain in candidates:
            if self.keys.signing_keys(domain):
                return domain
        return None

    async def sign_submitted(self, message: InboundMessage) -> FilterResult:
        fields, rest = split_message(message.data)
        fields, removed = remove_results_for(fields, self.config.hostname)
        data = join_message(fields, rest) if removed else message.data
        domain = self.signing_domain(fields, message.sender)
        if domain is None:
            return FilterVerdict(data=data if removed else None, log=_removed(removed))
        keys = self.keys.signing_keys(domain)
        if not keys:                       # rotated away between the two looks: send it unsigned
            return FilterVerdict(data=data if removed else None, log=_removed(removed))
        signer = keys[0].selector.domain   # as stored: IDNA A-labels, what d= must carry (RFC 6376 §3.5)
        try:
            signatures = await asyncio.to_thread(dkim.sign, data, fields, signer, keys)
        except (DKIMException, IndexError, ValueError) as exc:
            # dkimpy cannot read this message's header: better unsigned than "try again later" forever.
            log.warning("%s: not DKIM-signed: %s", message.message_id, exc)
            return FilterVerdict(data=data if removed else None,
                                 log={"dkim_error": str(exc) or type(exc).__name__, **_removed(removed)})
        selectors = ",".join(k.selector.selector for k in keys)
        return FilterVerdict(data=signatures + data, log={"dkim_signed": f"d={signer} s={selectors}",
                                                          **_removed(removed)})

    # --- the MX ---------------------------------------------------------------------------------------

    async def check_received(self, message: InboundMessage) -> FilterResult:
        config = self.config
        fields, rest = split_message(message.data)
        verifier = Verifier(self.dns_source(), hostname=config.hostname, rng=self.rng)
        results = await verifier.verify(message.data, message.client_ip, message.sender, message.helo, fields)
        kept, removed = remove_results_for(fields, config.hostname)
        data = join_message(with_results(kept, header_field(config.hostname, results)), rest)
        decision = decide(results, config.authentication)
        log.debug("%s from %s: %s -> %s", message.message_id, message.client_ip, results.summary(),
                  decision.action)
        fields_for_log: dict[str, Any] = {"auth": results.summary(), "auth_words": describe(results),
                                          **_removed(removed)}
        if decision.reason:
            fields_for_log["auth_policy"] = f"{decision.action}: {decision.reason}"
        if decision.action == REFUSE and decision.reply is not None:
            return FilterVerdict(reply=decision.reply, log=fields_for_log)
        folder = JUNK_FOLDER if decision.action == JUNK else None
        return FilterVerdict(data=data, folder=folder, log=fields_for_log)


def with_results(fields: list[Field], results_field: bytes) -> list[Field]:
    """Our Authentication-Results goes right under our own Received line (the server's first field).

    Both are this hop's trace (RFC 5322 §3.6.7, RFC 8601 §2.1): kept together, above everything that
    arrived with the message, and "Received first" stays true for readers of the trace.
    """
    ours = Field(results_field)
    if fields and fields[0].name == "received":
        return [fields[0], ours, *fields[1:]]
    return [ours, *fields]


def _removed(count: int) -> dict[str, Any]:
    return {"forged_auth_results_removed": count} if count else {}
