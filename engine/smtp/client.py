"""The outbound SMTP client: one connection to one remote host, and one transaction at a time over it.

Written on asyncio streams rather than aiosmtplib because delivery needs what that library does not do:
PIPELINING (RFC 2920: MAIL, every RCPT and DATA in one write), a reply per recipient, the RFC 5321
§4.5.3.2 timeout of each phase, and the greeting's host name to detect a loop back to ourselves.
Parsing of replies and of the message body (dot-stuffing) are pure functions at the top; the connection
class owns one session; choosing hosts, retries and TLS fallbacks are the queue's business, except the
opportunistic-STARTTLS ladder in `open_session`, which needs a fresh connection per rung.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from engine.smtp.codes import split_enhanced

log = logging.getLogger(__name__)

MAX_REPLY_LINE = 64 * 1024      # RFC 5321 §4.5.3.1.5 says 512; be generous in what we accept
MAX_REPLY_LINES = 1000
DATA_CHUNK = 64 * 1024

# Reply codes the client acts on (RFC 5321 §4.2.2 / §4.2.3).
SERVICE_READY = 220
CLOSING = 221
AUTH_SUCCESS = 235
COMPLETED = 250
WILL_FORWARD = 251
AUTH_CONTINUE = 334
START_INPUT = 354

# Replies the client makes up itself when it refuses to send (local, never from the wire).
LOCAL_NEED_SMTPUTF8 = (553, "5.6.7", "the remote server does not support SMTPUTF8, needed for a non-ASCII "
                                     "address (RFC 6531 §3.2)")
LOCAL_TOO_BIG = (552, "5.3.4", "the message is {size} bytes, larger than the {limit} bytes the remote accepts")


@dataclass(frozen=True)
class Timeouts:
    """RFC 5321 §4.5.3.2 minimum client timeouts, each overridable (tests use fractions of a second)."""

    connect: float = 30.0
    greeting: float = 300.0       # §4.5.3.2.1 initial 220 message: 5 minutes
    command: float = 300.0        # §4.5.3.2.2/3 MAIL, RCPT: 5 minutes (also EHLO, STARTTLS, AUTH, RSET)
    data_init: float = 120.0      # §4.5.3.2.4 DATA initiation: 2 minutes
    data_block: float = 180.0     # §4.5.3.2.5 each data block sent: 3 minutes
    data_end: float = 600.0       # §4.5.3.2.6 DATA termination: 10 minutes

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        return cls(seconds, seconds, seconds, seconds, seconds, seconds)


@dataclass(frozen=True)
class Response:
    """One SMTP reply as read from the wire (or made up locally, then `local` is True)."""

    code: int
    lines: tuple[str, ...]
    local: bool = False

    @property
    def status(self) -> str:
        """RFC 3463 enhanced status code of the first line, or "" when the server sent none."""
        return split_enhanced(self.lines[0])[0] if self.lines else ""

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines).strip()

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @classmethod
    def made_up(cls, code: int, status: str, text: str) -> Response:
        return cls(code, (f"{status} {text}",), local=True)


class SMTPClientError(Exception):
    """A session that cannot go on.  `permanent` says whether retrying later could help."""

    permanent = False

    def __init__(self, message: str, response: Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class ConnectFailed(SMTPClientError):
    """No usable connection: refused, unreachable, timed out, or closed before/at the greeting."""


class GreetingRefused(SMTPClientError):
    """The server answered the connection (or EHLO/HELO) with 4xx/5xx: try the next MX (RFC 5321 §3.1)."""


class LoopDetected(SMTPClientError):
    """The remote greets with our own name: the MX points back at us ("mail loops back to myself")."""

    permanent = True


class TLSFailed(SMTPClientError):
    """STARTTLS was needed or offered and could not be completed; `verify_failed` when only trust failed."""

    def __init__(self, message: str, *, verify_failed: bool = False) -> None:
        super().__init__(message)
        self.verify_failed = verify_failed


class AuthFailed(SMTPClientError):
    """The smarthost refused our credentials (kept temporary: an admin can fix them before mail expires)."""


class ConnectionLost(SMTPClientError):
    """The connection broke or timed out mid-session; what the server did with a message is unknown
    once `message_sent` (the content after 354 went out); before that, nothing was delivered."""

    message_sent = False


# --- pure functions ------------------------------------------------------------------------------------

_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def parse_reply_line(line: bytes) -> tuple[int, bool, str]:
    """(code, is_last, text) of one reply line (RFC 5321 §4.2: "250-..." continues, "250 ..." ends)."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    m = _REPLY_LINE.match(text)
    if not m and re.match(r"^\d{3}$", text):
        return int(text), True, ""
    if not m:
        raise ValueError(f"not an SMTP reply line: {text[:80]!r}")
    return int(m.group(1)), m.group(2) == " ", m.group(3)


