"""One delivery attempt: route a group of recipients (DNS MX, the smarthost, or the local store), talk
SMTP, and say for each recipient whether it was delivered, deferred or failed, and why.

No database here: the scheduler records what these functions return.  Classification follows RFC 5321
§4.2.1 (2yz done, 4yz retry, 5yz fail) and Postfix's habits: a connection failure or a 4xx greeting moves
on to the next MX, a failure of every MX defers, a greeting with our own name is a loop and bounces.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import Config
from engine.dns import MXHost, Resolver, RouteError
from engine.dsn import status_from_reply
from engine.interfaces import QuotaExceeded
from engine.queue.db import Result
from engine.queue.model import DELIVERED, FAILED, LOCAL_ROUTE, QUEUED, SMARTHOST_ROUTE
from engine.smtp.client import (
    AuthFailed,
    ClientOptions,
    ConnectFailed,
    ConnectionLost,
    GreetingRefused,
    LoopDetected,
    Response,
    SMTPClientError,
    SMTPConnection,
    Timeouts,
    TLSFailed,
    loop_names,
    open_session,
)

log = logging.getLogger(__name__)

TLS_MEMORY = 3600.0        # how long to remember that a host's certificate does not verify

Secrets = Callable[[str], Any]


@dataclass(frozen=True)
class Job:
    queue_id: str
    route: str                       # recipient domain, LOCAL_ROUTE or SMARTHOST_ROUTE
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """One recipient after one attempt, with what the delivery log shows."""

    recipient: str
    status: str                      # DELIVERED | QUEUED (deferred) | FAILED
    text: str                        # the remote's reply, or why we could not deliver
    code: str                        # RFC 3463 status
    remote_host: str = ""            # "mx.example.com[192.0.2.1]:25", or the local account
    from_remote: bool = False
    tls: str = ""
    local: bool = False              # delivered into a mailbox here

    def result(self) -> Result:
        return Result(self.recipient, self.status, "" if self.status == DELIVERED else self.text, self.code,
                      self.remote_host, self.from_remote)


def _everyone(recipients: Sequence[str], status: str, text: str, code: str, **extra: Any) -> list[Outcome]:
    return [Outcome(r, status, text, code, **extra) for r in recipients]


def _from_response(recipient: str, response: Response, where: str, tls: str) -> Outcome:
    code = response.status or status_from_reply(response.code, response.text)
    if response.code // 100 == 2:
        status = DELIVERED
    elif response.code // 100 == 5:
        status = FAILED
    else:
        status = QUEUED
    return Outcome(recipient, status, str(response), code, where, from_remote=not response.local, tls=tls)


class Deliverer:
    """Makes delivery attempts; holds the resolver, client settings and what it learnt of remote TLS."""

    def __init__(self, config: Config | Callable[[], Config], *, directory: Any, store: Any,
                 resolver: Resolver | None = None, timeouts: Timeouts | None = None, verify_context: Any = None,
                 secrets: Secrets | None = None) -> None:
        # A callable is read afresh on every use: the desktop changes settings on a running engine.
        self._config = config if callable(config) else (lambda: config)
        self.directory = directory
        self.store = store
        self._fixed_resolver = resolver
        self._resolver: tuple[Any, Resolver] | None = None
        self._timeouts = timeouts
        self.verify_context = verify_context
        self.secrets = secrets
        self._unverified: dict[str, float] = {}
        self._warned_password_mode = False

    @property
    def config(self) -> Config:
        return self._config()

    @property
    def resolver(self) -> Resolver:
        if self._fixed_resolver is not None:
            return self._fixed_resolver
        dns_settings = self.config.dns
        if self._resolver is None or self._resolver[0] != dns_settings:
            self._resolver = (dns_settings, Resolver(dns_settings))
        return self._resolver[1]

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts or Timeouts(connect=self.config.delivery.connect_timeout)

    @property
    def helo(self) -> str:
        return self.config.delivery.helo_name or self.config.hostname

    @property
    def loop_names(self) -> frozenset[str]:
        return loop_names(self.config.hostname, [self.helo])

    # --- routing -----------------------------------------------------------------------------------

    def route_of(self, domain: str) -> str:
        """Which worker group a recipient domain belongs to: local, the smarthost, or the domain itself."""
        try:
            if self.directory is not None and self.directory.is_local_domain(domain):
                return LOCAL_ROUTE
        except Exception:
            log.exception("directory lookup of %s failed; routing it as remote", domain)
        if self.config.delivery.smarthost is not None:
            return SMARTHOST_ROUTE
        return domain

    # --- local ---------------------------------------------------------------------------------------

    async def local(self, job: Job, data: bytes) -> list[Outcome]:
        """Recipients at our own domains go into mailboxes here: they never leave the machine."""
        targets: dict[str, list[str]] = {}
        outcomes: list[Outcome] = []
        for rcpt in job.recipients:
            accounts = await asyncio.to_thread(self.directory.resolve, rcpt)
            if not accounts:
                outcomes.append(Outcome(rcpt, FAILED, "550 5.1.1 no such user here", "5.1.1"))
            else:
                targets[rcpt] = list(accounts)
        everyone = sorted({a for accounts in targets.values() for a in accounts})
        if everyone:
            try:
                await self.store.deliver(everyone, data)
            except QuotaExceeded as exc:
                outcomes += _everyone(list(targets), QUEUED, f"mailbox full: {exc}", "4.2.2")
            except Exception as exc:      # the store's own failures are temporary: retry later
                log.exception("local delivery of %s failed", job.queue_id)
                outcomes += _everyone(list(targets), QUEUED, f"local delivery failed: {exc}", "4.3.0")
            else:
                outcomes += [Outcome(r, DELIVERED, "delivered to " + ", ".join(a), "2.0.0",
                                     ", ".join(a), local=True) for r, a in targets.items()]
        return outcomes

    # --- remote ----------------------------------------------------------------------------------------

    async def _options(self) -> tuple[ClientOptions, int, list[MXHost]] | None:
        """Client settings for the smarthost, or None when delivering by MX."""
        d = self.config.delivery
        if d.smarthost is None:
            return None
        password = d.smarthost_password
        if d.smarthost_password and not self._warned_password_mode:
            self._warn_if_readable()
        if d.smarthost_username and not password and self.secrets is not None:
            password = await self._secret("smarthost_password") or ""
        implicit = d.smarthost_tls == "implicit" or (d.smarthost_tls == "required" and d.smarthost.port == 465)
        options = ClientOptions(helo=self.helo, timeouts=self.timeouts,
                                tls="implicit" if implicit else "verified",
                                verify_context=self.verify_context, username=d.smarthost_username,
                                password=password, loop_names=self.loop_names)
        addresses = await self.resolver.addresses(d.smarthost.host)
        return options, d.smarthost.port, [MXHost(d.smarthost.host, 0, addresses)]

    def _warn_if_readable(self) -> None:
        self._warned_password_mode = True
        try:
            mode = os.stat(self.config.config_path).st_mode
        except OSError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s holds the smarthost password but others may read it: chmod 600 it",
                        self.config.config_path)

    async def _secret(self, name: str) -> str | None:
        assert self.secrets is not None
        try:
            value = self.secrets(name)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            log.warning("could not read the %s secret: %s", name, exc)
            return None
        return value if isinstance(value, str) else None

    def _mx_options(self) -> ClientOptions:
        tls = "verified" if self.config.delivery.require_verified_tls else "opportunistic"
        return ClientOptions(helo=self.helo, timeouts=self.timeouts, tls=tls, verify_context=self.verify_context,
                             loop_names=self.loop_names)

    async def remote(self, job: Job, sender: str, data: bytes,
                     conn: SMTPConnection | None) -> tuple[list[Outcome], SMTPConnection | None]:
        """One attempt for the job's recipients; returns the outcomes and a connection worth reusing."""
        rcpts = list(job.recipients)
        if conn is not None:
            # A reused session: if it died while idle, we learn it before any content is sent.
            try:
                return await self._send(conn, rcpts, sender, data)
            except ConnectionLost as exc:
                if exc.message_sent:
                    return self._unconfirmed(rcpts, conn, exc), None
                conn = None
        try:
            conn = await self._connect(job)
        except RouteError as exc:
            status = FAILED if exc.permanent else QUEUED
            return _everyone(rcpts, status, str(exc), exc.status), None
        except LoopDetected as exc:
            return _everyone(rcpts, FAILED, str(exc), "5.4.6"), None        # RFC 3463: routing loop
        except AuthFailed as exc:
            return _everyone(rcpts, QUEUED, str(exc), "4.7.8"), None
        except TLSFailed as exc:
            return _everyone(rcpts, QUEUED, str(exc), "4.7.5"), None
        except SMTPClientError as exc:
            code = "4.4.1" if isinstance(exc, ConnectFailed) else "4.4.2"
            return _everyone(rcpts, QUEUED, str(exc), code), None
        try:
            return await self._send(conn, rcpts, sender, data)
        except ConnectionLost as exc:
            return self._unconfirmed(rcpts, conn, exc), None

    async def _send(self, conn: SMTPConnection, rcpts: list[str], sender: str,
                    data: bytes) -> tuple[list[Outcome], SMTPConnection | None]:
        where = f"{conn.host}[{conn.address}]:{conn.port}"
        tls = str(conn.tls)
        try:
            replies = await conn.send(sender, rcpts, data)
        except BaseException:
            conn.close()        # also when cancelled (engine stopping): never leave the socket behind
            raise
        outcomes = [_from_response(r, replies[r], where, tls) for r in rcpts]
        if conn.usable:
            return outcomes, conn
        conn.close()
        return outcomes, None

    @staticmethod
    def _unconfirmed(rcpts: list[str], conn: SMTPConnection, exc: ConnectionLost) -> list[Outcome]:
        # RFC 5321 §4.1.1.4 / RFC 1047: without the final reply the outcome is unknown; retry later.
        note = "delivery not confirmed, will retry" if exc.message_sent else "will retry"
        return _everyone(rcpts, QUEUED, f"{exc} ({note})", "4.4.2",
                         remote_host=f"{conn.host}[{conn.address}]:{conn.port}", tls=str(conn.tls))

    async def _connect(self, job: Job) -> SMTPConnection:
        smarthost = await self._options()
        if smarthost is not None:
            options, port, hosts = smarthost
        else:
            route = await self.resolver.route(job.route)
            options, port, hosts = self._mx_options(), self.config.delivery.remote_port, list(route.hosts)
        error: SMTPClientError | None = None
        for host in hosts:
            skip_verify = self._unverified.get(host.name, 0.0) > time.monotonic()
            try:
                conn = await open_session(host.name, host.addresses, port, options, skip_verify=skip_verify)
            except (ConnectFailed, GreetingRefused, TLSFailed, ConnectionLost) as exc:
                # RFC 5321 §5.1: try the next MX when one cannot be reached or will not talk.
                log.info("%s: %s", job.queue_id, exc)
                error = exc
                continue
            if conn.tls.encrypted and not conn.tls.verified:
                self._unverified[host.name] = time.monotonic() + TLS_MEMORY
            return conn
        if error is None:
            raise ConnectFailed(f"no mail exchanger for {job.route}")
        raise error
