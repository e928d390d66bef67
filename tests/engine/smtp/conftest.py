"""Real SMTP listeners on loopback for the server tests.

The listeners run on their own asyncio loop in a background thread, as under the engine, so the tests
drive them with blocking clients (smtplib, raw sockets, swaks).  Directory, MailStore and DeliveryLog are
the real ones over a temporary data directory; the TLS certificate is engine.tls's self-signed one.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import shutil
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher

from engine.auth import AuthFailureLimiter, Directory
from engine.config import Config, Limits
from engine.eventloop import new_event_loop
from engine.events import EventBus
from engine.log import DeliveryLog
from engine.services import Services
from engine.smtp.server import SMTPListener
from engine.store import MailStore
from engine.tls import ensure_certificate, server_context

T = TypeVar("T")
FAST_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)   # tests only
HOSTNAME = "mx.example.test"
MESSAGE = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: hello\r\n"
           b"Message-ID: <1@remote.test>\r\n\r\nHi Alice.\r\n")
REPLY_TIMEOUT = 10.0


class LoopThread:
    """An asyncio loop in a thread; `run` waits for a coroutine on it from the test's thread."""

    def __init__(self) -> None:
        self.loop = new_event_loop()     # the loop the engine runs on (engine/eventloop.py)
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtp-test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class RecordingOutbound:
    """The Outbound seam as the queue will implement it, keeping what it was given (or failing)."""

    items: list[tuple[str, list[str], bytes, str]] = field(default_factory=list)
    fail: OSError | None = None

    async def enqueue(self, sender: str, recipients: list[str], data: bytes, *,
                      received_from: str = "", authenticated_as: str = "") -> str:
        if self.fail is not None:
            raise self.fail
        self.items.append((sender, list(recipients), data, authenticated_as))
        return f"Q{len(self.items)}"


@dataclass
class Server:
    """One running listener and the data directory behind it."""

    role: str
    port: int
    listener: SMTPListener
    services: Services
    loop: LoopThread

    @property
    def data_dir(self) -> Path:
        return self.services.config.data_dir

    def messages(self, address: str) -> list[bytes]:
        """Every message file of the account's INBOX, oldest first."""
        user, domain = address.split("@")
        box = self.data_dir / "mail" / domain / user
        files = [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()]
        return [p.read_bytes() for p in sorted(files, key=lambda p: p.stat().st_mtime_ns)]

    def log_events(self, event: str | None = None) -> list[Any]:
        log = self.services.log
        assert isinstance(log, DeliveryLog)
        if self.listener.records is not None:
            assert self.listener.records.flush(), "the log writer keeps up"
        return log.query(status=event, limit=None, oldest_first=True)

    def smtp(self, **kwargs: Any) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=REPLY_TIMEOUT, **kwargs)

    def smtp_ssl(self) -> smtplib.SMTP_SSL:
        return smtplib.SMTP_SSL("127.0.0.1", self.port, timeout=REPLY_TIMEOUT, context=client_tls())

    def raw(self) -> RawClient:
        return RawClient(socket.create_connection(("127.0.0.1", self.port), timeout=REPLY_TIMEOUT))

    def stop(self, grace: float = 1.0) -> None:
        self.loop.run(self.listener.stop(grace))


def client_tls() -> ssl.SSLContext:
    """The tests trust anything: the server's certificate is self-signed (as a fresh install's is)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RawClient:
    """A byte-exact SMTP client for what smtplib will not send (smuggling, pipelining tricks)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> list[bytes]:
        """One whole (possibly multi-line) reply, as its lines without CRLF."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError(f"connection closed; got {lines!r} {self.buffer!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def code(self) -> str:
        """The last line of the next reply, decoded: "250 2.0.0 OK"."""
        return self.reply()[-1].decode()

    def command(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.code()

    def closed(self) -> bool:
        """True once the server has closed the connection (reads until EOF, with the socket timeout)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False

    def starttls(self) -> None:
        self.sock = client_tls().wrap_socket(self.sock)

    def login(self, user: str, password: str) -> str:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(f"AUTH PLAIN {token}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    config = Config(data_dir=tmp_path_factory.mktemp("tls"), hostname=HOSTNAME)
    return ensure_certificate(config)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path, loop_thread: LoopThread,
                tls_files: tuple[Path, Path]) -> Iterator[ServerFactory]:
    """Starts listeners over one data dir: example.test with alice and bob (and an alias to a remote)."""
    data = tmp_path / "data"
    data.mkdir()
    events = EventBus()
    directory = Directory(data / "state.sqlite", notify=events.publish, hasher=FAST_HASH)
    directory.add_domain("example.test")
    directory.add_account("alice@example.test", "alice-pw")
    directory.add_account("bob@example.test", "bob-pw")
    directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    directory.add_alias("fwd@example.test", ["someone@remote.test"])
    base = Config(data_dir=data, hostname=HOSTNAME)
    store = MailStore(base.mail_dir, hostname=HOSTNAME)
    log = DeliveryLog(base.state_db, events)
    servers: list[Server] = []

    def start(role: str = "smtp", *, limits: dict[str, Any] | None = None,
              outbound: RecordingOutbound | None = None, tls: bool = True,
              limiter: AuthFailureLimiter | None = None,
              filters: list[Any] | None = None) -> Server:
        config = dataclasses.replace(base, limits=dataclasses.replace(Limits(), **(limits or {})))
        services = Services(
            config=config, directory=directory, store=store, events=events,
            limiter=limiter if limiter is not None else AuthFailureLimiter(
                max_failures=50, window=60, base_delay=0.0, max_delay=0.0),
            tls=server_context(*tls_files) if tls else None, outbound=outbound, log=log,
            inbound_filters=filters or [])
        listener = SMTPListener(services, role)
        loop_thread.run(listener.start("127.0.0.1", 0))
        server = Server(role, listener.address[1], listener, services, loop_thread)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.listener._server is not None:
            server.stop(0.5)
    store.close()
    log.close()
    directory.close()


@pytest.fixture
def mx(make_server: ServerFactory) -> Server:
    return make_server("smtp")


@pytest.fixture
def submission(make_server: ServerFactory) -> Server:
    return make_server("submission", outbound=RecordingOutbound())


def wait_until(predicate: Callable[[], bool], deadline: float = 5.0) -> bool:
    """Polls with a deadline (for effects another thread makes, never as a stand-in for a reply)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def have(program: str) -> bool:
    return shutil.which(program) is not None
