"""Opening a mailbox: the account's password, checked by the directory, optionally remembered.

The viewer reads mail of local accounts only with their password (the same one IMAP asks for), so
opening the window does not expose every mailbox on the machine.  A password the person chose to
remember lives in the system keyring through engine.secrets.SecretStore, or — only after they agreed
to it, because no keyring works here — in its 0600 file.  Blocking calls (keyring, argon2): run them
through the bridge, never on the GUI thread.
"""

from __future__ import annotations

from typing import Any

from engine.secrets import KeyringUnavailable, SecretStore

SECRET_PREFIX = "mailbox-password:"

__all__ = ["SECRET_PREFIX", "KeyringUnavailable", "forget_password", "remember_password",
           "remembered_password", "secret_name", "verify_password"]


def secret_name(address: str) -> str:
    return SECRET_PREFIX + address.strip().lower()


def verify_password(directory: Any, address: str, password: str) -> bool:
    """True when `password` opens `address` (the directory's argon2 check; slow on purpose)."""
    return bool(password) and directory.authenticate(address, password) is not None


def remembered_password(secrets: SecretStore, directory: Any, address: str) -> str | None:
    """The remembered password when there is one and it still works (it may have been changed)."""
    password = secrets.get(secret_name(address))
    if password and verify_password(directory, address, password):
        return password
    return None


def remember_password(secrets: SecretStore, address: str, password: str, *, allow_file: bool = False) -> str:
    """Stores the password; returns "keyring" or "file".  KeyringUnavailable (with the reason) when no
    keyring works and the file was not allowed: ask the person, then call again with allow_file."""
    return secrets.set(secret_name(address), password, allow_file=allow_file)


def forget_password(secrets: SecretStore, address: str) -> None:
    secrets.delete(secret_name(address))
