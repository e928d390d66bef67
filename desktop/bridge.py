"""The one door between the window and the engine: engine calls go out, engine events come back as signals.

Everything the GUI asks of the engine is a coroutine submitted to the engine's own loop (EngineThread), and
its answer comes back to the GUI thread as a queued Qt signal, so no widget ever waits on disk, DNS or a
socket.  Two styles are offered: callbacks (`submit`/`call`, which work under any Qt event loop, including
pytest-qt's) and awaitables (`run`/`run_call`, for coroutines on the GUI's qasync loop).

Engine events arrive in bursts (500 deliveries a second; 100,000 DeliveryLogged when another process bulk-
writes the log and the engine catches up).  One queued signal and one Python slot per event would keep the
GUI thread busy for seconds, so events are collected in an inbox on the engine thread and handed over in
batches, at most one every BATCH_MS, with repeats coalesced (see `_drain`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from engine.events import (
    DeliveryLogged,
    DirectoryChanged,
    EngineStateChanged,
    Event,
    ListenerChanged,
    MailboxChanged,
    MessageStored,
    QueueChanged,
)
from engine.runtime import Engine, EngineThread

log = logging.getLogger(__name__)
T = TypeVar("T")

OnResult = Callable[[Any], None]
OnError = Callable[[str], None]

# How long events collect before the GUI thread takes them as one batch: short enough that a person sees
# new mail "at once", long enough that a burst costs a handful of slots instead of one per event.
BATCH_MS = 50


def describe_error(exc: BaseException) -> str:
    """An exception as a sentence for a message box or status bar; tracebacks go to the log only.

    The engine's own errors (DirectoryError, ConfigError, EngineError, ValueError) already carry a sentence
    meant for people; anything else is a bug, so it is logged with its traceback and named plainly.
    """
    if isinstance(exc, concurrent.futures.TimeoutError | asyncio.TimeoutError | TimeoutError):
        return "The engine did not answer in time."
    if isinstance(exc, concurrent.futures.CancelledError | asyncio.CancelledError):
        return "The operation was cancelled."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}."
    text = str(exc).strip()
    if text and (type(exc).__module__.split(".")[0] == "engine" or isinstance(exc, ValueError)):
        return text
    log.error("engine call failed", exc_info=(type(exc), exc, exc.__traceback__))
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"Something went wrong ({detail}). The details are in the log."


async def invoke(func: Callable[..., Any], *args: Any) -> Any:
    """Calls an engine API function from the engine loop whether it is a coroutine function or blocking."""
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    result = await asyncio.to_thread(func, *args)
    if inspect.isawaitable(result):
        return await result
    return result


class _Pending:
    """One call in flight: where its answer goes, and the widget whose lifetime bounds it."""

    __slots__ = ("on_error", "on_result", "owner")

    def __init__(self, on_result: OnResult | None, on_error: OnError | None, owner: QObject | None) -> None:
        self.on_result = on_result
        self.on_error = on_error
        self.owner = owner


class EngineBridge(QObject):
    """Owned by the GUI thread; wraps one running EngineThread."""

    # Engine events, re-emitted on the GUI thread once per batch (see `_drain` for what is coalesced).
    eventsReceived = Signal(object)         # list[Event]: every event of the batch, in order
    deliveryLogged = Signal(object)         # list[engine.log.LogEntry]: the batch's new rows, in order
    queueChanged = Signal(object)           # the queue id if one message changed, else None
    listenerChanged = Signal(object)        # ListenerChanged: the latest per service
    directoryChanged = Signal()             # once per batch
    engineStateChanged = Signal(str)        # starting | running | stopping | stopped | failed: each, in order
    messageStored = Signal(object)          # MessageStored: the latest per (account, folder)
    mailboxChanged = Signal(object)         # MailboxChanged: the latest per (account, folder)
    # A call failed and its caller gave no error handler: the main window shows this sentence.
    errorOccurred = Signal(str)
    busyChanged = Signal(bool)

    _posted = Signal()                      # internal: the inbox has events (emitted on the engine thread)
    _finished = Signal(object, object)      # internal: (_Pending, concurrent.futures.Future)

    def __init__(self, thread: EngineThread, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = thread
        self._in_flight = 0
        self._closed = False
        self._inbox: list[Event] = []
        self._inbox_lock = threading.Lock()
        self._wake_posted = False           # a _posted is on its way or the batch timer runs
        self._batch_timer = QTimer(self)
        self._batch_timer.setSingleShot(True)
        self._batch_timer.setInterval(BATCH_MS)
        self._batch_timer.timeout.connect(self._drain)
        # Both connections are queued: the engine thread emits, the GUI thread runs the slot.  _finished
        # says so explicitly: a call that completes before add_done_callback is reached (the GUI thread
        # loses the GIL while waking the engine loop) runs the callback on the GUI thread itself, and an
        # automatic connection would then answer inside submit(), before the caller has returned.
        self._posted.connect(self._batch_timer.start)
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = thread.engine.events.subscribe(self._from_engine)

    # --- the engine ------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """For reading plain attributes (config, data_dir); never call its blocking methods from Qt."""
        return self._thread.engine

    @property
    def engine_thread(self) -> EngineThread:
        return self._thread

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def close(self) -> None:
        """Stops listening to the engine (the window is going away; the engine may keep serving)."""
        if not self._closed:
            self._closed = True
            self._unsubscribe()

    # --- calls -----------------------------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, Any], on_result: OnResult | None = None,
               on_error: OnError | None = None, owner: QObject | None = None) -> concurrent.futures.Future[Any]:
        """Runs `coro` on the engine loop; the callbacks run later on the GUI thread.

        When `owner` is given and has been deleted by the time the answer arrives, the answer is dropped:
        a closed dialog must not be written to.
        """
        pending = _Pending(on_result, on_error, owner)
        try:
            if self._closed:
                raise RuntimeError("bridge closed")
            future = self._thread.submit(coro)
        except RuntimeError:
            # The window outlived the engine (quitting): a late timer's call is dropped, not an error.
            coro.close()
            dropped: concurrent.futures.Future[Any] = concurrent.futures.Future()
            dropped.cancel()
            return dropped
        self._in_flight += 1
        if self._in_flight == 1:
            self.busyChanged.emit(True)
        future.add_done_callback(lambda f: self._finished.emit(pending, f))
        return future

    def call(self, func: Callable[..., Any], *args: Any, on_result: OnResult | None = None,
             on_error: OnError | None = None, owner: QObject | None = None) -> concurrent.futures.Future[Any]:
        """Runs an engine function: awaited on the engine loop if it is async, else in a worker thread."""
        return self.submit(invoke(func, *args), on_result, on_error, owner)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Awaitable from the GUI's qasync loop."""
        return await asyncio.wrap_future(self._thread.submit(coro))

    async def run_call(self, func: Callable[..., Any], *args: Any) -> Any:
        return await self.run(invoke(func, *args))

    @Slot(object, object)
    def _deliver(self, pending: _Pending, future: concurrent.futures.Future[Any]) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.busyChanged.emit(False)
        if pending.owner is not None and not shiboken6.isValid(pending.owner):
            return
        try:
            result = future.result()
        except BaseException as exc:
            message = describe_error(exc)
            if pending.on_error is not None:
                pending.on_error(message)
            else:
                self.errorOccurred.emit(message)
            return
        if pending.on_result is not None:
            try:
                pending.on_result(result)
            except Exception as exc:
                # A bug in a panel: say so in words, keep the window alive.
                log.exception("handling an engine answer failed")
                self.errorOccurred.emit(describe_error(exc))

    # --- events ----------------------------------------------------------------------------------

    def _from_engine(self, event: Event) -> None:
        """Called on the engine thread by the event bus; must not block and must not touch widgets.

        Only the first event of a batch crosses threads as a signal; the rest wait in the inbox.
        """
        if self._closed:
            return
        with self._inbox_lock:
            self._inbox.append(event)
            if self._wake_posted:
                return
            self._wake_posted = True
        self._posted.emit()

    @Slot()
    def _drain(self) -> None:
        """Hands one batch to the panels: each signal at most once, except where every item matters.

        Panels react to events by scheduling a re-read through the engine, so the latest event of a kind
        carries all they need: queueChanged gets None ("several") when more than one message changed,
        messageStored/mailboxChanged the latest per (account, folder), directoryChanged fires once.
        Engine states are few and their order matters, so each is emitted.
        """
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
            self._wake_posted = False
        if self._closed or not events:
            return
        states: list[str] = []
        listeners: dict[str, ListenerChanged] = {}
        directory = False
        stored: dict[tuple[str, str], MessageStored] = {}
        changed: dict[tuple[str, str | None], MailboxChanged] = {}
        entries: list[Any] = []
        queue_ids: set[str | None] = set()
        for event in events:
            if isinstance(event, DeliveryLogged):
                entries.append(event.entry)
            elif isinstance(event, MessageStored):
                stored[(event.account.lower(), event.folder)] = event
            elif isinstance(event, QueueChanged):
                queue_ids.add(event.queue_id)
            elif isinstance(event, MailboxChanged):
                changed[(event.account.lower(), event.folder)] = event
            elif isinstance(event, ListenerChanged):
                listeners[event.service] = event
            elif isinstance(event, DirectoryChanged):
                directory = True
            elif isinstance(event, EngineStateChanged):
                states.append(event.state)
        self.eventsReceived.emit(events)
        for state in states:
            self.engineStateChanged.emit(state)
        for listener in listeners.values():
            self.listenerChanged.emit(listener)
        if directory:
            self.directoryChanged.emit()
        for stored_event in stored.values():
            self.messageStored.emit(stored_event)
        for changed_event in changed.values():
            self.mailboxChanged.emit(changed_event)
        if entries:
            self.deliveryLogged.emit(entries)
        if queue_ids:
            self.queueChanged.emit(next(iter(queue_ids)) if len(queue_ids) == 1 else None)
