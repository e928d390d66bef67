"""Settings: `postroom.toml` in the data directory, validated in full before anything starts.

A person edits this file, so every mistake is reported as one line naming the key and the line it is on,
and a file with any mistake refuses to load at all: the server never starts half-configured.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

CONFIG_NAME = "postroom.toml"

# Services the engine knows, with their standard ports.  A service set to "" is off.
STANDARD_LISTEN: dict[str, str] = {
    "smtp": "0.0.0.0:25",
    "submission": "0.0.0.0:587",
    "submissions": "0.0.0.0:465",
    "imap": "0.0.0.0:143",
    "imaps": "0.0.0.0:993",
    "pop3": "0.0.0.0:110",
    "pop3s": "0.0.0.0:995",
}

DEFAULT_RETRY_SCHEDULE = "5m,10m,20m,40m,1h,2h,4h"


class ConfigError(ValueError):
    """A setting is wrong; str() is one line a person can act on."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}


def default_hostname() -> str:
    """The machine's fully qualified name, as Postfix's `myhostname` defaults to it.

    Many machines resolve their own name to `localhost` through /etc/hosts; a greeting, a Received: line
    or a HELO saying "localhost" tells the other side nothing, and some servers refuse such a HELO, so
    the plain host name is the better guess there (the settings name the real one)."""
    fqdn = socket.getfqdn()
    if fqdn.lower().split(".")[0] != "localhost":
        return fqdn
    name = socket.gethostname()
    return name if name and name.lower().split(".")[0] != "localhost" else fqdn


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `1h`, `5d` (also `250ms`, `2w`) in seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h or 5d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for showing settings back to a person."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_size(value: int | str) -> int:
    """A byte count: an integer, or text such as `25MiB`, `10M`, `512K`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 25MiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size such as 25MiB or 1048576")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress | None:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (all addresses); "" means the service is off."""
    text = text.strip()
    if not text:
        return None
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]]*):(\d+)$", text)
    if not m:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:2525 or [::1]:2525)")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return ListenAddress(m.group(1) or "0.0.0.0", port)


@dataclass(frozen=True)
class TLSSettings:
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Limits:
    message_size: int = 25 * 1024 * 1024
    recipients: int = 100
    connections_per_ip: int = 10
    connections_per_user: int = 10
    smtp_line: int = 1000
    smtp_command: int = 512
    imap_line: int = 64 * 1024
    auth_failures: int = 5            # failures per IP before the delay grows
    auth_window: float = 300.0        # seconds over which failures count
    idle_timeout: float = 1800.0      # IMAP autologout (RFC 3501 §5.4: at least 30 minutes)
    smtp_timeout: float = 300.0       # RFC 5321 §4.5.3.2.7: server timeout of at least 5 minutes


@dataclass(frozen=True)
class DNSSettings:
    nameservers: tuple[tuple[str, int], ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True)
class DeliverySettings:
    remote_port: int = 25
    retry_schedule: tuple[float, ...] = (300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0, 14400.0)
    max_queue_lifetime: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0
    concurrency: int = 20
    concurrency_per_domain: int = 4
    smarthost: ListenAddress | None = None
    smarthost_username: str = ""
    smarthost_password: str = ""
    smarthost_tls: str = "required"     # required | starttls | implicit
    require_verified_tls: bool = False
    connect_timeout: float = 30.0
    helo_name: str = ""                 # defaults to hostname
    # Local delivery also runs in a helper process (engine/store/agent).  None (not set): the engine's
    # default, on for `postroom serve` and off in the desktop app (see Engine's `delivery_agent`).
    local_process: bool | None = None


@dataclass(frozen=True)
class AuthenticationSettings:
    dmarc_reject: str = "reject"        # reject | quarantine | mark
    spf_fail: str = "mark"              # mark | junk | reject


@dataclass(frozen=True)
class Config:
    """Everything `postroom.toml` can say, with the defaults a fresh install runs with."""

    data_dir: Path
    hostname: str = field(default_factory=lambda: default_hostname())
    listen: dict[str, ListenAddress | None] = field(
        default_factory=lambda: {k: parse_listen(v) for k, v in STANDARD_LISTEN.items()}
    )
    tls: TLSSettings = TLSSettings()
    limits: Limits = Limits()
    dns: DNSSettings = DNSSettings()
    delivery: DeliverySettings = DeliverySettings()
    authentication: AuthenticationSettings = AuthenticationSettings()

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.sqlite"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def with_listen(self, overrides: dict[str, ListenAddress | None]) -> Config:
        """`--listen` replaces the whole table: only the services named are started."""
        return replace(self, listen={name: overrides.get(name) for name in STANDARD_LISTEN})


