"""One POP3 conversation: the AUTHORIZATION → TRANSACTION → UPDATE state machine of RFC 1939 §3.

One `cmd_<VERB>` method per command; policy (passwords, rate limits, storage) is called, never inlined.
The session works on a snapshot of the INBOX taken at login (RFC 1939 §8: the maildrop as it was when
the session began), and removes DELE'd messages only at QUIT through `Mailbox.remove`, so an IMAP
session on the same INBOX sees ordinary EXPUNGEs.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.auth import sasl
from engine.interfaces import Account, Mailbox, MessageMeta
from engine.pop3 import parser
from engine.pop3.connection import Connection, ConnectionClosed, LineTooLong
from engine.pop3.parser import Command, CommandError, err, ok
from engine.pop3.readahead import ReadAhead
from engine.services import Services

log = logging.getLogger(__name__)

INBOX = "INBOX"
IMPLEMENTATION = "Postroom"
# RFC 1939 §3: the autologout timer "MUST be of at least 10 minutes' duration".
IDLE_TIMEOUT = 600.0
TLS_HANDSHAKE_TIMEOUT = 30.0

# RFC 2449 §8 / RFC 3206 response codes, named once.
IN_USE = "IN-USE"        # RFC 2449 §8.1.1: the maildrop is locked by another session
AUTH = "AUTH"            # RFC 3206 §5: the problem is the credentials (or how they were sent)
SYS_TEMP = "SYS/TEMP"    # RFC 3206 §4: a temporary system problem, try again later


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


_AUTHZ = frozenset({State.AUTHORIZATION})
_TRANS = frozenset({State.TRANSACTION})
_ANY = frozenset({State.AUTHORIZATION, State.TRANSACTION})

# Which state each command is valid in (RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).
COMMAND_STATES: dict[str, frozenset[State]] = {
    "USER": _AUTHZ, "PASS": _AUTHZ, "AUTH": _AUTHZ, "STLS": _AUTHZ, "APOP": _AUTHZ,
    "CAPA": _ANY, "QUIT": _ANY, "NOOP": _TRANS,
    "STAT": _TRANS, "LIST": _TRANS, "RETR": _TRANS, "DELE": _TRANS, "RSET": _TRANS,
    "TOP": _TRANS, "UIDL": _TRANS, "LAST": _TRANS,
}


class MaildropLocks:
    """Which maildrops a POP3 session holds, process-wide (RFC 1939 §8: exclusive-access lock).

    One instance is shared by every POP3 listener (pop3 and pop3s) in the process; a threading lock
    because engines in other threads (tests, the desktop's engine thread) share the module.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[str, str]] = set()

    def acquire(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._held:
                return False
            self._held.add(key)
            return True

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._held.discard(key)

    def held(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._held


MAILDROP_LOCKS = MaildropLocks()


def maildrop_key(store: Any, address: str) -> tuple[str, str]:
    """Names a maildrop by the store's directory and the account, so two stores never share a lock."""
    root = getattr(store, "root", None)
    return (str(root) if root is not None else f"store-{id(store)}", address.lower())


def is_loopback(host: str) -> bool:
    """Whether a peer address is this machine, where plaintext passwords cannot be overheard."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@dataclass
class Maildrop:
    """The INBOX as this session sees it: fixed at login, plus the DELE marks of this session."""

    mailbox: Mailbox
    uidvalidity: int
    messages: list[MessageMeta]
    deleted: set[int] = field(default_factory=set)      # message numbers, 1-based
    last_accessed: int = 0                              # RFC 1725 LAST: highest number RETR'd
    read_ahead: ReadAhead | None = None

    def live(self) -> list[tuple[int, MessageMeta]]:
        return [(n, m) for n, m in enumerate(self.messages, start=1) if n not in self.deleted]

    def totals(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(m.size for _, m in live)


class POP3Session:
    """Owns one connection from greeting to close."""

    def __init__(self, conn: Connection, services: Services, role: str, *,
                 locks: MaildropLocks = MAILDROP_LOCKS, idle_timeout: float = IDLE_TIMEOUT,
                 loopback_is_secure: bool = True,
                 run_blocking: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.conn = conn
        self.services = services
        self.role = role
        self.locks = locks
        self.idle_timeout = idle_timeout
        self.loopback_is_secure = loopback_is_secure
        self.state = State.AUTHORIZATION
        self.user: str | None = None                 # from USER, waiting for PASS
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self._lock_key: tuple[str, str] | None = None
        self._closing = False
        self.waiting_for_command = False             # the listener may close us at once while True
        self._run_blocking: Callable[..., Awaitable[Any]] = run_blocking or asyncio.to_thread
        host, _port = conn.peer
        self.peer_ip = host

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.conn.write(ok(f"{IMPLEMENTATION} POP3 server ready"))
            while not self._closing:
                self.waiting_for_command = True
                try:
                    line = await self.conn.readline(parser.MAX_COMMAND_LINE, self.idle_timeout)
                except LineTooLong:
                    self.conn.write(err(f"command line longer than {parser.MAX_COMMAND_LINE} octets"))
                    continue
                except TimeoutError:
                    # RFC 1939 §3: an autologout timer expiring closes without entering UPDATE.
                    self.conn.write(err(f"autologout: idle for more than {int(self.idle_timeout)} seconds"))
                    break
                finally:
                    self.waiting_for_command = False
                await self.handle_line(line)
                # Bounded output even when a client pipelines many RETRs before reading any reply.
                await self._drain()
            await self._drain()
        except ConnectionClosed:
            pass
        finally:
            if self.maildrop is not None and self.maildrop.read_ahead is not None:
                self.maildrop.read_ahead.clear()
            self.release()
            self.conn.close()

    async def _drain(self) -> None:
        """Waits for the client to take our output; one that stops reading for the idle timeout is cut
        off, so it cannot hold the maildrop lock for ever."""
        try:
            await self.conn.drain(self.idle_timeout)
        except TimeoutError:
            log.info("pop3: %s stopped reading; dropping the connection", self.peer_ip)
            self.conn.abort()
            raise ConnectionClosed from None

    async def handle_line(self, line: bytes) -> None:
        try:
            command = parser.parse_command(line)
        except CommandError as exc:
            self.conn.write(err(str(exc)))
            return
        states = COMMAND_STATES.get(command.verb)
        if states is None:
            self.conn.write(err(f"unknown command {command.verb}"))
            return
        if self.state not in states:
            where = "after login" if self.state is State.TRANSACTION else "before login"
            self.conn.write(err(f"{command.verb} is not valid {where}"))
            return
        handler: Callable[[Command], Awaitable[None]] = getattr(self, f"cmd_{command.verb}")
        try:
            await handler(command)
        except CommandError as exc:
            self.conn.write(err(str(exc)))
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            # A bug of ours: say so in protocol terms and keep the session usable.
            log.exception("pop3: %s failed internally", command.verb)
            self.conn.write(err(f"{command.verb} failed because of an internal error", SYS_TEMP))

    def release(self) -> None:
        """Gives the maildrop lock back; deletions not applied by QUIT are simply forgotten."""
        if self._lock_key is not None:
            self.locks.release(self._lock_key)
            self._lock_key = None

    # --- AUTHORIZATION ------------------------------------------------------------------------------

    def _plaintext_allowed(self) -> bool:
        """RFC 2595 §2.1 / RFC 8314: no clear-text passwords over an unprotected link, but loopback."""
        return self.conn.is_tls or (self.loopback_is_secure and is_loopback(self.peer_ip))

    def _refuse_plaintext(self) -> bool:
        if self._plaintext_allowed():
            return False
        self.conn.write(err("plaintext authentication is disallowed without TLS; use STLS first", AUTH))
        return True

    async def cmd_CAPA(self, command: Command) -> None:
        """RFC 2449 §5: the capabilities valid in the current state."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._plaintext_allowed():
                caps += ["USER", "SASL " + " ".join(sasl.MECHANISMS)]
            if self._stls_available():
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")
        self.conn.write(parser.multiline(ok("capability list follows"), caps))

    def _stls_available(self) -> bool:
        return self.role == "pop3" and self.services.tls is not None and not self.conn.is_tls

    async def cmd_STLS(self, command: Command) -> None:
        """RFC 2595 §4: start TLS; anything pipelined behind the command is discarded."""
        if command.args:
            raise CommandError("STLS takes no arguments")
        if self.conn.is_tls:
            self.conn.write(err("TLS is already active"))
            return
        if not self._stls_available() or self.services.tls is None:
            self.conn.write(err("STLS is not available on this port"))
            return
        self.conn.write(ok("begin TLS negotiation"))
        try:
            await self.conn.start_tls(self.services.tls, TLS_HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            log.info("pop3 STLS handshake with %s failed: %s", self.peer_ip, exc)
            self._closing = True
            raise ConnectionClosed from None
        # RFC 2595 §4: everything learned before TLS is forgotten.
        self.user = None

    async def cmd_USER(self, command: Command) -> None:
        """RFC 1939 §7: names the mailbox; answered +OK for any name so the reply reveals nothing."""
        if self._refuse_plaintext():
            return
        name = command.raw_args.strip()
        if not name:
            raise CommandError("USER needs a name")
        self.user = name
        self.conn.write(ok("send your password"))

    async def cmd_PASS(self, command: Command) -> None:
        """RFC 1939 §7: the password for the name given by USER; the rest of the line, spaces kept."""
        if self._refuse_plaintext():
            return
        if self.user is None:
            self.conn.write(err("send USER first"))
            return
        user, self.user = self.user, None
        await self._login(user, command.raw_args)

    async def cmd_APOP(self, command: Command) -> None:
        """RFC 1939 §7 APOP needs the clear password on the server; we keep only argon2 hashes."""
        self.conn.write(err("APOP is not supported; use USER/PASS or AUTH PLAIN over TLS", AUTH))

    async def cmd_AUTH(self, command: Command) -> None:
        """RFC 5034 §4: SASL authentication through the shared mechanisms (PLAIN, LOGIN)."""
        if not command.args:
            # Not in RFC 5034, but sent by clients probing for mechanisms (Outlook, fetchmail).
            self.conn.write(parser.multiline(ok("SASL mechanisms follow"), list(sasl.MECHANISMS)))
            return
        if self._refuse_plaintext():
            return
        if len(command.args) > 2:
            raise CommandError("AUTH takes a mechanism and at most one initial response")
        initial = command.args[1].encode("ascii", errors="replace") if len(command.args) == 2 else None
        try:
            exchange = sasl.start(command.args[0], initial)
            step = exchange.first
            while isinstance(step, sasl.Challenge):
                # RFC 5034 §4: "+ " and the base64 challenge; the client answers with one line.
                self.conn.write(b"+ " + step.line + parser.CRLF)
                await self._drain()
                try:
                    line = await self.conn.readline(sasl.MAX_LINE, self.idle_timeout)
                except LineTooLong:
                    raise sasl.SaslError(f"response line longer than {sasl.MAX_LINE} octets") from None
                except TimeoutError:
                    self._closing = True
                    self.conn.write(err("autologout: no SASL response"))
                    return
                step = exchange.step(line)
        except sasl.SaslError as exc:
            if exc.cancelled:
                self.conn.write(err("authentication cancelled"))
            else:
                self.conn.write(err(exc.reason, AUTH))
            return
        await self._login(step.username, step.password)

    async def _login(self, username: str, password: str) -> None:
        """Checks the password under the shared per-IP failure limiter, then opens the maildrop."""
        limiter = self.services.limiter
        if limiter is not None and limiter.blocked(self.peer_ip):
            self.conn.write(err("too many failed logins from your address; try again later", SYS_TEMP))
            return
        try:
            account: Account | None = await self._run_blocking(
                self.services.directory.authenticate, username, password)
        except Exception:
            log.exception("pop3 authentication of %r failed internally", username)
            self.conn.write(err("authentication is unavailable; try again later", SYS_TEMP))
            return
        if account is None:
            if limiter is not None:
                limiter.failure(self.peer_ip)
                delay = float(limiter.delay(self.peer_ip))
                if delay > 0:
                    await asyncio.sleep(delay)
            self.conn.write(err("authentication failed", AUTH))
            return
        if limiter is not None:
            limiter.success(self.peer_ip)
        await self._open_maildrop(account)

    async def _open_maildrop(self, account: Account) -> None:
        key = maildrop_key(self.services.store, account.address)
        # RFC 1939 §8 / RFC 2449 §8.1.1: one session at a time holds the maildrop.
        if not self.locks.acquire(key):
            self.conn.write(err("maildrop is already in use by another POP3 session", IN_USE))
            return
        try:
            mailbox: Mailbox = await self._run_blocking(self.services.store.mailbox, account.address)
            uidvalidity, metas = await self._run_blocking(_snapshot, mailbox)
        except Exception:
            self.locks.release(key)
            log.exception("pop3: opening the maildrop of %s failed", account.address)
            self.conn.write(err("cannot open the maildrop now; try again later", SYS_TEMP))
            return
        self._lock_key = key
        self.account = account
        self.maildrop = Maildrop(mailbox=mailbox, uidvalidity=uidvalidity, messages=metas,
                                 read_ahead=ReadAhead(mailbox, metas, self._run_blocking))
        self.state = State.TRANSACTION
        count, size = self.maildrop.totals()
        self.conn.write(ok(f"maildrop has {count} messages ({size} octets)"))

    # --- TRANSACTION --------------------------------------------------------------------------------

    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _message(self, arg: str) -> tuple[int, MessageMeta]:
        """A message number that names a message not marked deleted (RFC 1939 §5)."""
        number = parser.parse_number(arg)
        drop = self._drop()
        if not 1 <= number <= len(drop.messages):
            raise CommandError(f"no such message, only {len(drop.messages)} in maildrop")
        if number in drop.deleted:
            raise CommandError(f"message {number} already deleted")
        return number, drop.messages[number - 1]

    @staticmethod
    def _arity(command: Command, low: int, high: int) -> None:
        if not low <= len(command.args) <= high:
            if low == high:
                raise CommandError(f"{command.verb} takes {low} argument{'s' if low != 1 else ''}")
            raise CommandError(f"{command.verb} takes {low} to {high} arguments")

    async def cmd_STAT(self, command: Command) -> None:
        """RFC 1939 §5 STAT: "+OK count size" of messages not marked deleted."""
        self._arity(command, 0, 0)
        count, size = self._drop().totals()
        self.conn.write(ok(f"{count} {size}"))

    async def cmd_LIST(self, command: Command) -> None:
        """RFC 1939 §5 LIST: sizes in octets, exactly as RETR sends them before byte-stuffing."""
        self._arity(command, 0, 1)
        if command.args:
            number, meta = self._message(command.args[0])
            self.conn.write(ok(f"{number} {meta.size}"))
            return
        drop = self._drop()
        count, size = drop.totals()
        lines = [f"{n} {m.size}" for n, m in drop.live()]
        self.conn.write(parser.multiline(ok(f"{count} messages ({size} octets)"), lines))

    async def cmd_UIDL(self, command: Command) -> None:
        """RFC 1939 §7 UIDL: "<uidvalidity>.<uid>", the same in every session and equal to IMAP's identity."""
        self._arity(command, 0, 1)
        drop = self._drop()
        if command.args:
            number, meta = self._message(command.args[0])
            self.conn.write(ok(f"{number} {parser.uidl_of(drop.uidvalidity, meta.uid)}"))
            return
        lines = [f"{n} {parser.uidl_of(drop.uidvalidity, m.uid)}" for n, m in drop.live()]
        self.conn.write(parser.multiline(ok("unique-id listing follows"), lines))

    async def _read(self, number: int, meta: MessageMeta) -> bytes | None:
        """The message's bytes, or None after telling the client why it cannot have them."""
        drop = self._drop()
        assert drop.read_ahead is not None
        try:
            return await drop.read_ahead.message(number, drop.deleted)
        except Exception as exc:
            # Typically an IMAP session expunged it after our snapshot; the store says why.
            log.info("pop3: reading message %d (uid %d) failed: %s", number, meta.uid, exc)
            self.conn.write(err(f"message {number} cannot be read now (removed by another session?)",
                                SYS_TEMP))
            return None

    async def cmd_RETR(self, command: Command) -> None:
        """RFC 1939 §5 RETR: the whole message, byte-stuffed.  Flags are left alone (as Dovecot does)."""
        self._arity(command, 1, 1)
        number, meta = self._message(command.args[0])
        data = await self._read(number, meta)
        if data is None:
            return
        drop = self._drop()
        drop.last_accessed = max(drop.last_accessed, number)
        self.conn.write(parser.stuff_message(data, ok(f"{len(data)} octets")))

    async def cmd_TOP(self, command: Command) -> None:
        """RFC 1939 §7 TOP msg n: the header, the blank line and n lines of the body."""
        self._arity(command, 2, 2)
        number, meta = self._message(command.args[0])
        lines = parser.parse_number(command.args[1])
        data = await self._read(number, meta)
        if data is None:
            return
        self.conn.write(parser.stuff_message(parser.top_of_message(data, lines), ok("top of message follows")))

    async def cmd_DELE(self, command: Command) -> None:
        """RFC 1939 §5 DELE: only marks; the message goes at QUIT (UPDATE state)."""
        self._arity(command, 1, 1)
        number, _meta = self._message(command.args[0])
        self._drop().deleted.add(number)
        self.conn.write(ok(f"message {number} deleted"))

    async def cmd_NOOP(self, command: Command) -> None:
        """RFC 1939 §5 NOOP."""
        self._arity(command, 0, 0)
        self.conn.write(ok())

    async def cmd_RSET(self, command: Command) -> None:
        """RFC 1939 §5 RSET: unmarks every message marked deleted in this session."""
        self._arity(command, 0, 0)
        drop = self._drop()
        drop.deleted.clear()
        drop.last_accessed = 0
        count, size = drop.totals()
        self.conn.write(ok(f"maildrop has {count} messages ({size} octets)"))

    async def cmd_LAST(self, command: Command) -> None:
        """RFC 1725 §5 LAST (dropped by RFC 1939, still sent by fetchmail): the highest message number
        retrieved in this session; answering it keeps fetchmail from warning on every poll."""
        self._arity(command, 0, 0)
        self.conn.write(ok(str(self._drop().last_accessed)))

    async def cmd_QUIT(self, command: Command) -> None:
        """RFC 1939 §4/§6: QUIT in TRANSACTION enters UPDATE and removes the messages marked deleted."""
        self._closing = True
        if self.state is State.AUTHORIZATION:
            self.conn.write(ok(f"{IMPLEMENTATION} POP3 server signing off"))
            return
        self.state = State.UPDATE
        drop = self._drop()
        if drop.read_ahead is not None:
            drop.read_ahead.clear()
        uids = [drop.messages[n - 1].uid for n in sorted(drop.deleted)]
        if uids:
            try:
                await self._run_blocking(drop.mailbox.remove, INBOX, uids)
            except Exception:
                log.exception("pop3: removing %d messages of %s failed", len(uids),
                              self.account.address if self.account else "?")
                # RFC 1939 §6: "-ERR some deleted messages not removed".
                self.conn.write(err("some deleted messages not removed", SYS_TEMP))
                return
        left = len(drop.messages) - len(uids)
        remark = "maildrop empty" if left == 0 else f"{left} messages left"
        self.conn.write(ok(f"{IMPLEMENTATION} POP3 server signing off ({remark})"))


def _snapshot(mailbox: Mailbox) -> tuple[int, list[MessageMeta]]:
    """UIDVALIDITY and the messages of the INBOX, in ascending UID order: message n is the n-th."""
    status = mailbox.status(INBOX)
    metas = sorted(mailbox.messages(INBOX), key=lambda m: m.uid)
    return status.uidvalidity, metas
