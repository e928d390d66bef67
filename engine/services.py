"""What every protocol listener is handed by the runtime: settings, stores, shared limits and outlets.

Listeners get one `Services` and nothing else, so a test can build a listener over a temp directory exactly
as the engine does, and no protocol module reaches into the runtime.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.config import Config
from engine.events import EventBus


class Outbound(Protocol):
    """The outbound queue as SMTP submission sees it (engine/queue implements it)."""

    async def enqueue(self, sender: str, recipients: list[str], data: bytes, *,
                      received_from: str = "", authenticated_as: str = "") -> str:
        """Spools durably and returns the queue id; raises OSError when the spool cannot take it."""
        ...


class DeliveryRecorder(Protocol):
    """The delivery log as protocol servers see it (engine/log implements it)."""

    def record(self, event: str, **fields: Any) -> object: ...     # what it returns is not used


class Listener(Protocol):
    """One bound service (smtp, submission, imap, ...), started and stopped by the runtime."""

    async def start(self, host: str, port: int) -> None: ...
    async def stop(self, grace: float = 5.0) -> None: ...
    @property
    def address(self) -> tuple[str, int]: ...


@dataclass
class Services:
    config: Config
    directory: Any                    # engine.auth.Directory
    store: Any                        # engine.store.MailStore
    events: EventBus
    limiter: Any                      # engine.auth.AuthFailureLimiter (shared by SMTP, IMAP, POP3)
    tls: ssl.SSLContext | None = None  # server context for STARTTLS and implicit TLS
    outbound: Outbound | None = None  # None until the queue exists: remote recipients get a 4xx
    log: DeliveryRecorder | None = None
    # Hooks later issues plug in (DKIM signing, inbound verification) without protocol code changes.
    inbound_filters: list[Callable[..., Awaitable[Any]]] = field(default_factory=list)