def encode_data(data: bytes) -> bytes:
    """The message as sent after DATA: CRLF line ends (RFC 5321 §2.3.8), dot-stuffed (§4.5.2), and ended
    by the <CRLF>.<CRLF> terminator."""
    body = _LINE_ENDS.sub(b"\r\n", data)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"


def parse_extensions(lines: Sequence[str]) -> dict[str, str]:
    """EHLO keywords (upper-case) to their parameters; the first line is the greeting (RFC 5321 §4.1.1.1)."""
    out: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out


def needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    """RFC 6531 §3.4: a non-ASCII envelope address needs the SMTPUTF8 extension."""
    return not all(a.isascii() for a in (sender, *recipients))


def first_word(text: str) -> str:
    return text.strip().split(" ", 1)[0].lower().rstrip(".") if text.strip() else ""


def _check_address(address: str) -> str:
    if any(c in address for c in "\r\n<>\0") or len(address) > 254:
        raise ValueError(f"refusing to send an unsafe address: {address!r}")
    return address


# --- TLS -----------------------------------------------------------------------------------------------

def unverified_context() -> ssl.SSLContext:
    """Encryption without authentication: Postfix's `may` level (RFC 7435 opportunistic security)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def verifying_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True)
class TLSInfo:
    """How a session was protected, for the delivery log."""

    version: str = ""             # "TLSv1.3"; "" for plaintext
    cipher: str = ""
    verified: bool = False
    note: str = ""                # why it is unverified or plaintext

    @property
    def encrypted(self) -> bool:
        return bool(self.version)

    def __str__(self) -> str:
        if not self.encrypted:
            return "none" + (f" ({self.note})" if self.note else "")
        trust = "verified" if self.verified else "unverified"
        text = f"{self.version} {self.cipher} {trust}".replace("  ", " ")
        return text + (f" ({self.note})" if self.note else "")


# --- one connection ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientOptions:
    helo: str                                         # our host name, sent in EHLO
    timeouts: Timeouts = Timeouts()
    # opportunistic: STARTTLS when offered, fall back to unverified then to plaintext (Postfix `may`)
    # verified: STARTTLS required and the certificate must verify (`require_verified_tls`)
    # implicit: TLS from the first byte (port 465), verified
    tls: str = "opportunistic"
    verify_context: ssl.SSLContext | None = None      # trust anchors; the system's when None
    username: str = ""
    password: str = ""
    loop_names: frozenset[str] = field(default_factory=frozenset)   # greetings that mean "this is us"

    def verifier(self) -> ssl.SSLContext:
        return self.verify_context or verifying_context()


class SMTPConnection:
    """One session with one server: greeting, EHLO, STARTTLS, AUTH, and transactions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, host: str,
                 address: str, port: int, options: ClientOptions) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host
        self.address = address
        self.port = port
        self.options = options
        self.greeting: Response | None = None
        self.ehlo_response: Response | None = None
        self.extensions: dict[str, str] = {}
        self.tls = TLSInfo()
        self.transactions = 0
        self._broken = False

    # connection setup

    @classmethod
    async def connect(cls, host: str, address: str, port: int, options: ClientOptions, *,
                      implicit_tls: ssl.SSLContext | None = None) -> SMTPConnection:
        """Connects and reads the greeting; raises ConnectFailed, GreetingRefused or LoopDetected."""
        t = options.timeouts
        try:
            async with asyncio.timeout(t.connect):
                reader, writer = await asyncio.open_connection(
                    address, port, limit=MAX_REPLY_LINE, ssl=implicit_tls,
                    server_hostname=host if implicit_tls else None,
                    ssl_handshake_timeout=t.connect if implicit_tls else None)
        except ssl.SSLCertVerificationError as exc:
            raise TLSFailed(f"TLS with {host}: {exc.verify_message or exc}", verify_failed=True) from None
        except ssl.SSLError as exc:
            raise TLSFailed(f"TLS with {host} failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise ConnectFailed(f"connecting to {host}[{address}]:{port} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {host}[{address}]:{port}: {exc.strerror or exc}") from None
        conn = cls(reader, writer, host=host, address=address, port=port, options=options)
        if implicit_tls is not None:
            conn.tls = conn._tls_info(verified=implicit_tls.verify_mode != ssl.CERT_NONE)
        try:
            # RFC 5321 §4.5.3.2.1: wait at least 5 minutes for the 220 greeting.
            greeting = await conn.read_response(t.greeting)
        except ConnectionLost as exc:
            conn.close()
            raise ConnectFailed(f"{host}[{address}]: {exc}") from None
        except BaseException:           # cancelled (the engine is stopping): never leave the socket open
            conn.close()
            raise
        conn.greeting = greeting
        if greeting.code != SERVICE_READY:
            conn.close()
            raise GreetingRefused(f"{host}[{address}] refused the session: {greeting}", greeting)
        conn._check_loop(greeting)
        return conn

    def _check_loop(self, response: Response) -> None:
        # Like Postfix: the greeting's (or EHLO's) first word is the server's name; ours means a loop.
        name = first_word(response.lines[0]) if response.lines else ""
        if name and name in self.options.loop_names:
            self.close()
            raise LoopDetected(f"mail for {self.host} loops back to myself (the server greets as {name})",
                               response)

    async def hello(self) -> None:
        """EHLO, or HELO when EHLO is refused with 5xx (RFC 5321 §3.2)."""
        t = self.options.timeouts
        response = await self.command(f"EHLO {self.options.helo}", t.command)
        if response.code == COMPLETED:
            self.ehlo_response = response
            self.extensions = parse_extensions(response.lines)
            self._check_loop(response)
            return
        if response.permanent and response.code in (500, 502, 504, 550):
            response = await self.command(f"HELO {self.options.helo}", t.command)
            if response.code == COMPLETED:
                self.ehlo_response = response
                self.extensions = {}
                self._check_loop(response)
                return
        self.close()
        raise GreetingRefused(f"{self.host} refused EHLO: {response}", response)

    def supports(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    @property
    def size_limit(self) -> int:
        """RFC 1870 §4: SIZE's parameter, 0 when absent or unlimited."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() else 0

    async def starttls(self, context: ssl.SSLContext, verified: bool) -> None:
        """RFC 3207: STARTTLS, the handshake, then EHLO again (everything learnt before is forgotten)."""
        t = self.options.timeouts
        response = await self.command("STARTTLS", t.command)
        if response.code != SERVICE_READY:
            raise TLSFailed(f"{self.host} refused STARTTLS: {response}")
        try:
            await self.writer.start_tls(context, server_hostname=self.host, ssl_handshake_timeout=t.command)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise TLSFailed(f"the certificate of {self.host} does not verify: {exc.verify_message or exc}",
                            verify_failed=True) from None
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.close()
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise TLSFailed(f"TLS handshake with {self.host} failed: {reason}") from None
        self.tls = self._tls_info(verified)
        self.extensions = {}
        await self.hello()

    def _tls_info(self, verified: bool) -> TLSInfo:
        sslobj = self.writer.get_extra_info("ssl_object")
        if sslobj is None:
            return TLSInfo()
        cipher = sslobj.cipher()
        return TLSInfo(version=sslobj.version() or "TLS", cipher=cipher[0] if cipher else "", verified=verified)

    async def authenticate(self, username: str, password: str) -> None:
        """RFC 4954 AUTH with PLAIN (RFC 4616) or LOGIN, never over plaintext."""
        if not self.tls.encrypted:
            raise AuthFailed(f"refusing to send credentials to {self.host} without TLS")
        t = self.options.timeouts
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
            response = await self.command(f"AUTH PLAIN {token}", t.command, secret=True)
        elif "LOGIN" in mechanisms:
            response = await self.command("AUTH LOGIN", t.command)
            for value in (username, password):
                if response.code != AUTH_CONTINUE:
                    break
                response = await self.command(base64.b64encode(value.encode()).decode("ascii"), t.command,
                                              secret=True)
        else:
            raise AuthFailed(f"{self.host} offers no AUTH mechanism we speak ({' '.join(mechanisms)})")
        if response.code != AUTH_SUCCESS:
            raise AuthFailed(f"{self.host} refused our credentials: {response}", response)

    # reading and writing

    async def read_response(self, timeout: float) -> Response:
        """One complete (possibly multi-line) reply; ConnectionLost on EOF, garbage or timeout."""
        lines: list[str] = []
        code = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.reader.readline()
                    if not raw:
                        raise ConnectionLost(f"{self.host} closed the connection")
                    if not raw.endswith(b"\n"):
                        raise ConnectionLost(f"{self.host} closed the connection mid-reply")
                    try:
                        line_code, last, text = parse_reply_line(raw)
                    except ValueError as exc:
                        raise ConnectionLost(f"{self.host} sent garbage: {exc}") from None
                    if lines and line_code != code:
                        raise ConnectionLost(f"{self.host} changed the reply code mid-reply")
                    code = line_code
                    lines.append(text)
                    if last:
                        return Response(code, tuple(lines))
                    if len(lines) > MAX_REPLY_LINES:
                        raise ConnectionLost(f"{self.host} sent an endless reply")
        except TimeoutError:
            self.close()
            raise ConnectionLost(f"{self.host} did not answer within {timeout:g}s") from None
        except (ConnectionError, OSError, ValueError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.host} failed: {exc}") from None
        except ConnectionLost:
            self.close()
            raise

    def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionLost(f"the connection to {self.host} is closed")
        self.writer.write(data)

    async def _drain(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            self.close()
            raise ConnectionLost(f"{self.host} stopped reading for {timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.host} failed: {exc}") from None

    def _encode(self, line: str) -> bytes:
        return (line + "\r\n").encode("utf-8" if not line.isascii() else "ascii")

    async def command(self, line: str, timeout: float, *, secret: bool = False) -> Response:
        log.debug("-> %s: %s", self.host, "<secret>" if secret else line)
        self._write(self._encode(line))
        await self._drain(timeout)
        response = await self.read_response(timeout)
        log.debug("<- %s: %s", self.host, response)
        return response

    # transactions

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> dict[str, Response]:
        """One mail transaction; the final reply for each recipient (its RCPT reply when refused there).

        Raises ConnectionLost when the session breaks: the caller must treat every recipient not yet
        answered as unknown (defer), because the server may or may not have taken the message.
        """
        t = self.options.timeouts
        sender = _check_address(sender)
        recipients = [_check_address(r) for r in recipients]
        params: list[str] = []
        if needs_smtputf8(sender, recipients):
            if not self.supports("SMTPUTF8"):
                made_up = Response.made_up(*LOCAL_NEED_SMTPUTF8)
                return dict.fromkeys(recipients, made_up)
            params.append("SMTPUTF8")                       # RFC 6531 §3.4
        limit = self.size_limit
        if limit and len(data) > limit:
            code, status, text = LOCAL_TOO_BIG
            return dict.fromkeys(recipients, Response.made_up(code, status, text.format(size=len(data),
                                                                                    limit=limit)))
        if self.supports("SIZE"):
            params.append(f"SIZE={len(data)}")              # RFC 1870 §6
        if self.supports("8BITMIME") and not data.isascii():
            params.append("BODY=8BITMIME")                  # RFC 6152 §3
        mail_line = f"MAIL FROM:<{sender}>" + "".join(f" {p}" for p in params)
        rcpt_lines = [f"RCPT TO:<{r}>" for r in recipients]
        self.transactions += 1

        if self.supports("PIPELINING"):
            # RFC 2920 §3.1: MAIL, RCPTs and DATA in one group; then read the replies in order.
            self._write(b"".join(self._encode(line) for line in [mail_line, *rcpt_lines, "DATA"]))
            await self._drain(t.command)
            mail = await self.read_response(t.command)
            rcpt_replies = [await self.read_response(t.command) for _ in recipients]
            data_reply: Response | None = await self.read_response(t.data_init)
        else:
            mail = await self.command(mail_line, t.command)
            rcpt_replies = []
            data_reply = None
            if mail.code == COMPLETED:
                for line in rcpt_lines:
                    rcpt_replies.append(await self.command(line, t.command))
            else:
                rcpt_replies = [mail] * len(recipients)
            if any(r.code in (COMPLETED, WILL_FORWARD) for r in rcpt_replies):
                data_reply = await self.command("DATA", t.data_init)

        if mail.code == 421:
            # RFC 5321 §3.8: the server is closing the channel (often an idle timeout on a reused session);
            # nothing was accepted, so the caller may simply reconnect.
            self.close()
            raise ConnectionLost(f"{self.host} is closing the connection: {mail}")
        if mail.code != COMPLETED:
            await self._abort_transaction(data_reply)
            return dict.fromkeys(recipients, mail)
        results = dict(zip(recipients, rcpt_replies, strict=True))
        accepted = [r for r, reply in results.items() if reply.code in (COMPLETED, WILL_FORWARD)]
        if not accepted:
            await self._abort_transaction(data_reply)
            return results
        assert data_reply is not None
        if data_reply.code != START_INPUT:
            await self._abort_transaction(None)
            results.update(dict.fromkeys(accepted, data_reply))
            return results
        payload = encode_data(data)
        try:
            for start in range(0, len(payload), DATA_CHUNK):
                self._write(payload[start:start + DATA_CHUNK])
                await self._drain(t.data_block)             # RFC 5321 §4.5.3.2.5
            final = await self.read_response(t.data_end)    # RFC 5321 §4.5.3.2.6
        except ConnectionLost as exc:
            exc.message_sent = True
            raise
        results.update(dict.fromkeys(accepted, final))
        if final.code != COMPLETED:
            await self._abort_transaction(None)
        return results

    async def _abort_transaction(self, data_reply: Response | None) -> None:
        """Leaves the session clean for the next message: end a stray DATA, then RSET (RFC 5321 §4.1.1.5)."""
        try:
            if data_reply is not None and data_reply.code == START_INPUT:
                # A server that said 354 with no valid recipient (RFC 2920 §3.1) gets an empty message.
                self._write(b".\r\n")
                await self.read_response(self.options.timeouts.data_end)
            await self.reset()
        except SMTPClientError:
            self._broken = True
            self.close()

    async def reset(self) -> None:
        response = await self.command("RSET", self.options.timeouts.command)
        if response.code != COMPLETED:
            self._broken = True

    @property
    def usable(self) -> bool:
        return not self._broken and not self.writer.is_closing()

    async def quit(self) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), without waiting long for the reply."""
        if self.usable:
            with contextlib.suppress(SMTPClientError):
                await self.command("QUIT", min(5.0, self.options.timeouts.command))
        self.close()
        try:
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self._broken = True
        if not self.writer.is_closing():
            self.writer.close()


async def open_session(host: str, addresses: Sequence[str], port: int, options: ClientOptions, *,
                       skip_verify: bool = False) -> SMTPConnection:
    """A ready session (greeted, EHLO'd, TLS as the policy asks, authenticated) with one of `addresses`.

    The opportunistic ladder: STARTTLS with a verified certificate; if only trust fails, reconnect and
    accept any certificate; if the handshake itself fails, reconnect in plaintext (`tls="verified"` and
    `"implicit"` stop at the first rung instead).  `skip_verify` starts on the second rung for a host
    already known not to verify.  Raises the last address's error when none works.
    """
    error: SMTPClientError | None = None
    for address in addresses:
        try:
            return await _open_one(host, address, port, options, skip_verify)
        except (ConnectFailed, GreetingRefused, TLSFailed, ConnectionLost) as exc:
            error = exc
            continue
    assert error is not None or not addresses
    raise error or ConnectFailed(f"{host} has no address")


async def _open_one(host: str, address: str, port: int, options: ClientOptions,
                    skip_verify: bool) -> SMTPConnection:
    if options.tls == "implicit":
        conn = await SMTPConnection.connect(host, address, port, options, implicit_tls=options.verifier())
        try:
            await conn.hello()
            await _finish(conn, options)
        except BaseException:
            conn.close()
            raise
        return conn
    strict = options.tls == "verified"
    mode = "any" if skip_verify and not strict else "verify"       # verify -> any -> plain
    note = ""
    while True:
        conn = await SMTPConnection.connect(host, address, port, options)
        try:
            await conn.hello()
            if mode != "plain" and conn.supports("STARTTLS"):
                context = options.verifier() if mode == "verify" else unverified_context()
                try:
                    await conn.starttls(context, verified=mode == "verify")
                except TLSFailed as exc:
                    if strict:
                        raise
                    note = str(exc)
                    if not conn.usable:
                        # The handshake broke the connection: start over one rung down.
                        mode = "any" if exc.verify_failed and mode == "verify" else "plain"
                        continue
                    conn.tls = TLSInfo(note=note)       # STARTTLS refused with a reply: stay plaintext
                else:
                    if note:
                        conn.tls = replace(conn.tls, note=note)
            elif strict:
                raise TLSFailed(f"{host} does not offer STARTTLS, and verified TLS is required")
            else:
                conn.tls = TLSInfo(note=note)
            await _finish(conn, options)
            return conn
        except BaseException:
            conn.close()
            raise


async def _finish(conn: SMTPConnection, options: ClientOptions) -> None:
    if options.username:
        await conn.authenticate(options.username, options.password)


def loop_names(hostname: str, extra: Collection[str] = ()) -> frozenset[str]:
    return frozenset(n.lower().rstrip(".") for n in (hostname, *extra) if n)
