"""Third-party peers the end-to-end tests run around `postroom serve`: a DNS zone (Debian's dnsmasq, with a
tiny dnslib server behind it for names that must SERVFAIL) and a receiving MX (aiosmtpd in its own thread).

Everything listens on 127.0.0.1 on ephemeral ports and is stopped by the test that started it, by PID.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.resolver
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from dnslib import RCODE, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def needs_program(program: str, package: str, path: str | None = None) -> pytest.MarkDecorator:
    """Skips a test whose third-party client is not on this machine.  `make test` installs every one of
    them (Makefile TEST_PEERS), so a skip only happens when the suite is run some other way."""
    return pytest.mark.skipif(
        (path or shutil.which(program)) is None,
        reason=f"needs {program} from the Debian package {package}; `make test` installs it")


# --- DNS ---------------------------------------------------------------------------------------------------

# dnsmasq lives in /usr/sbin, which a normal user's PATH often lacks.
DNSMASQ = shutil.which("dnsmasq") or shutil.which("/usr/sbin/dnsmasq")


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port for both UDP and TCP")


class _Servfail(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.queries: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        with self._lock:
            self.queries.append((time.time(), str(request.q.qname).rstrip("."), str(request.q.qtype)))
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply


class ServfailServer:
    """Answers every question with SERVFAIL: dnsmasq forwards the names that must fail here."""

    def __init__(self) -> None:
        self.resolver = _Servfail()
        quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
        self._server = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=quiet)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server.server_address[1])

    @property
    def queries(self) -> list[tuple[float, str, str]]:
        return list(self.resolver.queries)

    def start(self) -> ServfailServer:
        self._thread = threading.Thread(target=self._server.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="e2e-servfail-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.server.shutdown()
        self._server.server.server_close()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class Dnsmasq:
    """dnsmasq serving a small zone on 127.0.0.1:<port>, knowing nothing beyond it (no upstream, no hosts).

    `local` domains answer NXDOMAIN for every name not given here; `forward` sends a domain's questions to
    another server (the SERVFAIL one)."""

    mx: Iterable[tuple[str, str, int]] = ()             # (domain, exchanger or "." for null MX, preference)
    hosts: dict[str, str] = field(default_factory=dict)  # name -> IPv4 address
    nxdomain: Iterable[str] = ()
    local: Iterable[str] = ()
    forward: dict[str, int] = field(default_factory=dict)  # domain -> port of a server on 127.0.0.1
    port: int = 0
    proc: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        assert DNSMASQ is not None, "dnsmasq is installed by `make test` (Debian package dnsmasq-base)"
        args = [DNSMASQ, "--keep-in-foreground", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
                "--user=root", "--log-facility=-"]
        args += [f"--mx-host={domain},{host},{pref}" for domain, host, pref in self.mx]
        args += [f"--host-record={name},{ip}" for name, ip in self.hosts.items()]
        args += [f"--address=/{domain}/" for domain in self.nxdomain]      # no address: NXDOMAIN
        args += [f"--local=/{domain}/" for domain in self.local]
        args += [f"--server=/{domain}/127.0.0.1#{port}" for domain, port in self.forward.items()]
        return args

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline: float = 10.0) -> Dnsmasq:
        for _ in range(3):
            self.port = free_udp_and_tcp_port()
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
            if self._wait_answering(deadline):
                return self
            self.stop()
        raise AssertionError("dnsmasq did not start")

    def _wait_answering(self, deadline: float) -> bool:
        assert self.proc is not None
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 0.5
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False            # e.g. the port was taken meanwhile: try another
            try:
                resolver.resolve("dnsmasq-probe.invalid", "A")
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
                return True             # it answered
            except dns.exception.DNSException:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.proc = None


# --- SMTP ----------------------------------------------------------------------------------------------------

ACCEPT = "accept"
GREYLIST_ONCE = "greylist"      # 451 at the first RCPT of an address, then 250
REFUSE = "refuse"               # 550 5.1.1 at RCPT
STALL_ONCE = "stall"            # hold the first RCPT reply until the test calls release(), then 250


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    recipients: tuple[str, ...]
    content: bytes


class _SinkHandler:
    def __init__(self, sink: SinkMX) -> None:
        self.sink = sink
        self.greylisted: set[str] = set()
        self.stalled: set[str] = set()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        kind = self.sink.behaviour(address)
        if kind == REFUSE:
            # Multi-line, with a comma and quotes: what a CSV export and a DSN must carry intact.
            reply = f'550-5.1.1 <{address}>: Recipient address rejected,\r\n550 5.1.1 "no such user" here'
        elif kind == GREYLIST_ONCE and address.lower() not in self.greylisted:
            self.greylisted.add(address.lower())
            reply = "451 4.7.1 Greylisted, please try again later"
        elif kind == STALL_ONCE and address.lower() not in self.stalled:
            self.stalled.add(address.lower())
            self.sink.note(lambda: self.sink.stalls.append(address))
            deadline = time.monotonic() + 60
            while not self.sink.released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)           # the sink's loop keeps serving other sessions
            reply = "451 4.4.2 Stalled until the client went away"
        else:
            envelope.rcpt_tos.append(address)
            reply = "250 2.1.5 Ok"
        self.sink.note(lambda: self.sink.rcpt_replies.append((address, int(reply[:3]))))
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        delivery = Delivery(envelope.mail_from or "", tuple(envelope.rcpt_tos), envelope.original_content or b"")
        self.sink.note(lambda: self.sink.deliveries.append(delivery))
        return "250 2.0.0 Ok: queued"


class SinkMX:
    """A receiving MX on 127.0.0.1 (aiosmtpd, its own thread); what it does depends on the local part."""

    def __init__(self, behaviours: dict[str, str] | None = None, hostname: str = "sink.remote.test") -> None:
        self.behaviours = {k.lower(): v for k, v in (behaviours or {}).items()}
        self.hostname = hostname
        self.deliveries: list[Delivery] = []
        self.rcpt_replies: list[tuple[str, int]] = []
        self.stalls: list[str] = []
        self.released = threading.Event()
        self._changed = threading.Condition()
        self._controller: Controller | None = None
        self.port = 0

    def behaviour(self, address: str) -> str:
        return self.behaviours.get(address.partition("@")[0].lower(), ACCEPT)

    def note(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], deadline: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout=deadline)

    def release(self) -> None:
        """Lets stalled RCPT replies go (to a client that is usually gone by then)."""
        self.released.set()

    def received_by(self, address: str) -> list[Delivery]:
        return [d for d in list(self.deliveries) if address in d.recipients]

    def start(self) -> SinkMX:
        from tests.e2e.conftest import free_port

        self.port = free_port()
        self._controller = Controller(_SinkHandler(self), hostname="127.0.0.1", port=self.port,
                                      server_hostname=self.hostname, ident="test sink")
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
