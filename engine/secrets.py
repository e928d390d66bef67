"""The desktop's own secrets (the smarthost password): in the system keyring, or a 0600 file only by consent.

keyring can be missing, can raise `NoKeyringError` on a headless box with no Secret Service, and a locked
keyring can block for as long as an unlock prompt stays open.  So every keyring call here runs in its own
daemon thread and is abandoned after a timeout, and callers on a GUI thread call these methods through the
engine bridge, never directly.  When the keyring cannot be used, `set` refuses with `KeyringUnavailable`
(whose message says why) unless the caller passes `allow_file=True` — which it may only do after telling
the person that the secret will sit in a file readable by their user account, and hearing yes.

File layout: `<data>/secrets.json`, mode 0600, a JSON object {name: value}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from engine.config import Config

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "postroom"
SECRETS_FILE = "secrets.json"
DEFAULT_TIMEOUT = 5.0
SMARTHOST_PASSWORD = "smarthost_password"


class SecretStoreError(Exception):
    """A secret could not be read or written; str() says why in words."""


class KeyringUnavailable(SecretStoreError):
    """No usable keyring: the caller may ask the person whether a 0600 file is acceptable."""


def _with_timeout(func: Callable[[], T], timeout: float, what: str) -> T:
    """Runs `func` in a daemon thread; a hung keyring is left behind rather than waited for."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"keyring-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise KeyringUnavailable(f"the system keyring did not answer within {timeout:g} seconds "
                                 "(is it locked, waiting for a password?)")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class SecretStore:
    """Secrets of one data directory.  `backend` is a keyring backend object; None means the system's."""

    def __init__(self, data_dir: Path, *, backend: Any = None, service: str = SERVICE,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.data_dir = Path(data_dir)
        self.service = service
        self.timeout = timeout
        self._backend = backend
        # One keyring entry per data directory, so two test or profile directories never share secrets.
        self._prefix = f"{self.data_dir.resolve()}:"

    @property
    def file_path(self) -> Path:
        return self.data_dir / SECRETS_FILE

    # --- keyring -----------------------------------------------------------------------------------

    def _keyring(self) -> Any:
        if self._backend is not None:
            return self._backend
        try:
            import keyring
        except ImportError:
            raise KeyringUnavailable("the keyring package is not installed") from None
        return keyring.get_keyring()

    def _keyring_call(self, what: str, func: Callable[[Any], T]) -> T:
        def call() -> T:
            return func(self._keyring())

        try:
            return _with_timeout(call, self.timeout, what)
        except KeyringUnavailable:
            raise
        except Exception as exc:
            # keyring.errors.NoKeyringError, KeyringLocked, dbus errors, ...: all mean "not usable here".
            name = type(exc).__name__
            text = str(exc).strip() or name
            if name == "NoKeyringError":
                text = "no system keyring is available (no Secret Service on this desktop?)"
            raise KeyringUnavailable(f"the system keyring cannot be used: {text}") from None

    def keyring_status(self) -> str:
        """"" when the keyring works, else why not (probes with a harmless read)."""
        try:
            self._keyring_call("probe", lambda k: k.get_password(self.service, self._prefix + "probe"))
        except KeyringUnavailable as exc:
            return str(exc)
        return ""

    # --- the file fallback -------------------------------------------------------------------------

    def _read_file(self) -> dict[str, str]:
        try:
            data = json.loads(self.file_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SecretStoreError(f"cannot read {self.file_path}: {exc}") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file_path.with_name(f".{SECRETS_FILE}.{os.getpid()}.tmp")
        # Created 0600 from the start: the secret is never readable by others, not even for a moment.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.file_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- the API -----------------------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The keyring's value, else the file's, else None (a broken keyring is not an error here)."""
        try:
            value = self._keyring_call("get", lambda k: k.get_password(self.service, self._prefix + name))
        except KeyringUnavailable as exc:
            log.info("keyring not used for %s: %s", name, exc)
            value = None
        if value is not None:
            return str(value)
        return self._read_file().get(name)

    def set(self, name: str, value: str, *, allow_file: bool = False) -> str:
        """Stores a secret; returns "keyring" or "file" (the latter only with allow_file)."""
        try:
            self._keyring_call("set", lambda k: k.set_password(self.service, self._prefix + name, value))
        except KeyringUnavailable:
            if not allow_file:
                raise
            data = self._read_file()
            data[name] = value
            self._write_file(data)
            return "file"
        # The keyring has it now: drop any older copy from the file.
        self._forget_file_copy(name)
        return "keyring"

    def delete(self, name: str) -> None:
        with contextlib.suppress(KeyringUnavailable):
            self._keyring_call("delete", lambda k: _delete(k, self.service, self._prefix + name))
        self._forget_file_copy(name)

    def _forget_file_copy(self, name: str) -> None:
        data = self._read_file()
        if name not in data:
            return
        del data[name]
        if data:
            self._write_file(data)
        else:
            self.file_path.unlink(missing_ok=True)


def _delete(backend: Any, service: str, key: str) -> None:
    try:
        backend.delete_password(service, key)
    except Exception as exc:
        if type(exc).__name__ != "PasswordDeleteError":   # "no such password" is fine
            raise


def with_secrets(config: Config, store: SecretStore) -> Config:
    """The config with secrets kept outside postroom.toml filled in (blocking: call off the GUI thread)."""
    if config.delivery.smarthost is None or config.delivery.smarthost_password:
        return config
    password = store.get(SMARTHOST_PASSWORD)
    if not password:
        return config
    return replace(config, delivery=replace(config.delivery, smarthost_password=password))
