"""DKIM (RFC 6376) signing and verification with dkimpy, ed25519 (RFC 8463) beside RSA.

Both halves are CPU work over bytes with no I/O: the verifier is handed the key records already fetched
(`key_names` says which), so it can run in a worker thread while DNS stays on the engine loop.
`dns_record`/`dns_records` are what engine/dns_records.py lists for the DNS panel.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from engine.config import Config
from engine.mailauth import canon
from engine.mailauth.dnssource import Answer, normal_name
from engine.mailauth.headers import Field
from engine.mailauth.keys import KeyStore, SigningKey

# dkimpy logs every bad signature at ERROR; the verdicts go into Authentication-Results instead.
DKIMPY_LOG = logging.getLogger("engine.mailauth.dkimpy")
DKIMPY_LOG.addHandler(logging.NullHandler())
DKIMPY_LOG.propagate = False
canon.install()

CANONICALIZATION = (b"relaxed", b"relaxed")        # RFC 6376 §3.4.2, §3.4.4
# RFC 6376 §6.1: a verifier may limit how many signatures it tries; hostile mail could carry hundreds.
MAX_SIGNATURES = 8

# RFC 6376 §5.4 and §8.15: the fields that matter are signed, and "oversigned" (named once more than
# they occur) so that nobody can add another instance later without breaking the signature.
OVERSIGN_ALWAYS = ("from", "reply-to", "subject", "to", "cc")            # even when absent
OVERSIGN_PRESENT = ("sender", "date", "message-id", "mime-version", "content-type",
                    "content-transfer-encoding", "in-reply-to", "references", "autocrypt", "openpgp")
SIGN_PRESENT = ("resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc",
                "resent-message-id", "content-id", "content-description", "list-id", "list-help",
                "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post", "list-owner",
                "list-archive")


def headers_to_sign(fields: Sequence[Field]) -> list[bytes]:
    """The h= list for our signatures, in the order dkimpy hashes them (RFC 6376 §5.4.2)."""
    counts: dict[str, int] = {}
    for f in fields:
        counts[f.name] = counts.get(f.name, 0) + 1
    names: list[str] = []
    for name in OVERSIGN_ALWAYS:
        names += [name] * (counts.get(name, 0) + 1)
    for name in OVERSIGN_PRESENT:
        if counts.get(name):
            names += [name] * (counts[name] + 1)
    for name in SIGN_PRESENT:
        names += [name] * counts.get(name, 0)
    return [n.encode("ascii") for n in names]


def sign(message: bytes, fields: Sequence[Field], domain: str, keys: Sequence[SigningKey]) -> bytes:
    """DKIM-Signature fields for `message`, one per key (ed25519 first), to be prepended to it."""
    signer = dkim.DKIM(None, logger=DKIMPY_LOG, linesep=b"\r\n")
    canon.load(signer, message)
    include = headers_to_sign(fields)
    out: list[bytes] = []
    with canon.remembering():
        for key in keys:
            out.append(signer.sign(key.selector.selector.encode("ascii"), domain.encode("ascii"), key.private,
                                   signature_algorithm=key.selector.signature_algorithm,
                                   canonicalize=CANONICALIZATION, include_headers=include))
    return b"".join(out)


# --- verification -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DKIMResult:
    result: str            # pass | fail | neutral | temperror | permerror | none (RFC 8601 §2.7.1)
    domain: str = ""       # d=
    selector: str = ""     # s=
    identity: str = ""     # i=
    algorithm: str = ""    # a=
    b: str = ""            # the start of b=, to tell signatures apart (RFC 6008 header.b)
    reason: str = ""


@dataclass(frozen=True)
class SignatureRef:
    """What the DKIM-Signature field says before anything is verified (for fetching its key)."""

    index: int
    tags: Mapping[bytes, bytes]
    problem: str = ""

    def tag(self, name: bytes) -> str:
        return self.tags.get(name, b"").decode("utf-8", "replace")

    @property
    def key_name(self) -> str:
        # RFC 6376 §3.6.2.1: <selector>._domainkey.<domain>
        return normal_name(f"{self.tag(b's')}._domainkey.{self.tag(b'd')}")


def signature_refs(fields: Sequence[Field], limit: int = MAX_SIGNATURES) -> list[SignatureRef]:
    refs: list[SignatureRef] = []
    for f in fields:
        if f.name != "dkim-signature":
            continue
        index = len(refs)
        if index >= limit:
            break
        raw = f.raw.partition(b":")[2]
        try:
            tags = parse_tag_value(raw)
        except (InvalidTagValueList, ValueError) as exc:
            refs.append(SignatureRef(index, {}, f"unreadable signature: {exc}"))
            continue
        missing = [t.decode() for t in (b"v", b"a", b"b", b"bh", b"d", b"h", b"s") if t not in tags]
        if missing:       # RFC 6376 §6.1.1: a required tag is absent
            refs.append(SignatureRef(index, tags, f"signature lacks {', '.join(missing)}="))
        else:
            refs.append(SignatureRef(index, tags))
    return refs


def key_names(refs: Sequence[SignatureRef]) -> list[str]:
    return sorted({r.key_name for r in refs if not r.problem})


def _short_b(value: str) -> str:
    return re.sub(r"\s+", "", value)[:12]


def _result(ref: SignatureRef, result: str, reason: str = "") -> DKIMResult:
    return DKIMResult(result, ref.tag(b"d").lower(), ref.tag(b"s"), ref.tag(b"i"), ref.tag(b"a").lower(),
                      _short_b(ref.tag(b"b")), reason)


def verify(message: bytes, refs: Sequence[SignatureRef], keys: Mapping[str, Answer]) -> list[DKIMResult]:
    """Every signature's verdict (RFC 6376 §6.1), from the key records in `keys` (no DNS here)."""
    if not refs:
        return []
    try:
        verifier = dkim.DKIM(None, logger=DKIMPY_LOG, minkey=1024)      # RFC 8301 §3.2: no shorter RSA keys
        canon.load(verifier, message)
    except (dkim.DKIMException, IndexError) as exc:         # IndexError: dkimpy on a leading folded line
        return [_result(r, "permerror", f"message not parseable: {exc}") for r in refs]

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        answer = keys.get(normal_name(name))
        if answer is None or not answer.values:
            return None
        record: bytes = answer.values[0]
        return record

    with canon.remembering():
        return [_verify_one(verifier, ref, keys, dnsfunc) for ref in refs]


