"""Helpers for the desktop tests (a module name no other test directory uses): a loopback DNS zone server
(dnslib, real UDP on 127.0.0.1:<ephemeral>), the test domain's names, and a blocking set-up call."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from desktop.bridge import invoke
from engine.runtime import EngineThread

HOSTNAME = "mx.postroom.test"
PASSWORD = "correct horse battery"

ZONE = f"""
unreachable.test.      60 IN MX 10 mx.unreachable.test.
mx.unreachable.test.   60 IN A  127.0.0.1
example.test.          60 IN MX 10 {HOSTNAME}.
example.test.          60 IN TXT "v=spf1 mx -all"
_dmarc.example.test.   60 IN TXT "v=DMARC1; p=none"
{HOSTNAME}.            60 IN A  192.0.2.25
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_engine(thread: EngineThread, func: Callable[..., Any], *args: Any) -> Any:
    """Test set-up only: runs an engine function and waits for it (the panels never do this)."""
    return thread.submit(invoke(func, *args)).result(30)


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


class Zone(BaseResolver):  # type: ignore[misc]
    """Answers from zone-file text; names it does not hold are NXDOMAIN."""

    def __init__(self, text: str) -> None:
        self.records = RR.fromZone(text.strip())
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).lower().rstrip(".")
        reply = request.reply()
        with self._lock:
            matches = [rr for rr in self.records if str(rr.rname).lower().rstrip(".") == name]
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rr in matches:
            if rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        return reply


class ZoneServer:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self._server = DNSServer(zone, address="127.0.0.1", port=0, logger=_QuietLogger())

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self._server.server.server_address[1]}"

    def start(self) -> ZoneServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()
        self._server.thread.join(5)
