"""The SMTP listeners: aiosmtpd's connection plumbing with our own verbs, limits and delivery.

We subclass `aiosmtpd.smtp.SMTP` for what it does well (the stream protocol, the idle timer, connection
and EOF handling) and replace every verb, because its gaps are ours to fill: enhanced status codes on
every reply, PIPELINING/CHUNKING/ENHANCEDSTATUSCODES, a DATA reader that keeps at most the size limit and
refuses bare LF (SMTP smuggling), command-line limits, per-IP connection limits and graceful stop.
`SMTP.__init__` is not called: it reflects over the class and the handler on every connection (about
0.2 ms, a tenth of our per-message budget); `_init_plumbing` sets the attributes the inherited methods use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import dns.asyncresolver
import dns.reversename
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.auth import sasl
from engine.connections import ConnectionCounter
from engine.interfaces import QuotaExceeded
from engine.services import Services
from engine.smtp import codes
from engine.smtp.addresses import AddressError, Path, parse_mail_from, parse_rcpt_to
from engine.smtp.codes import Reply
from engine.smtp.filters import FilterVerdict, InboundMessage
from engine.smtp.message import (
    MAX_RECEIVED,
    DataCollector,
    TraceInfo,
    check_text,
    count_received,
    message_id_of,
    missing_origin_fields,
    received_header,
    unstuff,
)
from engine.smtp.policy import Policy, Refusal
from engine.smtp.records import RecordWriter

log = logging.getLogger(__name__)

# The stream reader's limit: the longest piece of DATA (or of a bad command line) buffered at once.
READ_LIMIT = 64 * 1024
# When message_size is 0 ("no fixed maximum", RFC 1870 §4) a message is still bounded in memory.
HARD_SIZE_CAP = 1024 * 1024 * 1024
# Command-line growth allowed by extensions we advertise: RFC 1870 §3 (SIZE, 26), RFC 6531 §3.4 (SMTPUTF8,
# 10), RFC 6152 §2 (BODY=8BITMIME, 14) and RFC 4954 §5 (AUTH=, 500).
MAIL_EXTRA = 26 + 10 + 14 + 500
MAX_ERRORS = 20                 # like Postfix's smtpd_hard_error_limit: then 421 and close
TLS_HANDSHAKE_TIMEOUT = 30.0
REVERSE_DNS_TIMEOUT = 3.0
FORBIDDEN_VERBS = frozenset({"GET", "POST", "CONNECT", "HEAD", "PUT"})   # an HTTP client on port 25
CRLF = b"\r\n"
# Control characters become "?" in replies: a client's words must not break the reply's lines.
_NO_CONTROLS = bytes.maketrans(bytes(range(32)) + b"\x7f", b"?" * 33)


# Ids only need to differ, not to be unguessable: a generator seeded once from the OS spares a getrandom(2)
# system call per transaction.
_ID_RANDOM = random.Random()


def new_message_id() -> str:
    """Our id for one transaction: microsecond time plus randomness, in upper-case hex."""
    return f"{time.time_ns() // 1000:X}{_ID_RANDOM.getrandbits(20):05X}"


@functools.lru_cache(maxsize=512)
def _reply_bytes(reply: Reply) -> bytes:
    """A one-line reply as sent; the fixed replies of every transaction are encoded once.  Client words
    can appear in a reply: it stays ASCII, with control characters shown as "?"."""
    return reply.line().encode("ascii", "replace").translate(_NO_CONTROLS) + CRLF


@dataclass
class Transaction:
    """One mail transaction, from MAIL FROM to the end of DATA/BDAT LAST (RFC 5321 §3.3)."""

    sender: Path
    utf8: bool
    message_id: str
    recipients: list[str] = field(default_factory=list)      # as accepted, for logs and Received
    local: list[str] = field(default_factory=list)           # accounts, each once
    remote: list[str] = field(default_factory=list)          # addresses for the queue, each once
    chunks: list[bytes] | None = None                        # BDAT chunks so far (RFC 3030)
    chunk_size: int = 0
    chunk_failure: Reply | None = None                       # a BDAT chunk failed: the rest gets this

    @functools.cached_property
    def sender_text(self) -> str:
        """The reverse-path as text; every log row of the transaction names it."""
        return "" if self.sender.address is None else str(self.sender.address)


class _State(Envelope):
    """aiosmtpd's envelope slot holds our transaction (None between transactions)."""

    def __init__(self) -> None:
        super().__init__()
        self.txn: Transaction | None = None


