"""Loopback peers for outbound-delivery tests: a DNS zone server (dnslib) and MX servers (aiosmtpd).

Everything listens on 127.0.0.1 or ::1 on ephemeral ports.  The MX servers run aiosmtpd's real protocol
class on the test's own event loop; their behaviour is chosen per recipient domain, so one server stands
in for several remote sites (the queue groups recipients by domain, so each session meets one behaviour).
Load this module with `load_loopback()` from a conftest (test directories are not packages).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.dns import DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# --- DNS -------------------------------------------------------------------------------------------------


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


class Zone(BaseResolver):  # type: ignore[misc]
    """Answers from zone-file lines; names in `servfail` fail, names in `silent` never answer."""

    def __init__(self, text: str, *, servfail: Iterable[str] = (), silent: Iterable[str] = ()) -> None:
        self.records = RR.fromZone(textwrap.dedent(text).strip())
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.silent = {n.lower().rstrip(".") for n in silent}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).lower().rstrip(".")
        qtype = request.q.qtype
        with self._lock:
            self.queries.append((name, QTYPE[qtype]))
        if name in self.silent:
            raise DNSError("silent name: no reply")          # dnslib's handler then sends nothing
        reply = request.reply()
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        matches = [rr for rr in self.records if str(rr.rname).lower().rstrip(".") == name]
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rr in matches:
            if rr.rtype == qtype:
                reply.add_answer(rr)
        return reply


class ZoneServer:
    """A UDP DNS server on 127.0.0.1:<ephemeral> serving one Zone, in a thread."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self._server = DNSServer(zone, address="127.0.0.1", port=0, logger=_QuietLogger())

    @property
    def port(self) -> int:
        return int(self._server.server.server_address[1])

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ZoneServer:
        # A short poll interval: shutdown() waits up to one interval for the serving thread.
        self._thread = threading.Thread(target=self._server.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.server.shutdown()
        self._server.server.server_close()
        self._thread.join(5)


# --- SMTP ------------------------------------------------------------------------------------------------

ACCEPT = "accept"
GREYLIST = "greylist"       # 451 the first RCPT of each address, then accept
REFUSE = "refuse"           # 550 5.1.1 at RCPT
DROP = "drop"               # accept RCPT, then drop the connection once DATA is in, before replying
STALL = "stall"             # hold the RCPT reply until the test releases `MXServer.release`
DATA_TEMPFAIL = "data-451"  # 451 after DATA


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    helo: str
    tls: bool
    mail_options: tuple[str, ...]
    port: int


@dataclass
class _Handler:
    server: MXServer
    greylisted: set[str] = field(default_factory=set)

    def behaviour(self, address: str) -> str:
        return self.server.behaviours.get(address.rpartition("@")[2].lower(), self.server.default)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        kind = self.behaviour(address)
        self.server.rcpt_attempts.append(address)
        if kind == REFUSE:
            return "550 5.1.1 No such user here"
        if kind == GREYLIST and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 Greylisted, please try again later"
        if kind == STALL:
            self.server.stalled.set()
            await self.server.release.wait()
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        kinds = {self.behaviour(r) for r in envelope.rcpt_tos}
        if DROP in kinds:
            assert server.transport is not None
            cast(asyncio.Transport, server.transport).abort()
            return "250 2.0.0 never seen by the client"
        if DATA_TEMPFAIL in kinds:
            return "451 4.3.0 Try again later"
        assert server.transport is not None
        port = server.transport.get_extra_info("sockname")[1]
        self.server.received.append(Received(
            mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos),
            content=envelope.original_content or b"", helo=session.host_name or "",
            tls=session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None, mail_options=tuple(envelope.mail_options), port=port))
        return "250 2.0.0 Ok: queued"


class MXServer:
    """aiosmtpd on the running loop at host:port (0 = ephemeral), greeting as `hostname`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, hostname: str = "mx.test",
                 behaviours: dict[str, str] | None = None, default: str = ACCEPT,
                 tls_context: ssl.SSLContext | None = None, pipelining: bool = True,
                 data_size_limit: int = 33554432, smtputf8: bool = True,
                 credentials: dict[str, str] | None = None,
                 implicit_tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.hostname = hostname
        self.behaviours = {k.lower(): v for k, v in (behaviours or {}).items()}
        self.default = default
        self.tls_context = tls_context
        self.pipelining = pipelining
        self.data_size_limit = data_size_limit
        self.smtputf8 = smtputf8
        self.credentials = credentials
        self.implicit_tls = implicit_tls
        self.logins: list[str] = []
        self.received: list[Received] = []
        self.rcpt_attempts: list[str] = []
        self.connections = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []
        self._handler = _Handler(self)

    def _factory(self) -> SMTP:
        self.connections += 1
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without STARTTLS, which is what implicit TLS looks like to it.
            warnings.simplefilter("ignore", UserWarning)
            proto = self._make_protocol()
        self._protocols.append(proto)
        return proto

    def _make_protocol(self) -> SMTP:
        return SMTP(self._handler, hostname=self.hostname, ident="ESMTP test", tls_context=self.tls_context,
                     require_starttls=False, enable_SMTPUTF8=self.smtputf8,
                     data_size_limit=self.data_size_limit, timeout=30,
                     authenticator=self._authenticate if self.credentials is not None else None,
                     auth_required=self.credentials is not None,
                     # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the session is already secure.
                     auth_require_tls=self.implicit_tls is None)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert self.credentials is not None
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.credentials.get(user) == password:
                self.logins.append(user)
                return AuthResult(success=True)
        # handled=False: aiosmtpd then answers 535 itself (with handled=True it sends nothing).
        return AuthResult(success=False, handled=False)

    async def start(self) -> MXServer:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = await loop.create_server(self._factory, host=self.host, port=self.requested_port,
                                                family=family, reuse_address=True, ssl=self.implicit_tls)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            for proto in self._protocols:
                if proto.transport is not None:
                    cast(asyncio.Transport, proto.transport).abort()
            await self._server.wait_closed()
            await asyncio.sleep(0)   # let aborted sessions' connection_lost callbacks run
            self._server = None

    def recipients(self) -> list[str]:
        return [r for m in self.received for r in m.rcpt_tos]


class RawServer:
    """A TCP server that speaks a fixed script: `greeting` (or nothing, to test timeouts) then silence."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, greeting: bytes | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.greeting = greeting
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if self.greeting is not None:
            writer.write(self.greeting)
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        writer.close()

    async def start(self) -> RawServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = await asyncio.start_server(self._client, host=self.host, port=self.requested_port,
                                                  family=family, reuse_address=True)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_both() -> int:
    """A port free on both 127.0.0.1 and ::1 (one MX per address family on the same remote_port)."""
    for _ in range(50):
        port = free_port("127.0.0.1")
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
