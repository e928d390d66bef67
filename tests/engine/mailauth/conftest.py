"""A real Engine on loopback with a test DNS zone (dnslib) and a remote MX sink (aiosmtpd).

The engine runs on its own loop in a thread (`EngineThread`, as under the desktop app), so tests drive it
with blocking smtplib clients.  The zone serves whatever records a test adds; `[dns] nameservers` points
the engine's resolver at it and `[delivery] remote_port` sends outbound mail to the sink.  Every client
here connects from 127.0.0.1, so SPF records in the zone allow or deny `ip4:127.0.0.1`.
"""

from __future__ import annotations

import importlib.util
import re
import smtplib
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from argon2 import PasswordHasher
from dnslib import MX, QTYPE, RR, TXT, A

from engine.auth import Directory
from engine.config import (
    AuthenticationSettings,
    Config,
    DeliverySettings,
    DNSSettings,
    ListenAddress,
    TLSSettings,
)
from engine.log import DeliveryLog
from engine.mailauth.keys import KeyStore, generate
from engine.runtime import Engine, EngineThread
from engine.tls import ensure_certificate


def load_loopback() -> ModuleType:
    """The shared loopback peers (tests/engine/queue/loopback.py); test directories are not packages."""
    name = "postroom_tests_loopback"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "queue" / "loopback.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lb = load_loopback()

HOSTNAME = "mx.home.test"
LOCAL = "home.test"
ALICE = "alice@home.test"
BOB = "bob@home.test"
PASSWORDS = {ALICE: "alice-pw", BOB: "bob-pw"}
FAST_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
TIMEOUT = 10.0


class DNSZone:
    """The records the test's DNS server answers with (added at any time, served at once)."""

    def __init__(self) -> None:
        self.zone = lb.Zone("")
        self.server = lb.ZoneServer(self.zone).start()

    @property
    def port(self) -> int:
        return int(self.server.port)

    def txt(self, name: str, text: str) -> None:
        data = text.encode()
        # RFC 1035 §3.3.14: a TXT record is a list of strings of at most 255 octets each.
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        self.zone.records.append(RR(name, QTYPE.TXT, rdata=TXT(chunks), ttl=0))

    def a(self, name: str, address: str = "127.0.0.1") -> None:
        self.zone.records.append(RR(name, QTYPE.A, rdata=A(address), ttl=0))

    def mx(self, name: str, host: str, preference: int = 10) -> None:
        self.zone.records.append(RR(name, QTYPE.MX, rdata=MX(host, preference), ttl=0))

    def servfail(self, name: str) -> None:
        self.zone.servfail.add(name.lower().rstrip("."))

    def publish_keys(self, store: KeyStore, domain: str) -> None:
        for sel in store.published(domain):
            self.txt(sel.dns_name, sel.dns_value)

    def stop(self) -> None:
        self.server.stop()


@dataclass
class SenderKey:
    """A remote domain's own DKIM key, made with `cryptography` and used through dkimpy directly."""

    selector: str
    private: bytes
    public: str
    algorithm: bytes

    def record(self, kind: str) -> str:
        return f"v=DKIM1; k={kind}; p={self.public}"


@pytest.fixture(scope="session")
def sender_keys() -> dict[str, SenderKey]:
    rsa_private, rsa_public = generate("rsa")
    ed_private, ed_public = generate("ed25519")
    return {"rsa": SenderKey("s1", rsa_private, rsa_public, b"rsa-sha256"),
            "ed25519": SenderKey("s2", ed_private, ed_public, b"ed25519-sha256")}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_certificate(Config(data_dir=tmp_path_factory.mktemp("tls"), hostname=HOSTNAME))


@pytest.fixture
def zone() -> Iterator[DNSZone]:
    z = DNSZone()
    yield z
    z.stop()


class Running:
    """One started Engine and the helpers a test uses to talk to it."""

    def __init__(self, engine: Engine, thread: EngineThread, sink: Any) -> None:
        self.engine = engine
        self.thread = thread
        self.sink = sink

    @property
    def data_dir(self) -> Path:
        return self.engine.config.data_dir

    def port(self, service: str) -> int:
        return self.engine.address_of(service)[1]

    def configure(self, **authentication: str) -> None:
        """Changes `[authentication]` on the running engine, as the Settings panel does."""
        config = self.engine.config
        new = replace(config, authentication=replace(config.authentication, **authentication))
        self.thread.submit(self.engine.apply_config(new)).result(TIMEOUT)

    def mx(self, helo: str = "client.remote.test") -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port("smtp"), local_hostname=helo, timeout=TIMEOUT)

    def submission(self, user: str = ALICE) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port("submission"), local_hostname="laptop.home.test",
                              timeout=TIMEOUT)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE          # the engine's certificate is self-signed
        client.starttls(context=context)
        client.login(user, PASSWORDS[user])
        return client

    def folder(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """Message files of one folder, oldest first, with CRLF line ends as on the wire (the Maildir
        holds LF, as mail programs expect)."""
        user, domain = address.split("@")
        box = self.data_dir / "mail" / domain / user
        if folder != "INBOX":
            box = box / f".{folder}"
        files = [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()]
        return [re.sub(rb"\r?\n", b"\r\n", p.read_bytes())
                for p in sorted(files, key=lambda p: p.stat().st_mtime_ns)]

    def log_rows(self, event: str) -> list[Any]:
        log: DeliveryLog = self.engine.log
        return log.query(status=event, limit=None, oldest_first=True)

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        """Polls with a deadline (for work another thread finishes after the SMTP reply)."""
        end = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)


@pytest.fixture
def make_engine(tmp_path: Path, zone: DNSZone, tls_files: tuple[Path, Path]) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**authentication: str) -> Running:
        data = tmp_path / "data"
        data.mkdir()
        directory = Directory(data / "state.sqlite", hasher=FAST_HASH)
        directory.add_domain(LOCAL)
        for address, password in PASSWORDS.items():
            directory.add_account(address, password)
        directory.close()
        remote_port = lb.free_port()
        listen: dict[str, ListenAddress | None] = {name: None for name in Config(data_dir=data).listen}
        listen["smtp"] = ListenAddress("127.0.0.1", 0)
        listen["submission"] = ListenAddress("127.0.0.1", 0)
        config = Config(
            data_dir=data, hostname=HOSTNAME, listen=listen, tls=TLSSettings(*tls_files),
            dns=DNSSettings(nameservers=(("127.0.0.1", zone.port),), timeout=1.0),
            delivery=DeliverySettings(remote_port=remote_port, connect_timeout=2.0, retry_schedule=(1.0,)),
            authentication=AuthenticationSettings(**authentication))
        engine = Engine(data, config=config)
        thread = EngineThread(engine)
        thread.start()
        sink = thread.submit(lb.MXServer(host="127.0.0.1", port=remote_port, hostname="mx.remote.test").start()
                             ).result(TIMEOUT)
        engine.open()
        for address in PASSWORDS:
            engine.store.create_account(address)
        thread.submit(engine.start(strict=True)).result(TIMEOUT)
        running = Running(engine, thread, sink)
        started.append(running)
        return running

    yield start
    for running in started:
        running.thread.submit(running.sink.stop()).result(TIMEOUT)
        running.thread.shutdown()
