"""The engine's event bus: what happened, told to whoever listens (GUI bridge, IMAP IDLE, CLI --follow).

Publishing never blocks and never raises into the publisher: a listener that fails is logged and kept.
Listeners are called on the thread that publishes (usually the engine loop); the desktop bridge re-posts
them to the GUI thread itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of all events; `kind` names the event for listeners that do not import the classes."""

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class MessageStored(Event):
    account: str          # user@domain
    folder: str           # IMAP name, "INBOX"
    uid: int


@dataclass(frozen=True)
class MailboxChanged(Event):
    """Flags, expunges or folder changes in one account (IMAP sessions re-read their view)."""

    account: str
    folder: str | None = None


@dataclass(frozen=True)
class DeliveryLogged(Event):
    entry: Any            # engine.log.LogEntry


@dataclass(frozen=True)
class QueueChanged(Event):
    queue_id: str | None = None     # None: many or unknown


@dataclass(frozen=True)
class ListenerChanged(Event):
    service: str
    state: str            # starting | running | stopped | failed
    reason: str = ""


@dataclass(frozen=True)
class DirectoryChanged(Event):
    """Domains, accounts or aliases changed (by this process or the CLI)."""


@dataclass(frozen=True)
class EngineStateChanged(Event):
    state: str            # starting | running | stopping | stopped


Listener = Callable[[Event], Any]


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Adds a listener; returns the function that removes it again."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.kind)