def default_data_dir() -> Path:
    env = os.environ.get("POSTROOM_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("postroom", appauthor=False))


# --- loading --------------------------------------------------------------------------------------

_SCHEMA: dict[str, dict[str, str] | str] = {
    "hostname": "str",
    "listen": {name: "listen" for name in STANDARD_LISTEN},
    "tls": {"cert": "path", "key": "path"},
    "limits": {
        "message_size": "size", "recipients": "posint", "connections_per_ip": "posint",
        "connections_per_user": "posint", "smtp_line": "posint", "smtp_command": "posint",
        "imap_line": "size", "auth_failures": "posint", "auth_window": "duration",
        "idle_timeout": "duration", "smtp_timeout": "duration",
    },
    "dns": {"nameservers": "nameservers", "timeout": "duration"},
    "delivery": {
        "remote_port": "port", "retry_schedule": "schedule", "max_queue_lifetime": "duration",
        "delay_warning": "duration", "concurrency": "posint", "concurrency_per_domain": "posint",
        "smarthost": "listen", "smarthost_username": "str", "smarthost_password": "str",
        "smarthost_tls": "choice:required,starttls,implicit", "require_verified_tls": "bool",
        "connect_timeout": "duration", "helo_name": "str", "local_process": "bool",
    },
    "authentication": {
        "dmarc_reject": "choice:reject,quarantine,mark",
        "spf_fail": "choice:mark,junk,reject",
    },
}


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """Where a key is written, so an error can point at the line (tomllib keeps no positions)."""
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip().strip('"')
            # A whole table: `[section]` itself, or a misspelt top-level table name such as `[lsiten]`.
            if (section is not None and key == "" and current == section) or (section is None and current == key):
                return number
            continue
        m = re.match(r'^("?)([A-Za-z0-9_\-.]+)\1\s*=', line)
        if m and current == section and m.group(2) == key:
            return number
        if m and section is not None and current is None and m.group(2) == f"{section}.{key}":
            return number
    return None


def _parse_nameservers(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('expected a list such as ["127.0.0.1:5353", "::1"]')
    out: list[tuple[str, int]] = []
    for item in value:
        item = item.strip()
        m = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", item)
        if m:
            out.append((m.group(1), int(m.group(2) or 53)))
        elif item.count(":") == 1:
            host, port = item.split(":")
            out.append((host, int(port)))
        elif item:
            out.append((item, 53))
    return tuple(out)


def _convert(kind: str, value: Any) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("expected a quoted string")
        return value
    if kind == "path":
        if not isinstance(value, str):
            raise ValueError("expected a quoted file path")
        return Path(value).expanduser() if value else None
    if kind == "listen":
        if not isinstance(value, str):
            raise ValueError('expected "HOST:PORT" or "" (off)')
        return parse_listen(value)
    if kind == "size":
        return parse_size(value)
    if kind == "posint":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("expected a whole number of at least 1")
        return value
    if kind == "port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError("expected a port number from 1 to 65535")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind == "duration":
        if not isinstance(value, str):
            raise ValueError('expected a quoted duration such as "30s", "5m", "1h" or "5d"')
        return parse_duration(value)
    if kind == "schedule":
        if not isinstance(value, str):
            raise ValueError('expected a quoted list of durations such as "5m,10m,1h"')
        steps = tuple(parse_duration(part) for part in value.split(",") if part.strip())
        if not steps:
            raise ValueError("the retry schedule needs at least one duration")
        return steps
    if kind == "nameservers":
        return _parse_nameservers(value)
    if kind.startswith("choice:"):
        choices = kind.split(":", 1)[1].split(",")
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value
    raise AssertionError(kind)


def parse_config(text: str, data_dir: Path, source: str = CONFIG_NAME) -> Config:
    """Validate a whole settings file; the first problem found is raised as ConfigError."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None

    def fail(section: str | None, key: str, message: str) -> ConfigError:
        line = _line_of(text, section, key)
        where = f"{source}:{line}" if line else source
        name = f"{section}.{key}" if section and key else (section or key)
        return ConfigError(f"{where}: {name}: {message}")

    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in doc.items():
        spec = _SCHEMA.get(key)
        if spec is None:
            raise fail(None, key, f"unknown setting (known: {', '.join(sorted(_SCHEMA))})")
        if isinstance(spec, str):
            try:
                values[key] = _convert(spec, value)
            except ValueError as exc:
                raise fail(None, key, str(exc)) from None
            continue
        if not isinstance(value, dict):
            raise fail(None, key, f"expected a [{key}] table")
        converted: dict[str, Any] = {}
        for sub, subvalue in value.items():
            kind = spec.get(sub)
            if kind is None:
                raise fail(key, sub, f"unknown setting (known in [{key}]: {', '.join(sorted(spec))})")
            try:
                converted[sub] = _convert(kind, subvalue)
            except ValueError as exc:
                raise fail(key, sub, str(exc)) from None
        sections[key] = converted

    hostname = values.get("hostname") or default_hostname()
    if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*$",
                    hostname):
        raise fail(None, "hostname", f"{hostname!r} is not a host name")
    listen = {k: parse_listen(v) for k, v in STANDARD_LISTEN.items()}
    listen.update(sections.get("listen", {}))
    tls = TLSSettings(**sections.get("tls", {}))
    if (tls.cert is None) != (tls.key is None):
        raise fail("tls", "cert" if tls.cert is None else "key", "set both tls.cert and tls.key, or neither")
    return Config(
        data_dir=data_dir,
        hostname=hostname.lower(),
        listen=listen,
        tls=tls,
        limits=Limits(**sections.get("limits", {})),
        dns=DNSSettings(**sections.get("dns", {})),
        delivery=DeliverySettings(**sections.get("delivery", {})),
        authentication=AuthenticationSettings(**sections.get("authentication", {})),
    )


def load_config(data_dir: Path) -> Config:
    """Read `postroom.toml` from the data directory; a missing file means all defaults."""
    path = data_dir / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(data_dir=data_dir)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, data_dir, source=str(path))
