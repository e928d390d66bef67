"""Domains, accounts and aliases in `state.sqlite`, and the questions the servers ask of them.

Nothing is cached between calls: the CLI changes the same file from another process while the server
runs, and each lookup is one indexed query, so reading afresh is both correct and cheap.  Tables are
prefixed `auth_` because the queue and the delivery log keep theirs in the same file.  A counter in
`auth_meta`, bumped by triggers on every change from any connection, gives the `data_version()` the
engine polls to notice the CLI's edits (PRAGMA data_version would also move on every queue write).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from engine.events import DirectoryChanged, Event
from engine.interfaces import Account, Alias, DirectoryAPI

from . import names
from .names import DirectoryError

log = logging.getLogger(__name__)

MAX_ALIAS_DEPTH = 10       # alias -> alias -> ... hops followed before a chain counts as broken
MAX_PASSWORD = 4096        # characters; longer is a mistake or an attack, never a password
POSTMASTER = "postmaster"  # RFC 5321 §4.5.1: every domain must accept it, case-insensitively

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO auth_meta (key, value) VALUES ('version', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS auth_domains (
    name    TEXT PRIMARY KEY,          -- A-labels, lower-case
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,   -- creation order (postmaster fallback)
    address       TEXT NOT NULL UNIQUE,                -- lower-case local part @ A-label domain
    domain        TEXT NOT NULL,
    password_hash TEXT NOT NULL,                       -- argon2id PHC string, never the password
    enabled       INTEGER NOT NULL DEFAULT 1,
    quota         INTEGER,                             -- bytes; NULL = unlimited
    created       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_accounts_domain ON auth_accounts (domain, id);
CREATE TABLE IF NOT EXISTS auth_aliases (
    source  TEXT PRIMARY KEY,          -- user@domain, or @domain for the catch-all
    domain  TEXT NOT NULL,
    targets TEXT NOT NULL,             -- JSON array of addresses
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_aliases_domain ON auth_aliases (domain);
"""

