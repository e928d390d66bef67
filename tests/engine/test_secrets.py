"""SecretStore: the system keyring when it works, a 0600 file only with consent, and never a hang.

The keyring is the real `keyring` package with its backend chosen through `keyring.set_keyring`: an
in-memory backend (keyring ships none; keyrings.alt is not installed), keyring's own `fail.Keyring`
(what a headless box without a Secret Service gets), and a backend that blocks like a locked keyring
waiting for an unlock prompt.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest
from keyring.compat import properties

from engine.config import Config, ListenAddress, parse_config
from engine.secrets import SECRETS_FILE, SMARTHOST_PASSWORD, KeyringUnavailable, SecretStore, with_secrets

BackendT = TypeVar("BackendT", bound=keyring.backend.KeyringBackend)

# keyring's own backends have unannotated constructors; this gives the no-keyring one a type.
fail_keyring: Callable[[], keyring.backend.KeyringBackend] = keyring.backends.fail.Keyring


class UseKeyring(Protocol):
    """The `use_keyring` fixture: makes `backend` keyring's backend and hands it back."""

    def __call__(self, backend: BackendT, /) -> BackendT: ...


class MemoryBackend(keyring.backend.KeyringBackend):
    """Secrets in a dict.  Its priority refuses, so keyring never picks it on its own elsewhere."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("test backend: only used when set explicitly")

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring leaves it unannotated
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("no such password")


class HangingBackend(keyring.backend.KeyringBackend):
    """Blocks every call until released, like a locked keyring whose unlock prompt nobody answers."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("test backend: only used when set explicitly")

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring leaves it unannotated
        self.release = threading.Event()
        self.entered = threading.Event()

    def _block(self) -> None:
        self.entered.set()
        self.release.wait(10)

    def get_password(self, service: str, username: str) -> str | None:
        self._block()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._block()

    def delete_password(self, service: str, username: str) -> None:
        self._block()


@pytest.fixture
def use_keyring() -> Iterator[UseKeyring]:
    """Sets keyring's process-wide backend for one test and puts the previous one back."""
    previous = keyring.get_keyring()
    chosen: list[keyring.backend.KeyringBackend] = []

    def choose(backend: BackendT, /) -> BackendT:
        keyring.set_keyring(backend)
        chosen.append(backend)
        return backend

    yield choose
    for backend in chosen:
        if isinstance(backend, HangingBackend):
            backend.release.set()          # lets the abandoned worker thread finish
    keyring.set_keyring(previous)


def file_of(data_dir: Path) -> Path:
    return data_dir / SECRETS_FILE


# --- a working keyring -------------------------------------------------------------------------------


def test_a_working_keyring_holds_the_secret_and_no_file_is_written(tmp_path: Path,
                                                                   use_keyring: UseKeyring) -> None:
    backend = use_keyring(MemoryBackend())
    store = SecretStore(tmp_path)
    assert store.keyring_status() == ""
    assert store.set(SMARTHOST_PASSWORD, "s3cret") == "keyring"
    assert store.get(SMARTHOST_PASSWORD) == "s3cret"
    assert list(backend.items.values()) == ["s3cret"]
    assert not file_of(tmp_path).exists()
    store.delete(SMARTHOST_PASSWORD)
    assert store.get(SMARTHOST_PASSWORD) is None
    store.delete(SMARTHOST_PASSWORD)            # deleting what is not there is not an error


def test_two_data_directories_do_not_share_secrets(tmp_path: Path, use_keyring: UseKeyring) -> None:
    use_keyring(MemoryBackend())
    first, second = SecretStore(tmp_path / "one"), SecretStore(tmp_path / "two")
    first.set("name", "first value")
    assert second.get("name") is None
    second.set("name", "second value")
    assert first.get("name") == "first value"


