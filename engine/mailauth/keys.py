"""DKIM signing keys: generated here, kept under <data>/dkim/, rotated without breaking signatures in transit.

On disk, per domain (directories 0700, files 0600, written to a temporary name, fsynced and renamed):

    dkim/<domain>/selectors.json      every selector: algorithm, public key, state and dates
    dkim/<domain>/<selector>.key      the private key: RSA as PEM, ed25519 as the base64 32-byte seed

Each generation is a pair, ed25519 and RSA-2048, both published and both used (RFC 8463 §1 and §4:
ed25519 for receivers that know it, RSA for those that do not; RFC 8301 §3.2 asks for RSA keys of at
least 2048 bits).  Selectors are named by creation date: `pr20261127e` and `pr20261127r`.  Rotating
retires the active pair: its private keys are deleted at once (it signs nothing more), but its public
keys stay published until no signature it made can still be checked (`retention`); then `prune` drops it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine.auth import names

ED25519 = "ed25519"
RSA = "rsa"
ALGORITHMS = (ED25519, RSA)               # signing order: ed25519 first, then RSA
RSA_BITS = 2048                           # RFC 8301 §3.2
ACTIVE = "active"
RETIRED = "retired"
STATE_FILE = "selectors.json"


class DKIMKeyError(ValueError):
    """A key operation that cannot be done; str() is one line a person can act on."""


@dataclass(frozen=True)
class Selector:
    """One published DKIM key (RFC 6376 §3.1: the selector names it under <selector>._domainkey)."""

    domain: str
    selector: str
    algorithm: str                     # "ed25519" | "rsa"
    public: str                        # base64: raw 32 bytes (RFC 8463 §4.2) or RSA SubjectPublicKeyInfo DER
    created: float
    state: str = ACTIVE                # active | retired
    retired: float | None = None
    publish_until: float | None = None  # retired: keep the DNS record until then

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def dns_value(self) -> str:
        """The TXT record (RFC 6376 §3.6.1; k=ed25519 from RFC 8463 §4.2)."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"

    @property
    def signature_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == ED25519 else b"rsa-sha256"

    def published_at(self, now: float) -> bool:
        return self.state == ACTIVE or (self.publish_until is not None and now < self.publish_until)


@dataclass(frozen=True)
class SigningKey:
    selector: Selector
    private: bytes                     # as dkimpy's sign() takes it: PEM for RSA, base64 seed for ed25519


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, created 0600 from the first byte (never world-readable, not even briefly)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)      # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def generate(algorithm: str) -> tuple[bytes, str]:
    """A new key pair: (private key as dkimpy takes it, public key for the p= tag)."""
    if algorithm == ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(seed), base64.b64encode(public).decode("ascii")
    if algorithm == RSA:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        der = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        return pem, base64.b64encode(der).decode("ascii")
    raise DKIMKeyError(f"unknown key algorithm {algorithm!r}")


def selector_names(taken: set[str], when: float) -> dict[str, str]:
    """Date-named selectors for a new pair, e.g. {"ed25519": "pr20261127e", "rsa": "pr20261127r"}."""
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y%m%d")
    for n in range(1, 1000):
        base = f"pr{stamp}" if n == 1 else f"pr{stamp}-{n}"
        names_ = {ED25519: f"{base}e", RSA: f"{base}r"}
        if not taken & set(names_.values()):
            return names_
    raise DKIMKeyError("too many key generations today")


