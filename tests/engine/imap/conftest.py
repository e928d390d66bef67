"""A real IMAP service for the tests: `imap` (STARTTLS) and `imaps` listeners on ephemeral loopback ports,
over a temp data directory with the real Directory and MailStore, on an event loop in its own thread so
blocking clients (imaplib, curl, mbsync) can talk to it from the test's thread."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from argon2 import PasswordHasher

from engine.auth import AuthFailureLimiter, Directory
from engine.config import Config, Limits
from engine.eventloop import new_event_loop
from engine.events import EventBus
from engine.imap.server import IMAPListener
from engine.services import Services
from engine.store import MailStore

T = TypeVar("T")

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)   # tests only: cheap hashes

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice secret"
BOB = "bob@example.test"
BOB_PW = "bob-secret"
TIMEOUT = 10.0

_CA: tuple[trustme.CA, trustme.LeafCert] | None = None


def test_ca() -> tuple[trustme.CA, trustme.LeafCert]:
    global _CA
    if _CA is None:
        ca = trustme.CA()
        _CA = (ca, ca.issue_cert("localhost", "127.0.0.1", common_name="localhost"))
    return _CA


test_ca.__test__ = False  # type: ignore[attr-defined]


class IMAPServer:
    """Both IMAP listeners on one data directory; `call` runs a coroutine on the server's loop."""

    def __init__(self, data_dir: Path, *, limits: Limits | None = None, idle_timeout: float | None = None,
                 login_timeout: float | None = None, loopback_is_secure: bool = True,
                 limiter: AuthFailureLimiter | None = None) -> None:
        self.config = Config(data_dir=data_dir, hostname="imap.example.test")
        if limits is not None:
            self.config = replace(self.config, limits=limits)
        self.ca, cert = test_ca()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_tls)
        self.client_tls = ssl.create_default_context()
        self.ca.configure_trust(self.client_tls)
        self.ca_file = data_dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.events = EventBus()
        self.directory = Directory(self.config.state_db, hasher=FAST)
        self.store = MailStore(self.config.mail_dir, notify=self.events.publish, hostname="imap.example.test")
        self.limiter = limiter if limiter is not None else AuthFailureLimiter(max_failures=50, window=300.0)
        self.services = Services(config=self.config, directory=self.directory, store=self.store,
                                 events=self.events, limiter=self.limiter, tls=server_tls)
        self.directory.add_domain(DOMAIN)
        for address, password in ((ALICE, ALICE_PW), (BOB, BOB_PW)):
            self.directory.add_account(address, password)
            self.store.create_account(address)
        self.loop = new_event_loop()     # the loop the engine runs on (engine/eventloop.py)
        self._thread = threading.Thread(target=self.loop.run_forever, name="imap-test-loop", daemon=True)
        self._thread.start()
        kwargs: dict[str, Any] = {"loopback_is_secure": loopback_is_secure}
        if idle_timeout is not None:
            kwargs["idle_timeout"] = idle_timeout
        if login_timeout is not None:
            kwargs["login_timeout"] = login_timeout
        self.imap = IMAPListener(self.services, "imap", **kwargs)
        self.imaps = IMAPListener(self.services, "imaps", **kwargs)
        self.call(self.imap.start("127.0.0.1", 0))
        self.call(self.imaps.start("127.0.0.1", 0))

    @property
    def port(self) -> int:
        return self.imap.address[1]

    @property
    def tls_port(self) -> int:
        return self.imaps.address[1]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def deliver(self, address: str, data: bytes, folder: str = "INBOX") -> int:
        """Delivers one message the way SMTP does and returns its UID."""
        return self.call(self.store.deliver([address], data, folder))[address]

    def close(self) -> None:
        try:
            self.call(self.imap.stop(2.0))
            self.call(self.imaps.stop(2.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(TIMEOUT)
            self.loop.close()
            self.store.close()
            self.directory.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[IMAPServer]:
    srv = IMAPServer(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def message(subject: str = "Hello", body: str = "Hi there.\r\n", sender: str = "carol@remote.test",
            to: str = ALICE, extra: str = "") -> bytes:
    return (f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject))}@remote.test>\r\n"
            f"{extra}\r\n{body}").encode()


class Raw:
    """A byte-level IMAP client: what the server sends, exactly, one response (with its literals) at a time."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        import socket
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> bytes:
        """One response: a line, plus any literal it announces and the rest of the line after it."""
        import re
        out = self.line()
        while (m := re.search(rb"~?\{(\d+)\}\r\n\Z", out)) is not None:
            out += self.exact(int(m.group(1)))
            out += self.line()
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        """Responses up to and including the tagged completion of `tag`."""
        out = []
        while True:
            resp = self.response()
            out.append(resp)
            if resp.startswith(tag + b" "):
                return out

    def cmd(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def login(self, user: str = ALICE, password: str = ALICE_PW) -> None:
        greeting = self.line()
        assert greeting.startswith(b"* OK"), greeting
        done = self.cmd(b"L", f'LOGIN "{user}" "{password}"'.encode())
        assert done[-1].startswith(b"L OK"), done

    def close(self) -> None:
        self.sock.close()


def _connected(server: IMAPServer) -> Iterator[Raw]:
    client = Raw(server.port)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def raw(server: IMAPServer) -> Iterator[Raw]:
    yield from _connected(server)


@pytest.fixture
def other(server: IMAPServer) -> Iterator[Raw]:
    """A second session beside `raw`, for what one session must hear of another's doings."""
    yield from _connected(server)
