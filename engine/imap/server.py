"""The IMAP listener: binds `imap` (STARTTLS, RFC 3501 §6.2.1) or `imaps` (implicit TLS, RFC 8314 §3.2),
admits connections within the per-address and per-user limits, runs one IMAPSession each, and relays the
store's change events to the sessions of the account concerned (so IDLE wakes within a moment)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, OrderedDict
from typing import Any

from engine.connections import ConnectionCounter
from engine.events import Event, MailboxChanged, MessageStored
from engine.imap.connection import Connection
from engine.imap.session import TLS_HANDSHAKE_TIMEOUT, IMAPSession, Snapshot
from engine.services import Services

log = logging.getLogger(__name__)

ROLES = ("imap", "imaps")
MAX_SNAPSHOTS = 64          # folders whose message lists are kept for quick re-SELECT


class IMAPListener:
    """One bound IMAP service, started and stopped by the runtime (engine.services.Listener)."""

    def __init__(self, services: Services, role: str, *, idle_timeout: float | None = None,
                 login_timeout: float | None = None, loopback_is_secure: bool = True) -> None:
        """`loopback_is_secure=False` makes loopback clients use TLS before passwords like everyone else
        (tests use it to check LOGINDISABLED)."""
        if role not in ROLES:
            raise ValueError(f"IMAPListener serves {' or '.join(ROLES)}, not {role!r}")
        self.services = services
        self.role = role
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.loopback_is_secure = loopback_is_secure
        self.connections = ConnectionCounter(services.config.limits.connections_per_ip)
        self._user_limit = services.config.limits.connections_per_user
        self._users: Counter[tuple[str, str]] = Counter()
        self._users_lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], IMAPSession] = {}
        self._by_account: dict[str, set[IMAPSession]] = {}
        self._address: tuple[str, int] = ("", 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Any = None
        self._snapshots: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def start(self, host: str, port: int) -> None:
        ssl_context = None
        if self.role == "imaps":
            if self.services.tls is None:
                raise RuntimeError("imaps needs a TLS certificate and none is loaded")
            ssl_context = self.services.tls
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            self._new_connection, host=host or None, port=port, ssl=ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_context else None, reuse_address=True)
        sockname: Any = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        self._unsubscribe = self.services.events.subscribe(self._on_event)
        log.info("%s listening on %s:%d", self.role, *self._address)

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting; sessions waiting for a command are closed at once, busy ones get `grace`."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            if session.waiting_for_command or session.idling:
                session.untagged("BYE Server shutting down")
                session.conn.write(b"".join(session._out))
                session._out.clear()
                session.conn.close()
        tasks = list(self._sessions)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- connections ---------------------------------------------------------------------------------

    def _new_connection(self) -> Connection:
        conn = Connection()
        conn.on_connected = self._connected
        return conn

    def _connected(self, conn: Connection) -> None:
        ip = conn.peer[0]
        if not self.connections.acquire(ip):
            conn.write(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
            conn.close()
            return
        kwargs: dict[str, Any] = {"loopback_is_secure": self.loopback_is_secure}
        if self.idle_timeout is not None:
            kwargs["idle_timeout"] = self.idle_timeout
        if self.login_timeout is not None:
            kwargs["login_timeout"] = self.login_timeout
        session = IMAPSession(conn, self.services, self, **kwargs)
        task = asyncio.get_running_loop().create_task(self._run(session, ip), name=f"{self.role}-session")
        self._sessions[task] = session
        task.add_done_callback(self._sessions.pop)

    async def _run(self, session: IMAPSession, ip: str) -> None:
        try:
            await session.run()
        except asyncio.CancelledError:
            session.conn.abort()
            raise
        except Exception:
            log.exception("%s session from %s ended with an error", self.role, ip)
            session.conn.abort()
        finally:
            self.unregister(session)
            session.release()
            self.connections.release(ip)

    # --- folder snapshots shared by sessions ----------------------------------------------------------

    def snapshot(self, account: str, folder: str) -> Snapshot | None:
        return self._snapshots.get((account, folder))

    def remember(self, account: str, snap: Snapshot) -> None:
        key = (account, snap.name)
        self._snapshots.pop(key, None)
        self._snapshots[key] = snap
        while len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots.popitem(last=False)

    # --- per-user limits -----------------------------------------------------------------------------

    def acquire_user(self, account: str, ip: str) -> bool:
        """At most `limits.connections_per_user` logged-in sessions per account and client address."""
        key = (account, ip)
        with self._users_lock:
            if self._users[key] >= self._user_limit:
                return False
            self._users[key] += 1
            return True

    def release_user(self, account: str, ip: str) -> None:
        key = (account, ip)
        with self._users_lock:
            self._users[key] -= 1
            if self._users[key] <= 0:
                del self._users[key]

    # --- change events -------------------------------------------------------------------------------

    def register(self, session: IMAPSession) -> None:
        if session.account is not None:
            self._by_account.setdefault(session.account.address, set()).add(session)

    def unregister(self, session: IMAPSession) -> None:
        if session.account is not None:
            sessions = self._by_account.get(session.account.address)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_account[session.account.address]

    def _on_event(self, event: Event) -> None:
        """Any thread: hop onto our loop before touching sessions."""
        if not isinstance(event, MessageStored | MailboxChanged):
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):     # the loop is closing
            loop.call_soon_threadsafe(self._wake, event.account, event.folder)

    def _wake(self, account: str, folder: str | None) -> None:
        for session in self._by_account.get(account, ()):
            session.notify_changed(folder)