class KeyStore:
    """The DKIM keys under one data directory; safe to share between threads and with the CLI process.

    Reads are cached per domain and refreshed when `selectors.json` changes on disk, so a key made
    with `postroom dkim new` is used by a running server for its next message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "dkim"
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, list[Selector], dict[str, bytes]]] = {}

    # --- reading ------------------------------------------------------------------------------------

    def _dir(self, domain: str) -> Path:
        return self.root / names.domain(domain)      # IDNA A-labels only: no path tricks in a domain

    def _load(self, domain: str) -> tuple[list[Selector], dict[str, bytes]]:
        folder = self._dir(domain)
        state = folder / STATE_FILE
        try:
            stamp = state.stat().st_mtime_ns
        except FileNotFoundError:
            return [], {}
        with self._lock:
            cached = self._cache.get(folder.name)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
        raw = json.loads(state.read_text(encoding="utf-8"))
        selectors = [Selector(**item) for item in raw.get("selectors", [])]
        private: dict[str, bytes] = {}
        for sel in selectors:
            if sel.state == ACTIVE:
                private[sel.selector] = (folder / f"{sel.selector}.key").read_bytes()
        with self._lock:
            self._cache[folder.name] = (stamp, selectors, private)
        return selectors, private

    def selectors(self, domain: str) -> list[Selector]:
        """Every selector the domain has (active and retired), oldest first."""
        return list(self._load(domain)[0])

    def published(self, domain: str, now: float | None = None) -> list[Selector]:
        """What DNS must hold now: the active pair and retired keys still within their retention."""
        when = time.time() if now is None else now
        return [s for s in self._load(domain)[0] if s.published_at(when)]

    def signing_keys(self, domain: str) -> list[SigningKey]:
        """The active keys, ed25519 first; [] when the domain has none (then mail goes unsigned)."""
        try:
            selectors, private = self._load(domain)
        except names.DirectoryError:
            return []
        active = [s for s in selectors if s.state == ACTIVE and s.selector in private]
        active.sort(key=lambda s: ALGORITHMS.index(s.algorithm) if s.algorithm in ALGORITHMS else 99)
        return [SigningKey(s, private[s.selector]) for s in active]

    def domains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / STATE_FILE).is_file())

    # --- changing -----------------------------------------------------------------------------------

    def _save(self, domain: str, selectors: list[Selector]) -> None:
        folder = self._dir(domain)
        body = json.dumps({"selectors": [asdict(s) for s in selectors]}, indent=2, sort_keys=True)
        _write_private(folder / STATE_FILE, body.encode("utf-8") + b"\n")

    def _new_pair(self, domain: str, existing: list[Selector], now: float) -> list[Selector]:
        folder = self._dir(domain)
        _ensure_dir(self.root)
        _ensure_dir(folder)
        made: list[Selector] = []
        taken = {s.selector for s in existing}
        for algorithm, selector in selector_names(taken, now).items():
            private, public = generate(algorithm)
            _write_private(folder / f"{selector}.key", private)
            made.append(Selector(folder.name, selector, algorithm, public, now))
        return made

    def new(self, domain: str, now: float | None = None) -> list[Selector]:
        """A first key pair for a domain; refused when it already has active keys (use rotate)."""
        when = time.time() if now is None else now
        existing = self.selectors(domain)
        if any(s.state == ACTIVE for s in existing):
            raise DKIMKeyError(f"{names.domain(domain)} already has DKIM keys; `postroom dkim rotate` replaces them")
        made = self._new_pair(domain, existing, when)
        self._save(domain, existing + made)
        return made

    def rotate(self, domain: str, retention: float, now: float | None = None) -> list[Selector]:
        """A new active pair; the old active keys retire and stay published for `retention` seconds."""
        when = time.time() if now is None else now
        existing = self.selectors(domain)
        if not existing:
            raise DKIMKeyError(f"{names.domain(domain)} has no DKIM keys yet; `postroom dkim new` makes them")
        made = self._new_pair(domain, existing, when)
        kept = [replace(s, state=RETIRED, retired=when, publish_until=when + retention) if s.state == ACTIVE
                else s for s in existing]
        self._save(domain, kept + made)
        folder = self._dir(domain)
        for sel in existing:
            if sel.state == ACTIVE:         # a retired key signs nothing more: its secret half can go now
                (folder / f"{sel.selector}.key").unlink(missing_ok=True)
        self.prune(domain, when)
        return made

    def prune(self, domain: str, now: float | None = None) -> list[Selector]:
        """Forgets retired keys whose retention has passed (and deletes their private key files)."""
        when = time.time() if now is None else now
        existing = self.selectors(domain)
        gone = [s for s in existing if not s.published_at(when)]
        if not gone:
            return []
        self._save(domain, [s for s in existing if s.published_at(when)])
        folder = self._dir(domain)
        for sel in gone:
            (folder / f"{sel.selector}.key").unlink(missing_ok=True)
        return gone
