"""A queue over a temp data directory with real neighbours: the auth directory, the Maildir store, the
delivery log, a loopback DNS zone and loopback MX servers on one `remote_port` (127.0.0.1 and ::1)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from argon2 import PasswordHasher

from engine.auth import Directory
from engine.config import Config, DeliverySettings, DNSSettings
from engine.events import Event, EventBus
from engine.log import DeliveryLog
from engine.queue import Queue
from engine.services import Services
from engine.smtp.client import Timeouts
from engine.store import MailStore


def load_loopback() -> ModuleType:
    name = "postroom_tests_loopback"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "loopback.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lb = load_loopback()

HOSTNAME = "out.postroom.test"
LOCAL_DOMAIN = "home.test"
SENDER = "alice@home.test"
FAST_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
FAST_TIMEOUTS = Timeouts(connect=1.0, greeting=1.0, command=2.0, data_init=2.0, data_block=2.0, data_end=2.0)

# The scenario's zone: every MX host is on loopback; "::1" hosts meet the second server on the same port.
ZONE = """
    accept.test.       0 IN MX 10 mx.accept.test.
    mx.accept.test.    0 IN A 127.0.0.1
    grey.test.         0 IN MX 10 mx.grey.test.
    mx.grey.test.      0 IN A 127.0.0.1
    refused.test.      0 IN MX 10 mx.refused.test.
    mx.refused.test.   0 IN A 127.0.0.1
    bare.test.         0 IN A 127.0.0.1
    null.test.         0 IN MX 0 .
    drop.test.         0 IN MX 10 mx.drop.test.
    mx.drop.test.      0 IN A 127.0.0.1
    stall.test.        0 IN MX 10 mx.stall.test.
    mx.stall.test.     0 IN A 127.0.0.1
    loop.test.         0 IN MX 10 mx.loop.test.
    mx.loop.test.      0 IN AAAA ::1
    two.test.          0 IN MX 10 first.two.test.
    two.test.          0 IN MX 20 second.two.test.
    first.two.test.    0 IN AAAA ::1
    second.two.test.   0 IN A 127.0.0.1
    far.test.          0 IN MX 10 mx.far.test.
    mx.far.test.       0 IN A 127.0.0.1
    relay.test.        0 IN A 127.0.0.1
    tls.test.          0 IN MX 10 mx.tls.test.
    mx.tls.test.       0 IN AAAA ::1
"""
SERVFAIL = {"servfail.test"}

BEHAVIOURS = {
    "refused.test": lb.REFUSE,
    "grey.test": lb.GREYLIST,
    "drop.test": lb.DROP,
    "stall.test": lb.STALL,
}


class Harness:
    """Builds the pieces a queue needs over one data directory; several queues may share it (restarts)."""

    def __init__(self, data_dir: Path, zone_port: int, remote_port: int) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config = Config(
            data_dir=data_dir, hostname=HOSTNAME,
            dns=DNSSettings(nameservers=(("127.0.0.1", zone_port),), timeout=1.0),
            delivery=DeliverySettings(remote_port=remote_port, retry_schedule=(0.5, 0.5),
                                      connect_timeout=1.0))
        self.events = EventBus()
        self.seen: list[Event] = []
        self.events.subscribe(self.seen.append)
        self.directory = Directory(self.config.state_db, hasher=FAST_HASH)
        self.store = MailStore(self.config.mail_dir, hostname=HOSTNAME)
        self.log = DeliveryLog(self.config.state_db, self.events)
        self.directory.add_domain(LOCAL_DOMAIN)
        for account in (SENDER, "bob@home.test"):
            self.directory.add_account(account, "pw-" + account)
            self.store.create_account(account)
        self.queues: list[Queue] = []

    def configure(self, **delivery: Any) -> None:
        """New delivery settings, also for queues already built (as the desktop's settings panel does)."""
        self.config = replace(self.config, delivery=replace(self.config.delivery, **delivery))
        for queue in self.queues:
            queue.services.config = self.config

    def services(self) -> Services:
        return Services(config=self.config, directory=self.directory, store=self.store, events=self.events,
                        limiter=None, log=self.log)

    def queue(self, **kwargs: Any) -> Queue:
        kwargs.setdefault("timeouts", FAST_TIMEOUTS)
        kwargs.setdefault("poll_interval", 0.1)
        q = Queue(self.services(), **kwargs)
        self.queues.append(q)
        return q

    def inbox(self, account: str = SENDER) -> list[bytes]:
        box = self.store.mailbox(account)
        return [box.read("INBOX", m.uid) for m in box.messages("INBOX")]

    def log_events(self, recipient: str) -> list[str]:
        return [e.event for e in self.log.query(address=recipient, oldest_first=True, limit=None)]

    async def close(self) -> None:
        for q in self.queues:
            await q.stop()
            q.close()
        self.log.close()
        self.store.close()
        self.directory.close()


@pytest.fixture
def zone() -> Any:
    server = lb.ZoneServer(lb.Zone(ZONE, servfail=SERVFAIL)).start()
    yield server
    server.stop()


@pytest.fixture
def remote_port() -> int:
    return int(lb.free_port_both())


@pytest.fixture
async def mx(remote_port: int) -> AsyncIterator[Any]:
    """The remote sites on 127.0.0.1:remote_port, behaviour chosen by recipient domain."""
    server = await lb.MXServer(host="127.0.0.1", port=remote_port, hostname="mx.remote.test",
                               behaviours=BEHAVIOURS).start()
    yield server
    await server.stop()


@pytest.fixture
async def harness(tmp_path: Path, zone: Any, remote_port: int) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "data", zone.port, remote_port)
    yield h
    await h.close()


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return lb.eventually  # type: ignore[no-any-return]
