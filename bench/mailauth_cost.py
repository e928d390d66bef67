"""CPU cost of mail authentication per message: verification on the MX and DKIM signing on submission.

DNS is answered from memory (engine.mailauth.dnssource.StaticSource), so what is measured is the work
beyond DNS: SPF evaluation (pyspf, with its DNS replays), both DKIM signatures (ed25519 and RSA-2048),
DMARC, the ARC check and the Authentication-Results field.  Target: verification under 5 ms per message.

Named baselines, measured in the same run:
- "dkimpy verify x2": dkimpy alone (with its own body canonicalization, engine/mailauth/canon.py put
  aside) verifying the same two signatures with a dict dnsfunc;
- "dkimpy sign x2": dkimpy alone signing with the same two keys, the same way.

    .venv/bin/python bench/mailauth_cost.py [--messages 300] [--sizes 4096,102400] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim

from engine.mailauth import canon
from engine.mailauth import dkim as our_dkim
from engine.mailauth.dmarc import public_suffix_list
from engine.mailauth.dnssource import StaticSource
from engine.mailauth.headers import split_message
from engine.mailauth.keys import ALGORITHMS, Selector, SigningKey, generate
from engine.mailauth.results import header_field
from engine.mailauth.service import Verifier

TARGET_MS = 5.0


def make_message(i: int, size: int) -> bytes:
    head = (f"Received: from mail.bank.test (mail.bank.test [127.0.0.1]) by mx.home.test with ESMTPS id {i}; "
            f"Mon, 1 Jan 2024 10:00:00 +0000\r\nFrom: Bank <alerts@bank.test>\r\nTo: alice@home.test\r\n"
            f"Subject: statement {i}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: <{i}.{time.time_ns()}@bank.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.  \r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def sender_keys() -> list[SigningKey]:
    keys = []
    for algorithm in ALGORITHMS:
        private, public = generate(algorithm)
        keys.append(SigningKey(Selector("bank.test", f"b{algorithm[0]}", algorithm, public, time.time()), private))
    return keys


def zone(keys: list[SigningKey]) -> StaticSource:
    records = {k.selector.dns_name: k.selector.dns_value for k in keys}
    records["bank.test"] = "v=spf1 include:_spf.bank.test -all"
    records["_spf.bank.test"] = "v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.1 -all"
    records["_dmarc.bank.test"] = "v=DMARC1; p=reject; rua=mailto:dmarc@bank.test"
    return StaticSource.txt(records)


def timed(fn: Callable[[], object], count: int, deadline: float) -> list[float]:
    """Per-call CPU milliseconds (process time: the work, not waiting), at most until `deadline`."""
    out: list[float] = []
    for _ in range(count):
        started = time.process_time()
        fn()
        out.append((time.process_time() - started) * 1000)
        if time.monotonic() > deadline:
            break
    return out


def baseline(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` with dkimpy's own relaxed body canonicalization in place."""
    def run() -> object:
        canon.uninstall()
        try:
            return fn()
        finally:
            canon.install()
    return run


def row(name: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"{name:34} {statistics.median(samples):9.3f} {p95:9.3f} {len(samples):6d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sizes", default="4096,102400")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds

    public_suffix_list()                    # parsed once per process; not a per-message cost
    keys = sender_keys()
    source = zone(keys)
    verifier = Verifier(source, hostname="mx.home.test", in_thread=False)
    table = {name: value for name, value in ((k.selector.dns_name, k.selector.dns_value.encode()) for k in keys)}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(name.decode().rstrip("."))

    loop = asyncio.new_event_loop()
    print(f"{'per message (CPU ms)':34} {'median':>9} {'p95':>9} {'n':>6}")
    verdicts = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            plain = make_message(0, size)
            fields, _ = split_message(plain)
            signed = our_dkim.sign(plain, fields, "bank.test", keys) + plain
            print(f"-- {len(signed)} octets, 2 signatures (ed25519, rsa-sha256)")

            def verify(signed: bytes = signed) -> None:
                results = loop.run_until_complete(verifier.verify(signed, "127.0.0.1", "alerts@bank.test",
                                                                  "mail.bank.test"))
                header_field("mx.home.test", results)
                verdicts.append(results.summary())

            def dkimpy_verify(signed: bytes = signed) -> None:
                d = dkim.DKIM(signed)
                assert d.verify(0, dnsfunc=dnsfunc) and d.verify(1, dnsfunc=dnsfunc)

            def sign(plain: bytes = plain) -> None:
                our_dkim.sign(plain, split_message(plain)[0], "bank.test", keys)

            def dkimpy_sign(plain: bytes = plain) -> None:
                d = dkim.DKIM(plain)
                for key in keys:
                    d.sign(key.selector.selector.encode(), b"bank.test", key.private,
                           signature_algorithm=key.selector.signature_algorithm,
                           canonicalize=(b"relaxed", b"relaxed"))

            verify()                          # warm-up (imports, first-use caches)
            v = timed(verify, args.messages, deadline)
            print(row("verify: SPF+DKIM x2+DMARC+ARC+A-R", v))
            print(row("  baseline: dkimpy verify x2", timed(baseline(dkimpy_verify), args.messages, deadline)))
            print(row("sign: ed25519 + rsa-2048", timed(sign, args.messages, deadline)))
            print(row("  baseline: dkimpy sign x2", timed(baseline(dkimpy_sign), args.messages, deadline)))
            verdict = "meets" if statistics.median(v) < TARGET_MS else "MISSES"
            print(f"   verification {verdict} the {TARGET_MS:.0f} ms target at this size")
    finally:
        loop.close()
    assert all(s == "spf=pass dkim=pass,pass dmarc=pass arc=none" for s in verdicts), set(verdicts)


if __name__ == "__main__":
    main()
