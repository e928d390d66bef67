"""Writes settings back into `postroom.toml` without losing what a person wrote there.

The desktop's Settings panel and setup wizard change a few keys at a time; tomlkit edits the document in
place so comments, ordering and untouched keys survive.  Every change is validated with the same
`parse_config` the engine loads with before the file is replaced (atomically), so the GUI can never save a
file the server would refuse to start with.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table
from tomlkit.toml_document import TOMLDocument

from engine.config import CONFIG_NAME, STANDARD_LISTEN, Config, ConfigError, format_duration, parse_config

# A value of None in a change set removes the key (the default applies again).
Changes = Mapping[str, Any]

_HEADER = """\
# Postroom settings. Every key is optional; a missing key takes its default.
# The desktop app rewrites values here but keeps your comments.
"""


def _load(text: str) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except Exception as exc:   # tomlkit raises several unrelated classes for bad syntax
        raise ConfigError(f"{CONFIG_NAME}: not valid TOML: {exc}") from None


def apply_changes(text: str, changes: Changes) -> str:
    """The document `text` with each dotted key in `changes` set (or removed when None)."""
    doc = _load(text) if text.strip() else _load(_HEADER)
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        if section:
            table = doc.get(section)
            if table is None:
                if value is None:
                    continue
                table = tomlkit.table()
                doc.add(section, table)
            if not isinstance(table, Table | dict):
                raise ConfigError(f"{CONFIG_NAME}: {section} is not a table")
            if value is None:
                if key in table:
                    del table[key]
            else:
                table[key] = value
        elif value is None:
            if key in doc:
                del doc[key]
        else:
            doc[key] = value      # tomlkit places a new top-level key before the first table
    return tomlkit.dumps(doc)


def config_values(config: Config) -> dict[str, Any]:
    """Every setting as the TOML file spells it (durations as "5m", listeners as "HOST:PORT")."""
    d = config.delivery
    return {
        "hostname": config.hostname,
        **{f"listen.{name}": str(addr) if addr else "" for name, addr in config.listen.items()},
        "tls.cert": str(config.tls.cert) if config.tls.cert else "",
        "tls.key": str(config.tls.key) if config.tls.key else "",
        "limits.message_size": config.limits.message_size,
        "limits.recipients": config.limits.recipients,
        "limits.connections_per_ip": config.limits.connections_per_ip,
        "limits.connections_per_user": config.limits.connections_per_user,
        "limits.auth_failures": config.limits.auth_failures,
        "limits.auth_window": format_duration(config.limits.auth_window),
        "limits.idle_timeout": format_duration(config.limits.idle_timeout),
        "limits.smtp_timeout": format_duration(config.limits.smtp_timeout),
        "dns.nameservers": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in config.dns.nameservers],
        "dns.timeout": format_duration(config.dns.timeout),
        "delivery.remote_port": d.remote_port,
        "delivery.retry_schedule": ",".join(format_duration(s) for s in d.retry_schedule),
        "delivery.max_queue_lifetime": format_duration(d.max_queue_lifetime),
        "delivery.smarthost": str(d.smarthost) if d.smarthost else "",
        "delivery.smarthost_username": d.smarthost_username,
        "delivery.smarthost_tls": d.smarthost_tls,
        "delivery.require_verified_tls": d.require_verified_tls,
    }


class SettingsStore:
    """`postroom.toml` of one data directory: read, change a few keys, validate, replace atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    @property
    def path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    def read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def preview(self, changes: Changes) -> tuple[str, Config]:
        """The new file text and the Config it loads as; raises ConfigError naming the bad key."""
        text = apply_changes(self.read_text(), changes)
        return text, parse_config(text, self.data_dir, source=CONFIG_NAME)

    def save(self, changes: Changes) -> Config:
        """Validates, then replaces the file in one rename (a crash leaves the old or the new file)."""
        text, config = self.preview(changes)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        mode = 0o600
        with contextlib.suppress(FileNotFoundError):
            mode = self.path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(prefix=".postroom.", suffix=".toml", dir=self.data_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return config


def listen_changes(addresses: Mapping[str, str]) -> dict[str, Any]:
    """A change set for the [listen] table from {service: "HOST:PORT" or ""}."""
    unknown = set(addresses) - set(STANDARD_LISTEN)
    if unknown:
        raise ConfigError(f"unknown service(s): {', '.join(sorted(unknown))}")
    return {f"listen.{name}": value for name, value in addresses.items()}
