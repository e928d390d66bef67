"""A real POP3 service for the tests: pop3 (STLS) and pop3s listeners on ephemeral loopback ports, over a
temp data directory with the real Directory and MailStore, on an event loop in its own thread so that
blocking clients (poplib, curl, fetchmail, getmail) can talk to it from the test's thread."""

from __future__ import annotations

import asyncio
import socket
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
from engine.pop3.server import POP3Listener
from engine.services import Services
from engine.store import MailStore

T = TypeVar("T")

# Tests only: a cheap argon2 profile so a login costs microseconds, not 50 ms.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice secret"
BOB = "bob@example.test"
BOB_PW = "bob-secret"
TIMEOUT = 10.0


_TLS: tuple[trustme.CA, ssl.SSLContext, ssl.SSLContext] | None = None


def _test_tls() -> tuple[trustme.CA, ssl.SSLContext, ssl.SSLContext]:
    """One throwaway CA with server and client contexts for the whole run (making keys and loading the
    system trust store are the slow parts; the client trusts only this CA)."""
    global _TLS
    if _TLS is None:
        ca = trustme.CA()
        # fetchmail checks the common name, not only the subjectAltName.
        cert = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(server)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(client)
        _TLS = (ca, server, client)
    return _TLS


class POP3Server:
    """Both POP3 listeners on one data directory; `call` runs a coroutine on the server's loop."""

    def __init__(self, data_dir: Path, *, limits: Limits | None = None, idle_timeout: float = 600.0,
                 loopback_is_secure: bool = True, limiter: AuthFailureLimiter | None = None) -> None:
        self.config = Config(data_dir=data_dir, hostname="pop.example.test")
        if limits is not None:
            self.config = replace(self.config, limits=limits)
        self.ca, server_tls, self.client_tls = _test_tls()
        self.ca_file = data_dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

        self.events = EventBus()
        self.directory = Directory(self.config.state_db, hasher=FAST)
        self.store = MailStore(self.config.mail_dir, notify=self.events.publish, hostname="pop.example.test")
        self.limiter = limiter if limiter is not None else AuthFailureLimiter(max_failures=5, window=300.0)
        self.services = Services(config=self.config, directory=self.directory, store=self.store,
                                 events=self.events, limiter=self.limiter, tls=server_tls)
        self.directory.add_domain(DOMAIN)
        for address, password in ((ALICE, ALICE_PW), (BOB, BOB_PW)):
            self.directory.add_account(address, password)
            self.store.create_account(address)

        self.loop = new_event_loop()     # the loop the engine runs on (engine/eventloop.py)
        self._thread = threading.Thread(target=self.loop.run_forever, name="pop3-test-loop", daemon=True)
        self._thread.start()
        self.pop3 = POP3Listener(self.services, "pop3", idle_timeout=idle_timeout,
                                 loopback_is_secure=loopback_is_secure)
        self.pop3s = POP3Listener(self.services, "pop3s", idle_timeout=idle_timeout,
                                  loopback_is_secure=loopback_is_secure)
        self.call(self.pop3.start("127.0.0.1", 0))
        self.call(self.pop3s.start("127.0.0.1", 0))

    @property
    def port(self) -> int:
        return self.pop3.address[1]

    @property
    def tls_port(self) -> int:
        return self.pop3s.address[1]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def deliver(self, address: str, data: bytes) -> int:
        """Delivers one message the way SMTP does and returns its INBOX UID."""
        return self.call(self.store.deliver([address], data))[address]

    def uids(self, address: str = ALICE) -> list[int]:
        return [m.uid for m in self.store.mailbox(address).messages("INBOX")]

    def uidvalidity(self, address: str = ALICE) -> int:
        return int(self.store.mailbox(address).status("INBOX").uidvalidity)

    def close(self) -> None:
        try:
            self.call(self.pop3.stop(2.0))
            self.call(self.pop3s.stop(2.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(TIMEOUT)
            self.loop.close()
            closer = getattr(self.store, "close", None)
            if callable(closer):
                closer()
            self.directory.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[POP3Server]:
    srv = POP3Server(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    """A small well-formed message with CRLF line ends, as SMTP hands it to the store."""
    return (f"From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\n{body}").encode()


class Wire:
    """A raw POP3 client over a socket for byte-exact transcripts; every read has a deadline."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock: socket.socket = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One reply line including its CRLF; b"" when the server closed the connection."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def cmd(self, text: str) -> bytes:
        self.send(text.encode() + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """The rest of a multi-line reply, up to and including the terminating ".\r\n"."""
        out = b""
        while True:
            line = self.line()
            assert line, "connection closed inside a multi-line reply"
            out += line
            if line == b".\r\n":
                return out

    def multi(self, text: str) -> tuple[bytes, bytes]:
        status = self.cmd(text)
        assert status.startswith(b"+OK"), status
        return status, self.body()

    def login(self, user: str = ALICE, password: str = ALICE_PW) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")

    def closed(self) -> bool:
        """Whether the server has closed the connection (reads EOF within the deadline)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server: POP3Server) -> Iterator[Any]:
    """Opens raw connections to the plain POP3 port and closes them all after the test."""
    opened: list[Wire] = []

    def connect(port: int | None = None, tls: ssl.SSLContext | None = None) -> Wire:
        w = Wire(port or server.port, tls=tls)
        opened.append(w)
        return w

    yield connect
    for w in opened:
        w.close()
