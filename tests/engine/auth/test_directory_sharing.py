"""A second Directory on the same file — the CLI while the server runs — is seen at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from engine.auth import Account, Directory
from engine.events import Event

from .conftest import FAST

ALICE = "alice@example.org"


def test_a_second_directory_sees_changes_immediately(example: Directory, state_db: Path,
                                                     events: list[Event]) -> None:
    announced = len(events)
    with Directory(state_db, hasher=FAST) as cli:
        before = example.data_version()
        cli.add_account("carol@example.org", "carol-secret")
        assert example.data_version() != before
        assert example.resolve("carol@example.org") == ["carol@example.org"]
        assert example.authenticate("carol@example.org", "carol-secret") == Account("carol@example.org", True, None)

        cli.set_enabled(ALICE, False)
        assert example.resolve(ALICE) == []
        cli.add_alias("@example.net", ["carol@example.org"])
        assert example.resolve("x@example.net") == ["carol@example.org"]
        cli.remove_domain("example.net", force=True)
        assert not example.is_local_domain("example.net")
    # notify() is for this object's own changes; the CLI's reach the engine through data_version().
    assert len(events) == announced


def test_data_version_moves_on_every_kind_of_change_and_only_then(example: Directory, state_db: Path) -> None:
    with Directory(state_db, hasher=FAST) as other:
        changes: list[Callable[[], object]] = [
            lambda: other.add_domain("example.com"),
            lambda: other.add_account("x@example.com", "pw"),
            lambda: other.set_quota("x@example.com", 1000),
            lambda: other.set_password("x@example.com", "pw2"),
            lambda: other.add_alias("a@example.com", ["x@example.com"]),
            lambda: other.remove_alias("a@example.com"),
            lambda: other.remove_account("x@example.com"),
            lambda: other.remove_domain("example.com"),
        ]
        seen = {example.data_version()}
        for change in changes:
            change()
            version = example.data_version()
            assert version not in seen
            seen.add(version)
        example.resolve(ALICE)
        example.list_accounts()
        example.authenticate(ALICE, "alice-secret")
        assert example.data_version() == version


def test_changes_from_another_process_are_seen(example: Directory, state_db: Path) -> None:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from argon2 import PasswordHasher
        from engine.auth import Directory
        with Directory(Path({str(state_db)!r}), hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                                        parallelism=1)) as d:
            d.add_account("dave@example.org", "dave-secret")
            d.add_alias("help@example.org", ["dave@example.org", "alice@example.org"])
    """)
    before = example.data_version()
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert example.data_version() != before
    assert example.resolve("help@example.org") == ["dave@example.org", ALICE]
    assert example.authenticate("dave@example.org", "dave-secret") is not None


def test_opening_an_existing_file_keeps_its_contents(example: Directory, state_db: Path) -> None:
    version = example.data_version()
    with Directory(state_db, hasher=FAST) as reopened:
        assert reopened.list_domains() == ["example.net", "example.org"]
        assert [a.address for a in reopened.list_accounts()] == ["alice@example.org", "bob@example.org"]
    assert example.data_version() == version      # opening (schema IF NOT EXISTS) changes nothing


def test_other_packages_tables_in_the_same_file_are_left_alone(state_db: Path) -> None:
    import sqlite3
    with sqlite3.connect(state_db) as db:
        db.execute("CREATE TABLE queue_items (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO queue_items VALUES (1)")
    db.close()
    with Directory(state_db, hasher=FAST) as directory:
        directory.add_domain("example.org")
        before = directory.data_version()
        with sqlite3.connect(state_db) as db:
            db.execute("INSERT INTO queue_items VALUES (2)")
        db.close()
        assert directory.data_version() == before   # queue traffic is not a directory change


def test_own_changes_are_announced_not_counted(example: Directory, state_db: Path, events: list[Event]) -> None:
    """The engine's watcher polls data_version() for the CLI's edits; its own go through notify once."""
    with Directory(state_db, hasher=FAST) as cli:
        version, cli_version = example.data_version(), cli.data_version()
        announced = len(events)
        example.add_alias("@example.net", [ALICE])
        example.remove_domain("example.net", force=True)
        example.authenticate(ALICE, "alice-secret")
        assert example.data_version() == version
        assert len(events) == announced + 2
        assert cli.data_version() != cli_version