class SMTPSession(SMTP):
    """One client connection.  Session facts (HELO, login, TLS) live in `session`; the transaction in
    `envelope.txn`.  STARTTLS replaces both, so nothing learned in the clear survives (RFC 3207 §4.2)."""

    def __init__(self, listener: SMTPListener) -> None:
        self._init_plumbing(listener)

    def _init_plumbing(self, listener: SMTPListener) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(limit=READ_LIMIT, loop=loop),
            client_connected_cb=self._cb_client_connected, loop=loop)
        config = listener.services.config
        self.listener = listener
        self.services = listener.services
        self.policy = listener.policy
        self.limits = config.limits
        self.hostname = config.hostname
        self.size_limit = config.limits.message_size or HARD_SIZE_CAP
        self._line_limit = config.limits.smtp_command
        self._mail_limit = config.limits.smtp_command + MAIL_EXTRA
        self._longest_command = max(self._mail_limit, sasl.MAX_LINE)
        self.tls_context = listener.starttls_context
        # What the inherited aiosmtpd methods (connection_made/lost, eof_received, timeouts) read.
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self._timeout_duration = config.limits.smtp_timeout
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self._handle_hooks: dict[str, Any] = {}
        self._handler_coroutine = None
        self.session: Session | None = None
        self.envelope: Envelope | None = None
        self.transport: asyncio.BaseTransport | None = None
        # Ours.
        self.client_ip = ""
        self._admitted = False
        self._tls = False
        self._busy = False
        self._errors = 0
        self._reverse_name: asyncio.Task[str | None] | None = None

    # --- connection plumbing -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self._admitted = self.listener.connections.acquire(self.client_ip)
        self._tls = transport.get_extra_info("ssl_object") is not None    # implicit TLS (port 465)
        self.listener.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.listener.connections.release(self.client_ip)
        self.listener.session_closed(self)
        if self._reverse_name is not None:
            self._reverse_name.cancel()
        super().connection_lost(error)

    def _create_session(self) -> Session:
        session = Session(self.loop)
        session.authenticated = False
        return session

    def _create_envelope(self) -> Envelope:
        return _State()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Notes activity.  One timer per connection, re-armed only when it fires early: cheaper than
        aiosmtpd's cancel-and-reschedule on every command and every piece of DATA."""
        self._last_activity = self.loop.time()
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_later(duration or self._timeout_duration, self._timeout_cb)

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self._last_activity
        if idle < self._timeout_duration:
            self._timeout_handle = self.loop.call_later(self._timeout_duration - idle, self._timeout_cb)
            return
        # RFC 5321 §4.5.3.2.7: the server may close an idle connection; say why first.
        self._abort(codes.TIMEOUT)

    def _abort(self, reply: Reply) -> None:
        """Closes the connection now, telling the client why if the socket still takes it."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # cast, not isinstance: uvloop's transports have the API without the base class.
            cast(asyncio.WriteTransport, transport).write(reply.line().encode("ascii") + CRLF)
            transport.close()

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def account(self) -> str | None:
        """The address the client logged in as, if it did."""
        assert self.session is not None
        data = self.session.auth_data
        return data if isinstance(data, str) else None

    @property
    def txn(self) -> Transaction | None:
        env = self.envelope
        return env.txn if isinstance(env, _State) else None

    def _new_transaction(self, txn: Transaction | None) -> None:
        state = _State()
        state.txn = txn
        self.envelope = state

    @property
    def idle(self) -> bool:
        """Waiting for a command outside any transaction: safe to close on shutdown."""
        return not self._busy and self.txn is None

    # --- replies -------------------------------------------------------------------------------------

    async def _reply(self, reply: Reply, *more: str) -> None:
        if reply.code >= 400:
            self._errors += 1
        if more:
            # Client words can appear in a reply: keep it ASCII, and each entry on its own line.
            self._writer.write(b"".join(line.encode("ascii", "replace").translate(_NO_CONTROLS) + CRLF
                                        for line in reply.lines(*more)))
        else:
            self._writer.write(_reply_bytes(reply))
        await self._writer.drain()

    async def _close(self, reply: Reply) -> None:
        await self._reply(reply)
        assert self.transport is not None
        self.transport.close()

    def _record(self, event: str, **fields: Any) -> None:
        records = self.listener.records
        if records is None:
            return
        fields.setdefault("client_ip", self.client_ip)
        fields.setdefault("role", self.listener.role)
        records.record(event, **fields)

    def _refused(self, refusal: Refusal | Reply, **fields: Any) -> Awaitable[None]:
        reply = refusal.reply if isinstance(refusal, Refusal) else refusal
        reason = refusal.reason if isinstance(refusal, Refusal) else reply.text
        txn = self.txn
        if txn is not None:
            fields.setdefault("message_id", txn.message_id)
            fields.setdefault("sender", txn.sender_text)
        self._record("rejected", reason=reason, reply=reply.line(), **fields)
        return self._reply(reply)

    # --- the command loop ----------------------------------------------------------------------------

    async def _handle_client(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("%s: connection lost", self.client_ip)
        except Exception:
            log.exception("%s: SMTP session failed", self.client_ip)
            self._abort(codes.LOCAL_ERROR)
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _serve(self) -> None:
        if not self._admitted:
            self._record("rejected", reason="too many connections")
            await self._close(codes.TOO_MANY_CONNECTIONS)
            return
        if self.listener.stopping:
            await self._close(codes.SHUTTING_DOWN)
            return
        await self._reply(Reply(220, "", f"{self.hostname} {codes.GREETING.text}"))
        while self.transport is not None and not self.transport.is_closing():
            line = await self._read_line(self._longest_command, codes.LINE_TOO_LONG)
            if line is None:
                continue
            self._busy = True
            try:
                await self._dispatch(line)
            except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception:
                # Errors inside the server: try again later, and the session goes on (DESIGN §4).
                log.exception("%s: internal error handling %r", self.client_ip, line[:40])
                self._new_transaction(None)
                await self._reply(codes.LOCAL_ERROR)
            finally:
                self._busy = False
            if self.transport is None or self.transport.is_closing():
                break
            if self._errors > MAX_ERRORS:
                await self._close(codes.TOO_MANY_ERRORS)
            elif self.listener.stopping and self.txn is None:
                await self._close(codes.SHUTTING_DOWN)

    async def _read_line(self, limit: int, too_long: Reply) -> bytes | None:
        """One CRLF-terminated line; None (after replying) when it was too long or ended in a bare LF.

        Raises IncompleteReadError at EOF."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            # Longer than we buffer: throw it away up to its end, then say so (RFC 5321 §4.5.3.1.4).
            await self._reader.readexactly(exc.consumed)
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.readexactly(more.consumed)
            await self._reply(too_long)
            return None
        if len(line) > limit:
            await self._reply(too_long)
            return None
        if not line.endswith(CRLF):
            await self._reply(codes.BARE_NEWLINE_COMMAND)
            return None
        return line

    async def _dispatch(self, line: bytes) -> None:
        verb_bytes, _, arg_bytes = line[:-2].partition(b" ")
        try:
            verb = verb_bytes.decode("ascii").upper()
        except UnicodeDecodeError:
            verb = ""
        method = _VERBS.get(verb)
        if method is None and verb in FORBIDDEN_VERBS:
            await self._close(codes.TOO_MANY_ERRORS.with_text("This is an SMTP server; closing"))
            return
        # RFC 5321 §4.5.3.1.4: 512 octets with the CRLF, plus what extensions add to MAIL (MAIL_EXTRA),
        # and RFC 4954 §4: 12288 for AUTH with an initial response; any other line, known or not, 512.
        limit = self._mail_limit if verb == "MAIL" else sasl.MAX_LINE if verb == "AUTH" else self._line_limit
        if len(line) > limit:
            await self._reply(codes.LINE_TOO_LONG)
            return
        if method is None:
            await self._reply(codes.UNRECOGNIZED if verb else codes.SYNTAX_ERROR)
            return
        self._reset_timeout()
        arg = arg_bytes.decode("utf-8", "surrogateescape").strip(" ")
        await method(self, arg)

    # --- session commands ----------------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: EHLO hostname"))
            return
        assert self.session is not None
        self.session.host_name = hostname
        self.session.extended_smtp = True
        self._new_transaction(None)                       # RFC 5321 §4.1.4: EHLO resets like RSET
        keywords = ["PIPELINING", f"SIZE {self.size_limit}", "8BITMIME", "SMTPUTF8",
                    "ENHANCEDSTATUSCODES", "CHUNKING"]
        if self.tls_context is not None and not self._tls:
            keywords.append("STARTTLS")
        if self.policy.auth_offered(self._tls):
            keywords.append("AUTH " + " ".join(sasl.MECHANISMS))
        lines = [f"250-{self.hostname}"] + [f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"]
        self._writer.write("\r\n".join(lines).encode("ascii") + CRLF)    # RFC 2034: no enhanced codes here
        await self._writer.drain()

    async def smtp_HELO(self, hostname: str) -> None:
        if not hostname:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: HELO hostname"))
            return
        assert self.session is not None
        self.session.host_name = hostname
        self.session.extended_smtp = False
        self._new_transaction(None)
        self._writer.write(f"250 {self.hostname}".encode("ascii") + CRLF)
        await self._writer.drain()

    async def smtp_NOOP(self, arg: str) -> None:
        await self._reply(codes.OK)

    async def smtp_RSET(self, arg: str) -> None:
        if arg:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: RSET"))
            return
        self._new_transaction(None)
        await self._reply(codes.OK)

    async def smtp_QUIT(self, arg: str) -> None:
        await self._close(codes.CLOSING)

    async def smtp_VRFY(self, arg: str) -> None:
        # RFC 5321 §3.5.3: 252 says neither yes nor no, so VRFY does not list our users.
        await self._reply(codes.CANNOT_VRFY if arg else codes.BAD_ARGUMENTS.with_text("Syntax: VRFY address"))

    async def smtp_EXPN(self, arg: str) -> None:
        await self._reply(codes.NOT_IMPLEMENTED)

    async def smtp_HELP(self, arg: str) -> None:
        await self._reply(codes.HELP.with_text("Commands: " + " ".join(sorted(_VERBS))))

    async def smtp_STARTTLS(self, arg: str) -> None:
        if arg:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: STARTTLS"))
            return
        if self._tls:
            await self._reply(codes.ALREADY_TLS)
            return
        if self.tls_context is None:
            await self._reply(codes.TLS_UNAVAILABLE)
            return
        await self._reply(codes.READY_FOR_TLS)
        # RFC 3207 §6, CVE-2011-0411: whatever the client pipelined behind STARTTLS came in the clear and
        # must not be executed as if it came over TLS.  Discard it after our reply is out and just before
        # the handshake (start_tls pauses reading at once); what is read after the handshake came over TLS
        # and is kept: clients such as aiosmtplib send EHLO in the same flight as their TLS Finished.
        self._discard_buffered_input()
        try:
            await self._writer.start_tls(self.tls_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("%s: TLS handshake failed: %s", self.client_ip, exc)
            if self.transport is not None:
                self.transport.close()
            return
        self.transport = self._writer.transport
        self._tls = True
        # RFC 3207 §4.2: discard all knowledge obtained from the client; it must EHLO again.
        self.session = self._create_session()
        self.session.peer = self.transport.get_extra_info("peername")
        self.session.ssl = {"cipher": self.transport.get_extra_info("cipher")}
        self._new_transaction(None)

    def _discard_buffered_input(self) -> None:
        buffer: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        if buffer:
            log.info("%s: discarded %d octets sent in the clear with STARTTLS", self.client_ip, len(buffer))
            buffer.clear()

    async def smtp_AUTH(self, arg: str) -> None:
        assert self.session is not None
        if not self.session.extended_smtp:
            await self._reply(codes.NEED_HELO.with_text("Send EHLO first"))
            return
        if not self.policy.auth_offered(self._tls):
            await self._reply(codes.ENCRYPTION_REQUIRED)         # RFC 4954 §6
            return
        if self.account is not None:
            await self._reply(codes.ALREADY_AUTHENTICATED)
            return
        if self.txn is not None:
            await self._reply(codes.BAD_SEQUENCE.with_text("AUTH not allowed during a mail transaction"))
            return
        words = arg.split()
        if not 1 <= len(words) <= 2:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: AUTH mechanism [initial-response]"))
            return
        if words[0].upper() not in sasl.MECHANISMS:
            await self._reply(codes.AUTH_MECHANISM_UNKNOWN)
            return
        limiter = self.services.limiter
        if limiter is not None and limiter.blocked(self.client_ip):
            await self._reply(codes.AUTH_BLOCKED)
            return
        try:
            initial = words[1].encode("ascii") if len(words) == 2 else None
            exchange = sasl.start(words[0], initial)
            step = exchange.first
            while isinstance(step, sasl.Challenge):
                self._writer.write(f"{codes.AUTH_CHALLENGE} ".encode("ascii") + step.line + CRLF)
                await self._writer.drain()
                line = await self._read_line(sasl.MAX_LINE, codes.AUTH_LINE_TOO_LONG)
                if line is None:
                    return
                step = exchange.step(line)
        except UnicodeEncodeError:
            await self._reply(codes.BAD_BASE64)
            return
        except sasl.SaslError as exc:
            await self._reply(codes.AUTH_CANCELLED if exc.cancelled else codes.BAD_BASE64.with_text(exc.reason))
            return
        directory = self.services.directory
        account = await asyncio.to_thread(directory.authenticate, step.username, step.password)
        if account is None:
            if limiter is not None:
                limiter.failure(self.client_ip)
                delay = limiter.delay(self.client_ip)
                if delay > 0:
                    await asyncio.sleep(delay)       # slows guessing; not synchronisation
            log.info("%s: AUTH failed for %r", self.client_ip, step.username[:100])
            await self._reply(codes.AUTH_FAILED)
            return
        if limiter is not None:
            limiter.success(self.client_ip)
        self.session.authenticated = True
        self.session.auth_data = account.address
        await self._reply(codes.AUTH_OK)

    # --- the transaction -----------------------------------------------------------------------------

    async def smtp_MAIL(self, arg: str) -> None:
        assert self.session is not None
        if not self.session.host_name:
            await self._reply(codes.NEED_HELO)
            return
        if self.txn is not None:
            await self._reply(codes.NESTED_MAIL)
            return
        try:
            parsed = parse_mail_from(arg)
        except AddressError as exc:
            await self._reply(exc.reply)
            return
        params = parsed.params
        if params and not self.session.extended_smtp:
            await self._reply(codes.BAD_ARGUMENTS.with_text("MAIL parameters need EHLO"))
            return
        problem = self._check_mail_params(params)
        if problem is not None:
            await self._refused(problem, sender=str(parsed.path.address or ""))
            return
        utf8 = "SMTPUTF8" in params
        if parsed.path.address is not None and parsed.path.address.needs_utf8 and not utf8:
            await self._reply(codes.UTF8_NOT_DECLARED)
            return
        refusal = self.policy.check_sender(self.account, parsed.path)
        if refusal is not None:
            await self._refused(refusal, sender=str(parsed.path.address or ""))
            return
        self._new_transaction(Transaction(parsed.path, utf8, new_message_id()))
        if self._reverse_name is None and self.listener.wants_reverse_name(self.client_ip):
            self._reverse_name = asyncio.ensure_future(self.listener.reverse_name(self.client_ip))
        await self._reply(codes.SENDER_OK)

    def _check_mail_params(self, params: dict[str, str | None]) -> Reply | None:
        for key, value in params.items():
            if key == "SIZE":                               # RFC 1870 §6
                if value is None or not value.isdigit() or len(value) > 20:
                    return codes.BAD_ARGUMENTS.with_text("SIZE needs a number")
                if int(value) > self.size_limit:
                    return codes.MESSAGE_TOO_BIG
            elif key == "BODY":                             # RFC 6152 §2
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return codes.BAD_ARGUMENTS.with_text("BODY must be 7BIT or 8BITMIME")
            elif key == "SMTPUTF8":                         # RFC 6531 §3.4
                if value is not None:
                    return codes.BAD_ARGUMENTS.with_text("SMTPUTF8 takes no value")
            elif key == "AUTH":
                pass    # RFC 4954 §5: accepted; we trust no one's claim, so it is ignored
            else:
                return codes.PARAM_NOT_RECOGNIZED.with_text(f"MAIL parameter {key} not recognized")
        return None

    async def smtp_RCPT(self, arg: str) -> None:
        assert self.session is not None
        txn = self.txn
        if not self.session.host_name:
            await self._reply(codes.NEED_HELO)
            return
        if txn is None:
            await self._reply(codes.NEED_MAIL)
            return
        if txn.chunks is not None:
            await self._reply(codes.BAD_SEQUENCE.with_text("RCPT after BDAT"))
            return
        try:
            parsed = parse_rcpt_to(arg)
        except AddressError as exc:
            await self._reply(exc.reply)
            return
        address = parsed.path.address
        assert address is not None
        if parsed.params:
            await self._reply(codes.PARAM_NOT_RECOGNIZED.with_text(
                f"RCPT parameter {next(iter(parsed.params))} not recognized"))
            return
        if address.needs_utf8 and not txn.utf8:
            await self._reply(codes.UTF8_NOT_DECLARED)
            return
        if len(txn.recipients) >= self.limits.recipients:
            await self._refused(codes.TOO_MANY_RECIPIENTS, recipient=str(address))   # RFC 5321 §4.5.3.1.10
            return
        route = self.policy.route_recipient(self.account, address)
        if isinstance(route, Refusal):
            await self._refused(route, recipient=str(address))
            return
        txn.recipients.append(str(address))
        txn.local.extend(a for a in route.local if a not in txn.local)
        txn.remote.extend(a for a in route.remote if a not in txn.remote)
        await self._reply(codes.RECIPIENT_OK)

    async def _check_ready_for_data(self) -> Reply | None:
        assert self.session is not None
        if not self.session.host_name:
            return codes.NEED_HELO
        txn = self.txn
        if txn is None:
            return codes.NEED_MAIL
        if not txn.recipients:
            return codes.NEED_RCPT
        return None

    async def smtp_DATA(self, arg: str) -> None:
        problem = await self._check_ready_for_data()
        txn = self.txn
        if problem is None and txn is not None and txn.chunks is not None:
            problem = codes.BAD_SEQUENCE.with_text("DATA after BDAT")     # RFC 3030 §3
        if problem is not None:
            await self._reply(problem)
            return
        if arg:
            await self._reply(codes.BAD_ARGUMENTS.with_text("Syntax: DATA"))
            return
        assert txn is not None
        await self._reply(codes.START_DATA)
        collector = DataCollector(self.size_limit)
        reader = self._reader
        while not collector.done:
            try:
                piece = await reader.readuntil(b".\r\n")
                collector.feed(piece)
            except asyncio.LimitOverrunError as exc:
                collector.feed(await reader.readexactly(exc.consumed), may_end=False)
            self._reset_timeout()
        if collector.oversize:
            await self._refused(codes.MESSAGE_TOO_BIG, recipient=list(txn.recipients), size=collector.size)
            self._new_transaction(None)
            return
        await self._finish(txn, unstuff(collector.text()))

    async def smtp_BDAT(self, arg: str) -> None:
        # RFC 3030 §2: BDAT <size> [LAST]; the chunk follows at once and is read whatever we answer.
        words = arg.split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or len(words[0]) > 18 or (
                len(words) == 2 and words[1].upper() != "LAST"):
            # Without a size we cannot tell the chunk from commands: stop before reading data as SMTP.
            await self._close(codes.BDAT_SYNTAX)
            return
        size = int(words[0])
        last = len(words) == 2
        problem = await self._check_ready_for_data()
        txn = self.txn
        keep = problem is None and txn is not None and txn.chunk_failure is None
        if keep and txn is not None and txn.chunk_size + size > self.size_limit:
            txn.chunk_failure = codes.MESSAGE_TOO_BIG
            txn.chunks = []
            keep = False
        remaining = size
        while remaining:
            piece = await self._reader.readexactly(min(remaining, READ_LIMIT))
            remaining -= len(piece)
            if keep and txn is not None:
                if txn.chunks is None:
                    txn.chunks = []
                txn.chunks.append(piece)
            self._reset_timeout()
        if problem is not None or txn is None:
            await self._reply(problem or codes.BAD_SEQUENCE)
            return
        if txn.chunks is None:
            txn.chunks = []
        txn.chunk_size += size
        if txn.chunk_failure is not None:
            if last:
                self._new_transaction(None)
            await self._refused(txn.chunk_failure, recipient=list(txn.recipients), size=txn.chunk_size)
            return
        if not last:
            await self._reply(codes.CHUNK_OK.with_text(f"{size} octets received"))
            return
        data = b"".join(txn.chunks)
        txn.chunks = []
        await self._finish(txn, data)

    # --- accepting a message -------------------------------------------------------------------------

    async def _finish(self, txn: Transaction, data: bytes) -> None:
        """Checks, stamps and hands on one message; the reply is 250 only once it is durable."""
        self._new_transaction(None)
        problem = check_text(data, self.limits.smtp_line)
        if problem is None and count_received(data) > MAX_RECEIVED:
            problem = codes.MAIL_LOOP
        if problem is not None:
            await self._refused(problem, message_id=message_id_of(data), smtp_id=txn.message_id,
                                sender=txn.sender_text,
                                recipient=list(txn.recipients), size=len(data))
            return
        origin = b""
        if self.account is not None:      # a message submitted by one of our users (RFC 6409 §8)
            origin = missing_origin_fields(data, message_id=txn.message_id, hostname=self.hostname)
        message = await self._trace(txn) + origin + data
        outcome, folder, extra = await self._run_filters(txn, message)
        if isinstance(outcome, Reply):
            await self._refused(outcome, message_id=message_id_of(data), smtp_id=txn.message_id,
                                sender=txn.sender_text,
                                recipient=list(txn.recipients), size=len(message), **extra)
            return
        message = outcome
        queue_id = ""
        try:
            if txn.local:
                quotas = self.policy.quotas(txn.local)
                if quotas:
                    await self.services.store.deliver(list(txn.local), message, folder, quota=quotas)
                else:
                    await self.services.store.deliver(list(txn.local), message, folder)
            if txn.remote:
                outbound = self.services.outbound
                if outbound is None:        # checked at RCPT; the queue cannot vanish, but never drop
                    raise OSError("outbound queue is not available")
                queue_id = await outbound.enqueue(
                    txn.sender_text, list(txn.remote), message,
                    received_from=f"{self.session_helo} [{self.client_ip}]",
                    authenticated_as=self.account or "")
        except QuotaExceeded as exc:
            await self._delivery_failed(txn, codes.MAILBOX_FULL, str(exc), message)
            return
        except OSError as exc:
            log.error("%s: could not store message %s: %s", self.client_ip, txn.message_id, exc)
            await self._delivery_failed(txn, codes.INSUFFICIENT_STORAGE, str(exc), message)
            return
        except Exception as exc:
            log.exception("%s: delivery of %s failed", self.client_ip, txn.message_id)
            await self._delivery_failed(txn, codes.LOCAL_ERROR, f"{type(exc).__name__}: {exc}", message)
            return
        message_id = message_id_of(message)
        self._record("received", message_id=message_id, smtp_id=txn.message_id, sender=txn.sender_text,
                     recipient=list(txn.recipients), size=len(message), queue_id=queue_id,
                     tls=self._tls_version() or "none", helo=self.session_helo,
                     authenticated_as=self.account or "", **extra)
        if txn.local:
            self._record("delivered", message_id=message_id, smtp_id=txn.message_id, sender=txn.sender_text,
                         recipient=list(txn.local), size=len(message), folder=folder, **extra)
        await self._reply(codes.MESSAGE_ACCEPTED.with_text(f"Message accepted as {txn.message_id}"))

    async def _delivery_failed(self, txn: Transaction, reply: Reply, reason: str, message: bytes) -> None:
        self._record("rejected", message_id=message_id_of(message), smtp_id=txn.message_id,
                     sender=txn.sender_text, recipient=list(txn.recipients), size=len(message), reason=reason,
                     reply=reply.line())
        await self._reply(reply)

    async def _run_filters(self, txn: Transaction,
                           message: bytes) -> tuple[bytes | Reply, str, dict[str, Any]]:
        """(the message as the filters left it, or the Reply refusing it; local folder; log fields)."""
        folder = "INBOX"
        extra: dict[str, Any] = {}
        for inbound_filter in self.services.inbound_filters:
            info = InboundMessage(
                role=self.listener.role, client_ip=self.client_ip, helo=self.session_helo,
                sender=txn.sender_text, local=tuple(txn.local), remote=tuple(txn.remote),
                authenticated_as=self.account, tls=self._tls, message_id=txn.message_id, data=message)
            try:
                result = await inbound_filter(info)
            except Exception:
                log.exception("%s: inbound filter %r failed on %s", self.client_ip, inbound_filter,
                              txn.message_id)
                return codes.LOCAL_ERROR, folder, extra
            if isinstance(result, FilterVerdict):
                extra.update(result.log)
                if result.reply is not None:
                    return result.reply, folder, extra
                if result.data is not None:
                    message = result.data
                if result.folder:
                    folder = result.folder
            elif isinstance(result, Reply):
                return result, folder, extra
            elif isinstance(result, bytes):
                message = result
        return message, folder, extra

    @property
    def session_helo(self) -> str:
        return (self.session.host_name if self.session is not None else None) or "unknown"

    def _tls_version(self) -> str:
        if not self._tls or self.transport is None:
            return ""
        obj = self.transport.get_extra_info("ssl_object")
        return str(obj.version()) if obj is not None else ""

    async def _trace(self, txn: Transaction) -> bytes:
        name: str | None = None
        if self._reverse_name is not None:
            try:
                name = await asyncio.wait_for(asyncio.shield(self._reverse_name), REVERSE_DNS_TIMEOUT)
            except Exception:         # timeouts included: the line then shows the IP alone
                name = None
        cipher = ""
        if self._tls and self.transport is not None:
            info = self.transport.get_extra_info("cipher")
            cipher = str(info[0]) if info else ""
        assert self.session is not None
        return received_header(TraceInfo(
            helo=self.session_helo, client_ip=self.client_ip, client_name=name, hostname=self.hostname,
            message_id=txn.message_id, esmtp=bool(self.session.extended_smtp), tls=self._tls,
            authenticated=self.account is not None, utf8=txn.utf8,
            recipient=txn.recipients[0] if len(txn.recipients) == 1 else None,
            tls_version=self._tls_version(), tls_cipher=cipher))


Handler = Callable[[SMTPSession, str], Awaitable[None]]
_VERBS: dict[str, Handler] = {
    "EHLO": SMTPSession.smtp_EHLO, "HELO": SMTPSession.smtp_HELO, "MAIL": SMTPSession.smtp_MAIL,
    "RCPT": SMTPSession.smtp_RCPT, "DATA": SMTPSession.smtp_DATA, "BDAT": SMTPSession.smtp_BDAT,
    "RSET": SMTPSession.smtp_RSET, "NOOP": SMTPSession.smtp_NOOP, "QUIT": SMTPSession.smtp_QUIT,
    "VRFY": SMTPSession.smtp_VRFY, "EXPN": SMTPSession.smtp_EXPN, "HELP": SMTPSession.smtp_HELP,
    "STARTTLS": SMTPSession.smtp_STARTTLS, "AUTH": SMTPSession.smtp_AUTH,
}


class SMTPListener:
    """One SMTP service ("smtp", "submission" or "submissions") on one address."""

    def __init__(self, services: Services, role: str) -> None:
        self.services = services
        self.role = role
        self.policy = Policy(services, role)
        self.connections = ConnectionCounter(services.config.limits.connections_per_ip)
        self.sessions: set[SMTPSession] = set()
        self.stopping = False
        self.records: RecordWriter | None = None
        self._server: asyncio.Server | None = None
        self._all_closed: asyncio.Event | None = None
        self._resolver: Any = None
        self._wants_reverse: dict[str, bool] = {}

    @property
    def starttls_context(self) -> ssl.SSLContext | None:
        """STARTTLS is offered on the plain-text roles when there is a certificate."""
        return None if self.role == "submissions" else self.services.tls

    async def start(self, host: str, port: int) -> None:
        implicit: ssl.SSLContext | None = None
        if self.role == "submissions":
            implicit = self.services.tls
            if implicit is None:
                raise ValueError("submissions (implicit TLS) needs a TLS certificate")
        loop = asyncio.get_running_loop()
        self.stopping = False
        self._server = await loop.create_server(
            lambda: SMTPSession(self), host, port, ssl=implicit,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None, reuse_address=True)
        if self.services.log is not None:
            self.records = RecordWriter(self.services.log, name=f"{self.role}-log")
        log.info("%s listening on %s", self.role, self.address)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("listener is not started")
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    def session_closed(self, session: SMTPSession) -> None:
        self.sessions.discard(session)
        if not self.sessions and self._all_closed is not None:
            self._all_closed.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting; transactions in flight get `grace` seconds to finish, then everyone gets 421."""
        if self._server is None:
            return
        self.stopping = True
        self._server.close()
        self._all_closed = asyncio.Event()
        for session in list(self.sessions):
            if session.idle:
                session._abort(codes.SHUTTING_DOWN)
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        tasks = [s._handler_coroutine for s in self.sessions if s._handler_coroutine is not None]
        for session in list(self.sessions):
            session._abort(codes.SHUTTING_DOWN)
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await self._server.wait_closed()
        self._server = None
        self.policy.close()
        if self.records is not None:
            await asyncio.to_thread(self.records.close)
            self.records = None
        log.info("%s stopped", self.role)

    def wants_reverse_name(self, ip: str) -> bool:
        """Loopback needs no lookup (the Received: line shows the address alone).  Answers are kept per
        address: parsing it is dearer than the rest of MAIL FROM."""
        known = self._wants_reverse.get(ip)
        if known is None:
            try:
                known = not ipaddress.ip_address(ip).is_loopback
            except ValueError:
                known = False
            if len(self._wants_reverse) >= 4096:
                self._wants_reverse.clear()
            self._wants_reverse[ip] = known
        return known

    async def reverse_name(self, ip: str) -> str | None:
        """The client's reverse DNS name for the Received: line; None on any failure."""
        try:
            if self._resolver is None:
                dns_settings = self.services.config.dns
                resolver = dns.asyncresolver.Resolver(configure=not dns_settings.nameservers)
                if dns_settings.nameservers:
                    resolver.nameservers = [h for h, _ in dns_settings.nameservers]
                    resolver.port = dns_settings.nameservers[0][1]
                resolver.lifetime = min(dns_settings.timeout, REVERSE_DNS_TIMEOUT)
                self._resolver = resolver
            answer = await self._resolver.resolve(dns.reversename.from_address(ip), "PTR")
            return str(answer[0].target).rstrip(".") or None
        except Exception:
            return None
