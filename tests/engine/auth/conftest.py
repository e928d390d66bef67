"""Fixtures for the auth tests: a Directory on a fresh state.sqlite with a cheap argon2 profile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from engine.auth import Directory
from engine.events import Event

# Tests only: the real default is argon2-cffi's recommended profile (see test_directory_login.py).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def state_db(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def directory(state_db: Path, events: list[Event]) -> Iterator[Directory]:
    with Directory(state_db, notify=events.append, hasher=FAST) as d:
        yield d


@pytest.fixture
def example(directory: Directory) -> Directory:
    """example.org with alice and bob (created in that order), and an empty second domain."""
    directory.add_domain("example.org")
    directory.add_domain("example.net")
    directory.add_account("alice@example.org", "alice-secret")
    directory.add_account("bob@example.org", "bob-secret")
    return directory
