"""Password checks: argon2id hashes only, rehash on changed parameters, safe from many threads."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from argon2 import PasswordHasher

from engine.auth import Account, Directory

from .conftest import FAST

ALICE = "alice@example.org"


def stored_hash(state_db: Path, address: str) -> str:
    with sqlite3.connect(state_db) as db:
        (value,) = db.execute("SELECT password_hash FROM auth_accounts WHERE address = ?", (address,)).fetchone()
    db.close()
    return str(value)


def test_the_right_password_logs_in(example: Directory) -> None:
    assert example.authenticate(ALICE, "alice-secret") == Account(ALICE, True, None)
    assert example.authenticate("ALICE@Example.org", "alice-secret") == Account(ALICE, True, None)


def test_wrong_or_odd_credentials_do_not(example: Directory) -> None:
    for username, password in [
        (ALICE, "alice-secreT"), (ALICE, ""), (ALICE, "bob-secret"), ("carol@example.org", "alice-secret"),
        ("alice+tag@example.org", "alice-secret"), ("", ""), ("alice@", "x"), (ALICE, "x" * 10_000),
    ]:
        assert example.authenticate(username, password) is None, (username, password)


def test_disabled_accounts_cannot_log_in(example: Directory) -> None:
    example.set_enabled(ALICE, False)
    assert example.authenticate(ALICE, "alice-secret") is None


def test_a_bare_local_part_logs_in_only_while_there_is_one_domain(directory: Directory) -> None:
    directory.add_domain("example.org")
    directory.add_account(ALICE, "alice-secret")
    assert directory.authenticate("Alice", "alice-secret") == Account(ALICE, True, None)
    directory.add_domain("example.net")
    assert directory.authenticate("alice", "alice-secret") is None


def test_passwords_are_stored_only_as_argon2id_hashes(example: Directory, state_db: Path) -> None:
    example.add_account("carol@example.org", "Carol-Unique-Passphrase-1")
    example.set_password("bob@example.org", "Bob-Unique-Passphrase-2")
    assert example.authenticate("carol@example.org", "Carol-Unique-Passphrase-1")
    assert stored_hash(state_db, "carol@example.org").startswith("$argon2id$")
    on_disk = b"".join(p.read_bytes() for p in state_db.parent.glob(state_db.name + "*"))
    for password in ("alice-secret", "bob-secret", "Carol-Unique-Passphrase-1", "Bob-Unique-Passphrase-2"):
        assert password.encode() not in on_disk


def test_the_default_cost_is_argon2_cffis_recommended_profile(state_db: Path) -> None:
    with Directory(state_db) as directory:
        directory.add_domain("example.org")
        directory.add_account(ALICE, "pw")
    recommended = PasswordHasher()
    prefix = (f"$argon2id$v=19$m={recommended.memory_cost},t={recommended.time_cost},"
              f"p={recommended.parallelism}$")
    assert stored_hash(state_db, ALICE).startswith(prefix)


def test_a_login_rehashes_when_the_parameters_changed(example: Directory, state_db: Path) -> None:
    old = stored_hash(state_db, ALICE)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    with Directory(state_db, hasher=stronger) as upgraded:
        assert upgraded.authenticate(ALICE, "alice-secret") == Account(ALICE, True, None)
        assert upgraded.authenticate(ALICE, "wrong") is None
    new = stored_hash(state_db, ALICE)
    assert new != old and stronger.verify(new, "alice-secret") and not stronger.check_needs_rehash(new)
    assert example.authenticate(ALICE, "alice-secret") is not None


def test_logins_from_many_threads_at_once(example: Directory) -> None:
    attempts = [(ALICE, "alice-secret"), ("bob@example.org", "bob-secret"), (ALICE, "nope"),
                ("nobody@example.org", "x")] * 25
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda a: example.authenticate(*a), attempts))
    expected = [Account(ALICE, True, None), Account("bob@example.org", True, None), None, None] * 25
    assert results == expected


def test_a_corrupt_hash_refuses_login_without_raising(example: Directory, state_db: Path) -> None:
    with sqlite3.connect(state_db) as db:
        db.execute("UPDATE auth_accounts SET password_hash = 'garbage' WHERE address = ?", (ALICE,))
    db.close()
    assert example.authenticate(ALICE, "alice-secret") is None


def test_fast_hasher_is_really_used_by_the_fixture(example: Directory, state_db: Path) -> None:
    assert stored_hash(state_db, ALICE).startswith(f"$argon2id$v=19$m={FAST.memory_cost},t=1,p=1$")
