"""ARC (RFC 8617): validating the chain of custody a forwarder or mailing list added, with dkimpy.

Like DKIM verification this is CPU work over bytes with the keys fetched beforehand (`key_names`).
The result is recorded as `arc=pass|fail|none` (RFC 8617 §4.4, §7.2); we do not seal messages ourselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from engine.mailauth import canon
from engine.mailauth.dkim import DKIMPY_LOG
from engine.mailauth.dnssource import Answer, normal_name
from engine.mailauth.headers import Field

ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
MAX_INSTANCE = 50                    # RFC 8617 §4.2.1: i= is at most 50


@dataclass(frozen=True)
class ARCResult:
    result: str                      # pass | fail | none | temperror
    instances: int = 0               # how many ARC sets the message carries
    domain: str = ""                 # the newest set's sealer (ARC-Seal d=)
    reason: str = ""


def key_names(fields: Sequence[Field]) -> list[str]:
    """The key records the chain needs: s=/d= of every ARC-Seal and ARC-Message-Signature."""
    wanted: set[str] = set()
    count = 0
    for f in fields:
        if f.name not in ("arc-seal", "arc-message-signature"):
            continue
        count += 1
        if count > 2 * MAX_INSTANCE:
            break
        try:
            tags = parse_tag_value(f.raw.partition(b":")[2])
        except (InvalidTagValueList, ValueError):
            continue
        s, d = tags.get(b"s"), tags.get(b"d")
        if s and d:
            wanted.add(normal_name(s + b"._domainkey." + d))
    return sorted(wanted)


def newest_sealer(fields: Sequence[Field]) -> tuple[int, str]:
    best = (0, "")
    for f in fields:
        if f.name != "arc-seal":
            continue
        try:
            tags = parse_tag_value(f.raw.partition(b":")[2])
            instance = int(tags.get(b"i", b"0"))
        except (InvalidTagValueList, ValueError):
            continue
        if instance > best[0]:
            best = (instance, tags.get(b"d", b"").decode("utf-8", "replace").lower())
    return best


def verify(message: bytes, fields: Sequence[Field], keys: Mapping[str, Answer]) -> ARCResult:
    if not any(f.name in ARC_FIELDS for f in fields):
        return ARCResult("none")
    instances, sealer = newest_sealer(fields)
    if instances > MAX_INSTANCE:
        return ARCResult("fail", instances, sealer, f"more than {MAX_INSTANCE} ARC sets")
    for name in key_names(fields):
        answer = keys.get(name)
        if answer is None or answer.error is not None:
            return ARCResult("temperror", instances, sealer, (answer.error if answer else None) or "key not fetched")

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        answer = keys.get(normal_name(name))
        if answer is None or not answer.values:
            return None
        record: bytes = answer.values[0]
        return record

    try:
        chain = dkim.ARC(None, logger=DKIMPY_LOG, minkey=1024)
        canon.load(chain, message)
        verdict, _, reason = chain.verify(dnsfunc=dnsfunc)
    except (dkim.DKIMException, ValueError, IndexError, KeyError, TypeError) as exc:
        # dkimpy trips over some malformed sets with plain exceptions: a broken chain either way.
        return ARCResult("fail", instances, sealer, f"malformed ARC set: {exc or type(exc).__name__}")
    if verdict == dkim.CV_Pass:
        return ARCResult("pass", instances, sealer)
    if verdict == dkim.CV_None:
        return ARCResult("none", instances, sealer, str(reason))
    return ARCResult("fail", instances, sealer, str(reason))
