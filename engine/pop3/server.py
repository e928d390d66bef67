"""The POP3 listener: binds a port (`pop3` with STLS, `pop3s` with implicit TLS, RFC 8314 §3.3), limits
connections per client address, and runs one `POP3Session` per connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.connections import ConnectionCounter
from engine.pop3.connection import Connection
from engine.pop3.parser import err
from engine.pop3.session import IDLE_TIMEOUT, MAILDROP_LOCKS, SYS_TEMP, TLS_HANDSHAKE_TIMEOUT, POP3Session
from engine.services import Services

log = logging.getLogger(__name__)

ROLES = ("pop3", "pop3s")


class POP3Listener:
    """One bound POP3 service, started and stopped by the runtime (engine.services.Listener)."""

    def __init__(self, services: Services, role: str, *, idle_timeout: float = IDLE_TIMEOUT,
                 loopback_is_secure: bool = True) -> None:
        """`loopback_is_secure=False` treats loopback clients like remote ones (TLS before passwords);
        tests use it, and so could a host where untrusted local users share the machine."""
        if role not in ROLES:
            raise ValueError(f"POP3Listener serves {' or '.join(ROLES)}, not {role!r}")
        self.services = services
        self.role = role
        self.idle_timeout = idle_timeout
        self.loopback_is_secure = loopback_is_secure
        self.connections = ConnectionCounter(services.config.limits.connections_per_ip)
        self._server: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], POP3Session] = {}
        self._address: tuple[str, int] = ("", 0)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), with the real port when started on port 0."""
        return self._address

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def start(self, host: str, port: int) -> None:
        ssl_context = None
        if self.role == "pop3s":
            if self.services.tls is None:
                raise RuntimeError("pop3s needs a TLS certificate and none is loaded")
            ssl_context = self.services.tls
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, host=host or None, port=port, ssl=ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_context else None,
            reuse_address=True)
        sockname: Any = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        log.info("%s listening on %s:%d", self.role, *self._address)

    def _new_connection(self) -> Connection:
        conn = Connection()
        conn.on_connected = self._connected
        return conn

    def _connected(self, conn: Connection) -> None:
        """Runs once the transport is up (after the handshake on pop3s): admit or refuse the client."""
        ip = conn.peer[0]
        if not self.connections.acquire(ip):
            conn.write(err("too many connections from your address", SYS_TEMP))
            conn.close()
            return
        session = POP3Session(conn, self.services, self.role, locks=MAILDROP_LOCKS,
                              idle_timeout=self.idle_timeout, loopback_is_secure=self.loopback_is_secure)
        task = asyncio.get_running_loop().create_task(self._run(session, ip), name=f"{self.role}-session")
        self._sessions[task] = session
        task.add_done_callback(self._sessions.pop)

    async def _run(self, session: POP3Session, ip: str) -> None:
        try:
            await session.run()
        except asyncio.CancelledError:
            session.conn.abort()        # stop() ran out of grace: drop the connection, apply nothing
            raise
        except Exception:
            log.exception("%s session from %s ended with an error", self.role, ip)
            session.conn.abort()
        finally:
            session.release()
            self.connections.release(ip)

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting; idle sessions close at once (no UPDATE, RFC 1939 §6), busy ones get `grace`."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            if session.waiting_for_command:
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