_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_{op}_version AFTER {op} ON {table}
BEGIN UPDATE auth_meta SET value = value + 1 WHERE key = 'version'; END;
"""


def _schema_sql() -> str:
    triggers = "".join(
        _TRIGGER.format(table=table, op=op)
        for table in ("auth_domains", "auth_accounts", "auth_aliases")
        for op in ("INSERT", "UPDATE", "DELETE")
    )
    return _SCHEMA + triggers


def _account(row: sqlite3.Row) -> Account:
    return Account(address=row["address"], enabled=bool(row["enabled"]), quota=row["quota"])


def _check_password(password: str) -> None:
    if not isinstance(password, str):
        raise DirectoryError("a password must be text")
    if password == "":
        raise DirectoryError("an empty password is not allowed")
    if "\x00" in password:
        # RFC 4616 §2: SASL PLAIN separates fields with NUL, so such a password could never log in.
        raise DirectoryError("a password may not contain a NUL character")
    if len(password) > MAX_PASSWORD:
        raise DirectoryError(f"a password may be at most {MAX_PASSWORD} characters")


def _check_quota(quota: int | None) -> int | None:
    if quota is None:
        return None
    if isinstance(quota, bool) or not isinstance(quota, int) or quota <= 0:
        raise DirectoryError(f"a quota must be a positive number of bytes or none, not {quota!r}")
    return quota


class Directory:
    """The directory over one `state.sqlite`; safe to call from the engine loop and worker threads.

    `hasher` exists so tests can use a cheap argon2 profile; the default is argon2-cffi's recommended
    one (RFC 9106 low-memory).  `notify` receives a `DirectoryChanged` after each change made here.
    """

    def __init__(self, state_db: Path, notify: Callable[[Event], Any] | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self._path = Path(state_db)
        self._notify_cb = notify
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._lock = threading.RLock()
        self._dummy_lock = threading.Lock()
        self._dummy_hash: str | None = None
        # Autocommit mode: every transaction below is explicit, so none is left open between calls
        # (an open read transaction would hide the CLI's changes and pin the WAL).
        self._db = sqlite3.connect(self._path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._closed = False
        self._own_changes = 0
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # Whole script in one IMMEDIATE transaction: a CLI and a server starting together on a
            # fresh file must not both half-create the tables.
            self._db.executescript("BEGIN IMMEDIATE;" + _schema_sql() + "COMMIT;")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._db.close()
            raise

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self, notify: bool = True) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock first, so two processes never deadlock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._counter()
                yield self._db
                # Nobody else can write inside an IMMEDIATE transaction, so this delta is ours alone.
                own = self._counter() - before
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._own_changes += own
        if notify:
            self._announce()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so that a multi-query lookup sees one consistent snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _announce(self) -> None:
        if self._notify_cb is None:
            return
        try:
            self._notify_cb(DirectoryChanged())
        except Exception:
            # The change is committed; a failing listener must not make the caller think otherwise.
            log.exception("directory change listener failed")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _counter(self) -> int:
        row = self._db.execute("SELECT value FROM auth_meta WHERE key = 'version'").fetchone()
        return int(row[0])

    def data_version(self) -> int:
        """Moves whenever another connection or process (the CLI) changed domains, accounts or aliases.

        This object's own changes are left out: they are announced through `notify` already, and the
        engine's watcher would otherwise announce each of them a second time.  Cheap: one indexed read.
        """
        with self._lock:
            return self._counter() - self._own_changes

    # ------------------------------------------------------------------ domains

    def add_domain(self, name: str) -> str:
        """Adds a local domain; returns the stored (A-label) name."""
        dom = names.domain(name)
        with self._write() as db:
            if db.execute("SELECT 1 FROM auth_domains WHERE name = ?", (dom,)).fetchone():
                raise DirectoryError(f"domain {dom} already exists")
            db.execute("INSERT INTO auth_domains (name, created) VALUES (?, ?)", (dom, time.time()))
        return dom

    def remove_domain(self, name: str, force: bool = False) -> None:
        """Removes a domain; with accounts or aliases in it only when `force` (they go too).

        The mail files stay on disk: removing them is the store's job, asked for separately.
        """
        dom = names.domain(name)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM auth_domains WHERE name = ?", (dom,)).fetchone():
                raise DirectoryError(f"no domain {dom}")
            accounts = db.execute("SELECT count(*) FROM auth_accounts WHERE domain = ?", (dom,)).fetchone()[0]
            aliases = db.execute("SELECT count(*) FROM auth_aliases WHERE domain = ?", (dom,)).fetchone()[0]
            if (accounts or aliases) and not force:
                raise DirectoryError(
                    f"domain {dom} still has {accounts} account(s) and {aliases} alias(es); "
                    "remove them first or force")
            db.execute("DELETE FROM auth_accounts WHERE domain = ?", (dom,))
            db.execute("DELETE FROM auth_aliases WHERE domain = ?", (dom,))
            db.execute("DELETE FROM auth_domains WHERE name = ?", (dom,))

    def list_domains(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM auth_domains ORDER BY name")]

    def is_local_domain(self, domain: str) -> bool:
        try:
            dom = names.domain(domain)
        except DirectoryError:
            return False
        with self._lock:
            return self._domain_exists(dom)

    def _domain_exists(self, dom: str) -> bool:
        return self._db.execute("SELECT 1 FROM auth_domains WHERE name = ?", (dom,)).fetchone() is not None

    # ------------------------------------------------------------------ accounts

    def add_account(self, address: str, password: str, quota: int | None = None) -> Account:
        addr = names.account_address(address)
        dom = addr.rpartition("@")[2]
        _check_password(password)
        quota = _check_quota(quota)
        pw_hash = self._hasher.hash(password)   # outside the lock: argon2 takes a while on purpose
        with self._write() as db:
            self._check_new_account(addr)
            db.execute(
                "INSERT INTO auth_accounts (address, domain, password_hash, enabled, quota, created)"
                " VALUES (?, ?, ?, 1, ?, ?)", (addr, dom, pw_hash, quota, time.time()))
        return Account(address=addr, enabled=True, quota=quota)

    def check_new_account(self, address: str) -> str:
        """Raises what add_account would for this address (not an address, no such domain, taken), so the
        CLI and the GUI can say so before anyone types a password twice.  Returns the address as stored."""
        addr = names.account_address(address)
        with self._lock:
            self._check_new_account(addr)
        return addr

    def _check_new_account(self, addr: str) -> None:
        dom = addr.rpartition("@")[2]
        if not self._domain_exists(dom):
            raise DirectoryError(f"no domain {dom}; add the domain first")
        if self._account_row(addr) is not None:
            raise DirectoryError(f"account {addr} already exists")
        if self._alias_targets(addr) is not None:
            raise DirectoryError(f"{addr} is already an alias; remove the alias first")

    def remove_account(self, address: str) -> None:
        """Removes the account (aliases that name it stay, and deliver to it again if it comes back)."""
        addr = names.account_address(address)
        with self._write() as db:
            if db.execute("DELETE FROM auth_accounts WHERE address = ?", (addr,)).rowcount == 0:
                raise DirectoryError(f"no account {addr}")

    def set_password(self, address: str, password: str) -> None:
        addr = names.account_address(address)
        _check_password(password)
        pw_hash = self._hasher.hash(password)
        self._update_account(addr, "password_hash", pw_hash)

    def set_enabled(self, address: str, enabled: bool) -> None:
        self._update_account(names.account_address(address), "enabled", 1 if enabled else 0)

    def set_quota(self, address: str, quota: int | None) -> None:
        self._update_account(names.account_address(address), "quota", _check_quota(quota))

    def _update_account(self, addr: str, column: str, value: object) -> None:
        assert column in ("password_hash", "enabled", "quota")
        with self._write() as db:
            cur = db.execute(f"UPDATE auth_accounts SET {column} = ? WHERE address = ?", (value, addr))
            if cur.rowcount == 0:
                raise DirectoryError(f"no account {addr}")

    def get_account(self, address: str) -> Account | None:
        key = names.lookup_key(address)
        if key is None:
            return None
        with self._lock:
            row = self._account_row(f"{key[0]}@{key[1]}")
        return None if row is None else _account(row)

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        with self._lock:
            if domain is None:
                rows = self._db.execute("SELECT * FROM auth_accounts ORDER BY domain, address").fetchall()
            else:
                dom = names.domain(domain)
                if not self._domain_exists(dom):
                    raise DirectoryError(f"no domain {dom}")
                rows = self._db.execute(
                    "SELECT * FROM auth_accounts WHERE domain = ? ORDER BY address", (dom,)).fetchall()
        return [_account(r) for r in rows]

    def _account_row(self, addr: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM auth_accounts WHERE address = ?", (addr,)).fetchone()
        return row

    # ------------------------------------------------------------------ aliases

    def add_alias(self, source: str, targets: list[str], replace: bool = False) -> Alias:
        """Adds `source` (or `@domain`, the catch-all) delivering to `targets`.

        Targets in a local domain must already exist (account, alias, catch-all or postmaster) so a typo
        does not silently swallow mail; targets elsewhere are forwarded.  `replace` overwrites an alias.
        """
        src = names.alias_source(source)
        src_domain = src.rpartition("@")[2]
        if isinstance(targets, str) or not targets:
            raise DirectoryError("an alias needs at least one target address")
        with self._write() as db:
            if not self._domain_exists(src_domain):
                raise DirectoryError(f"no domain {src_domain}; add the domain first")
            if self._account_row(src) is not None:
                raise DirectoryError(f"{src} is an account; an alias of the same name would never be used")
            exists = self._alias_targets(src) is not None
            if exists and not replace:
                raise DirectoryError(f"alias {src} already exists")
            cleaned: list[str] = []
            for target in targets:
                t = self._clean_target(target, src)
                if t not in cleaned:
                    cleaned.append(t)
            if exists:
                db.execute("UPDATE auth_aliases SET targets = ? WHERE source = ?", (json.dumps(cleaned), src))
            else:
                db.execute("INSERT INTO auth_aliases (source, domain, targets, created) VALUES (?, ?, ?, ?)",
                           (src, src_domain, json.dumps(cleaned), time.time()))
        return Alias(source=src, targets=tuple(cleaned))

    def _clean_target(self, target: str, source: str) -> str:
        if not isinstance(target, str):
            raise DirectoryError(f"{target!r} is not an address")
        local, dom = names.split(target)
        try:
            dom = names.domain(dom)
        except DirectoryError as exc:
            raise DirectoryError(f"target {target!r}: {exc}") from None
        checked = names.remote_address(target)      # dot-atom syntax; "+tag" allowed in targets
        if not self._domain_exists(dom):
            return checked
        lp = local.lower()
        addr = f"{lp}@{dom}"
        if addr == source:
            raise DirectoryError(f"alias {source} cannot deliver to itself")
        if not self._known_local(lp, dom):
            raise DirectoryError(f"{addr} is neither an account nor an alias here; add it first")
        return addr

    def _known_local(self, lp: str, dom: str) -> bool:
        """Whether mail to lp@dom has somewhere to go by name (disabled accounts count: they exist)."""
        candidates = [lp]
        base = names.base_local_part(lp)
        if base is not None:
            candidates.append(base)
        for c in candidates:
            if self._account_row(f"{c}@{dom}") is not None or self._alias_targets(f"{c}@{dom}") is not None:
                return True
        return self._alias_targets(f"@{dom}") is not None or lp == POSTMASTER

    def remove_alias(self, source: str) -> None:
        src = names.alias_source(source)
        with self._write() as db:
            if db.execute("DELETE FROM auth_aliases WHERE source = ?", (src,)).rowcount == 0:
                raise DirectoryError(f"no alias {src}")

    def list_aliases(self) -> list[Alias]:
        with self._lock:
            rows = self._db.execute("SELECT source, targets FROM auth_aliases ORDER BY domain, source").fetchall()
        return [Alias(source=r[0], targets=tuple(json.loads(r[1]))) for r in rows]

    def _alias_targets(self, source: str) -> list[str] | None:
        row = self._db.execute("SELECT targets FROM auth_aliases WHERE source = ?", (source,)).fetchone()
        if row is None:
            return None
        targets: list[str] = json.loads(row[0])
        return targets

    # ------------------------------------------------------------------ routing

    def resolve(self, address: str) -> list[str]:
        """Local accounts a recipient delivers to; [] when nobody here takes it."""
        return self.expand(address)[0]

    def expand(self, address: str) -> tuple[list[str], list[str]]:
        """(local accounts, remote addresses) that mail to `address` goes to.

        Order of rules: the account itself; an alias of that name; the same two for `user` when the
        address is `user+tag` (RFC 5233); the domain's catch-all; postmaster's fallback (RFC 5321 §4.5.1).
        An address in a domain that is not local is returned as remote, unchanged but for the domain's
        case.  Alias chains are followed to depth MAX_ALIAS_DEPTH; loops end where they close.
        """
        local: list[str] = []
        remote: list[str] = []
        text = address.strip() if isinstance(address, str) else ""
        if text.strip("<>").lower() == POSTMASTER:
            # RFC 5321 §4.5.1: "RCPT TO:<Postmaster>" without a domain must be accepted.
            with self._read() as db:
                first = db.execute("SELECT name FROM auth_domains ORDER BY created, name LIMIT 1").fetchone()
                if first is not None:
                    self._expand_local(POSTMASTER, first[0], 0, set(), local, remote)
            return local, remote
        key = names.lookup_key(text)
        if key is None:
            return local, remote
        lp, dom = key
        with self._read():
            if self._domain_exists(dom):
                self._expand_local(lp, dom, 0, set(), local, remote)
            else:
                original_local = text.strip("<>").strip().rpartition("@")[0]
                remote.append(f"{original_local}@{dom}")
        return local, remote

    def _expand_target(self, target: str, depth: int, seen: set[str],
                       local: list[str], remote: list[str]) -> None:
        lp, _, dom = target.rpartition("@")
        if self._domain_exists(dom):
            self._expand_local(lp.lower(), dom, depth, seen, local, remote)
        elif target not in remote:
            remote.append(target)

    def _expand_local(self, lp: str, dom: str, depth: int, seen: set[str],
                      local: list[str], remote: list[str]) -> None:
        addr = f"{lp}@{dom}"
        if addr in seen:
            return                                   # a loop: this branch already went here
        if depth > MAX_ALIAS_DEPTH:
            log.warning("alias chain longer than %d at %s; not followed further", MAX_ALIAS_DEPTH, addr)
            return
        seen.add(addr)

        def via(name: str) -> bool:
            row = self._account_row(name)
            if row is not None:
                if row["enabled"] and name not in local:
                    local.append(name)
                return True                          # a disabled account still owns its name
            targets = self._alias_targets(name)
            if targets is not None:
                for t in targets:
                    self._expand_target(t, depth + 1, seen, local, remote)
                return True
            return False

        if via(addr):
            return
        base = names.base_local_part(lp)
        if base is not None and via(f"{base}@{dom}"):   # RFC 5233 sub-addressing
            return
        catch_all = self._alias_targets(f"@{dom}")
        if catch_all is not None:
            for t in catch_all:
                self._expand_target(t, depth + 1, seen, local, remote)
            return
        if lp == POSTMASTER:
            # RFC 5321 §4.5.1: postmaster must reach someone: the domain's first account, else anyone's.
            row = self._db.execute(
                "SELECT address FROM auth_accounts WHERE enabled AND domain = ? ORDER BY id LIMIT 1",
                (dom,)).fetchone()
            if row is None:
                row = self._db.execute(
                    "SELECT address FROM auth_accounts WHERE enabled ORDER BY id LIMIT 1").fetchone()
            if row is not None and row[0] not in local:
                local.append(row[0])

    # ------------------------------------------------------------------ login and sending

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is right and the account enabled, else None.

        CPU-heavy by design (argon2): call it from a worker thread.  Unknown users cost one verify
        against a dummy hash so response time does not tell which addresses exist.
        """
        row = self._login_row(username)
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            password = ""
        if row is None or not row["enabled"]:
            self._verify(self._dummy(), password)
            return None
        stored: str = row["password_hash"]
        if not self._verify(stored, password):
            return None
        if self._hasher.check_needs_rehash(stored):
            new_hash = self._hasher.hash(password)
            with self._write(notify=False) as db:
                # Only if nobody changed the password meanwhile.
                db.execute("UPDATE auth_accounts SET password_hash = ? WHERE address = ? AND password_hash = ?",
                           (new_hash, row["address"], stored))
        return _account(row)

    def _login_row(self, username: str) -> sqlite3.Row | None:
        if not isinstance(username, str):
            return None
        with self._lock:
            if "@" not in username:
                # A bare local part is unambiguous only while there is exactly one domain.
                doms = self._db.execute("SELECT name FROM auth_domains LIMIT 2").fetchall()
                if len(doms) != 1:
                    return None
                username = f"{username}@{doms[0][0]}"
            key = names.lookup_key(username)
            if key is None:
                return None
            return self._account_row(f"{key[0]}@{key[1]}")

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            log.error("unusable password hash in the directory; login refused")
            return False

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))
            return self._dummy_hash

    def may_send_as(self, account: str, address: str) -> bool:
        """Whether a logged-in account may use `address` as envelope or From: sender.

        Its own address and +tag forms, and aliases that deliver to it; never a catch-all (that would let
        it send as anyone in the domain), never another account's address; the null sender always.
        """
        if not isinstance(address, str) or address.strip() in ("", "<>"):
            return True                              # RFC 5321 §4.5.5 null reverse-path
        acc_key = names.lookup_key(account)
        key = names.lookup_key(address)
        if acc_key is None or key is None:
            return False
        acc = f"{acc_key[0]}@{acc_key[1]}"
        lp, dom = key
        with self._read():
            if self._account_row(acc) is None:
                return False
            candidates = [lp]
            base = names.base_local_part(lp)
            if base is not None:
                candidates.append(base)
            for c in candidates:
                name = f"{c}@{dom}"
                if name == acc:
                    return True
                if self._account_row(name) is not None:
                    return False                     # someone else's mailbox
                targets = self._alias_targets(name)
                if targets is not None:
                    local: list[str] = []
                    seen = {name}
                    for t in targets:
                        self._expand_target(t, 1, seen, local, [])
                    return acc in local
        return False


def _implements_directory_api(directory: Directory) -> DirectoryAPI:
    """Never called: makes mypy check that Directory satisfies the protocol servers rely on."""
    return directory