def test_a_secret_moved_into_the_keyring_leaves_the_file(tmp_path: Path, use_keyring: UseKeyring) -> None:
    use_keyring(fail_keyring())
    SecretStore(tmp_path).set("a", "in the file", allow_file=True)
    SecretStore(tmp_path).set("b", "also in the file", allow_file=True)
    use_keyring(MemoryBackend())
    store = SecretStore(tmp_path)
    assert store.set("a", "now in the keyring") == "keyring"
    assert json.loads(file_of(tmp_path).read_text()) == {"b": "also in the file"}
    assert store.set("b", "keyring too") == "keyring"
    assert not file_of(tmp_path).exists(), "an empty secrets file is removed, not left behind"


# --- no keyring --------------------------------------------------------------------------------------


def test_without_a_keyring_set_refuses_and_writes_nothing(tmp_path: Path, use_keyring: UseKeyring) -> None:
    use_keyring(fail_keyring())
    store = SecretStore(tmp_path)
    assert "no system keyring is available" in store.keyring_status()
    with pytest.raises(KeyringUnavailable, match="no system keyring is available"):
        store.set(SMARTHOST_PASSWORD, "s3cret")
    assert list(tmp_path.iterdir()) == []
    assert store.get(SMARTHOST_PASSWORD) is None, "a missing keyring is not an error when reading"


def test_with_consent_the_secret_goes_to_a_file_only_its_owner_can_read(tmp_path: Path,
                                                                         use_keyring: UseKeyring) -> None:
    use_keyring(fail_keyring())
    store = SecretStore(tmp_path / "data")
    assert store.set(SMARTHOST_PASSWORD, "s3cret", allow_file=True) == "file"
    path = file_of(tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {SMARTHOST_PASSWORD: "s3cret"}
    assert [p.name for p in path.parent.iterdir()] == [SECRETS_FILE], "no temporary file left behind"
    assert store.get(SMARTHOST_PASSWORD) == "s3cret"
    store.delete(SMARTHOST_PASSWORD)
    assert not path.exists()


def test_the_file_is_0600_even_under_a_permissive_umask(tmp_path: Path, use_keyring: UseKeyring) -> None:
    import os

    use_keyring(fail_keyring())
    old = os.umask(0)
    try:
        SecretStore(tmp_path).set("x", "y", allow_file=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(file_of(tmp_path).stat().st_mode) == 0o600


# --- a hanging keyring -------------------------------------------------------------------------------


def test_a_hanging_keyring_is_given_up_on_after_the_timeout(tmp_path: Path, use_keyring: UseKeyring) -> None:
    backend = use_keyring(HangingBackend())
    store = SecretStore(tmp_path, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(KeyringUnavailable, match=r"did not answer within 0\.2 seconds"):
        store.set(SMARTHOST_PASSWORD, "s3cret")
    assert backend.entered.is_set()
    assert time.monotonic() - started < 2.0
    assert not file_of(tmp_path).exists()

    # Reading falls back to the file (written with consent) instead of waiting for the keyring.
    assert store.set(SMARTHOST_PASSWORD, "s3cret", allow_file=True) == "file"
    started = time.monotonic()
    assert store.get(SMARTHOST_PASSWORD) == "s3cret"
    assert "did not answer" in store.keyring_status()
    assert time.monotonic() - started < 3.0


# --- filling in the settings -------------------------------------------------------------------------


def test_with_secrets_fills_in_the_smarthost_password(tmp_path: Path, use_keyring: UseKeyring) -> None:
    use_keyring(MemoryBackend())
    store = SecretStore(tmp_path)
    plain = Config(data_dir=tmp_path)
    assert with_secrets(plain, store) is plain, "no smarthost: nothing to fill in"

    relayed = parse_config('[delivery]\nsmarthost = "relay.example.test:587"\n', tmp_path)
    assert relayed.delivery.smarthost == ListenAddress("relay.example.test", 587)
    assert with_secrets(relayed, store) is relayed, "no stored password: unchanged"
    store.set(SMARTHOST_PASSWORD, "relay password")
    assert with_secrets(relayed, store).delivery.smarthost_password == "relay password"

    explicit = parse_config('[delivery]\nsmarthost = "relay.example.test:587"\nsmarthost_password = "in toml"\n',
                            tmp_path)
    assert with_secrets(explicit, store).delivery.smarthost_password == "in toml", "the file's own wins"