def _verify_one(verifier: dkim.DKIM, ref: SignatureRef, keys: Mapping[str, Answer],
                dnsfunc: Callable[..., bytes | None]) -> DKIMResult:
    if ref.problem:
        return _result(ref, "permerror", ref.problem)
    answer = keys.get(ref.key_name)
    if answer is None or answer.error is not None:
        return _result(ref, "temperror", (answer.error if answer else None) or "key not fetched")
    if not answer.values:
        return _result(ref, "permerror", f"no key published at {ref.key_name}")   # RFC 6376 §6.1.2
    try:
        dkim.evaluate_pk(ref.key_name.encode(), answer.values[0])
    except (dkim.DKIMException, ValueError) as exc:
        return _result(ref, "permerror", f"unusable key: {exc}")
    try:
        ok = verifier.verify(ref.index, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        text = str(exc)
        if "body hash" in text:            # RFC 6376 §6.1.3: the body changed after signing
            return _result(ref, "fail", "body hash mismatch")
        return _result(ref, "permerror", text)
    except (dkim.DKIMException, ValueError, IndexError, KeyError) as exc:
        return _result(ref, "permerror", str(exc) or type(exc).__name__)
    return _result(ref, "pass") if ok else _result(ref, "fail", "signature did not verify")


# --- DNS records for the DNS panel and `postroom dns-records` ---------------------------------------------

def dns_records(config: Config, domain: str) -> list[tuple[str, str]]:
    """(owner name, TXT value) for every selector the domain must publish now, active pair first."""
    published = KeyStore(config.data_dir).published(domain)
    published.sort(key=lambda s: (s.state != "active", s.selector))
    return [(s.dns_name, s.dns_value) for s in published]


def dns_record(config: Config, domain: str) -> tuple[str, str] | None:
    """The first of `dns_records` (the older single-record seam engine/dns_records.py looks for)."""
    records = dns_records(config, domain)
    return records[0] if records else None
