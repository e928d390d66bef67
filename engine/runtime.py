"""The Engine: loads settings, opens the stores, runs every listener on one asyncio loop.

The same object runs in the foreground (`postroom serve`), in a background thread under the desktop app
(`EngineThread`), and inside tests.  Callers on other threads never touch its loop directly: they submit
coroutines through `EngineThread.submit`, and listen to `engine.events`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import importlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import Config, ListenAddress, load_config
from engine.eventloop import loop_kind, loop_name, new_event_loop, run
from engine.events import EngineStateChanged, EventBus, ListenerChanged
from engine.interfaces import StoreError
from engine.services import Listener, Services

if TYPE_CHECKING:
    from engine.store.agent import DeliveryAgent

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long SIGTERM waits for SMTP transactions in flight before closing them with 421.
SHUTDOWN_GRACE = 10.0

# Which class serves each service; a package that does not exist yet is reported, not fatal.
LISTENER_CLASSES: dict[str, tuple[str, str]] = {
    "smtp": ("engine.smtp.server", "SMTPListener"),
    "submission": ("engine.smtp.server", "SMTPListener"),
    "submissions": ("engine.smtp.server", "SMTPListener"),
    "imap": ("engine.imap.server", "IMAPListener"),
    "imaps": ("engine.imap.server", "IMAPListener"),
    "pop3": ("engine.pop3.server", "POP3Listener"),
    "pop3s": ("engine.pop3.server", "POP3Listener"),
}


@dataclass(frozen=True)
class ListenerState:
    service: str
    address: str           # as configured, or as bound when the port was 0
    state: str             # off | running | failed | unavailable | stopped
    reason: str = ""


class EngineError(Exception):
    """The engine cannot start as configured; str() is one line for the CLI or a GUI message."""


def describe_bind_error(service: str, address: ListenAddress, exc: OSError) -> str:
    """Why a listener could not bind, in words a person can act on."""
    where = f"{service} on {address}"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{where}: permission denied — ports below 1024 need root or the CAP_NET_BIND_SERVICE "
                f"capability (e.g. `sudo setcap cap_net_bind_service=+ep <python>`); or choose a high port with "
                f"`--listen {service}=127.0.0.1:{address.port + 2000 if address.port < 1024 else address.port}`")
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the address is already in use by another program (another mail server?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: this machine has no address {address.host}"
    return f"{where}: {exc.strerror or exc}"


class Engine:
    """One mail server: settings, directory, store, queue, log and listeners."""

    def __init__(self, data_dir: Path, *, config: Config | None = None,
                 listen: dict[str, ListenAddress | None] | None = None, delivery_agent: bool = True) -> None:
        """`delivery_agent` is what `[delivery] local_process` means when the settings leave it out.

        The desktop app passes False: with the agent, 500 messages arriving at once stalled the window for
        249 ms (bench/gui_stall.py, median of 5 runs) against 86 ms without; the agent's extra throughput
        matters to a server taking hundreds of messages a second, not to the window beside it."""
        self.data_dir = data_dir
        self._delivery_agent_default = delivery_agent
        self._config_override = config
        self._listen_override = listen
        self.events = EventBus()
        self.config: Config = config if config is not None else Config(data_dir=data_dir)
        self.services: Services | None = None
        self.directory: Any = None
        self.store: Any = None
        self.log: Any = None
        self.queue: Any = None
        self.mailauth: Any = None
        self._listeners: dict[str, Listener] = {}
        self._states: dict[str, ListenerState] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._agent: DeliveryAgent | None = None
        self._start_task: asyncio.Task[Any] | None = None     # the task inside start(), while it runs
        self._running = False
        self._opened = False

    # --- opening the data directory (no sockets) ----------------------------------------------------

    def open(self) -> None:
        """Loads and validates settings and opens the stores; the CLI uses this without starting anything."""
        if self._opened:
            return
        config = self._config_override or load_config(self.data_dir)
        if self._listen_override is not None:
            config = config.with_listen(self._listen_override)
        self.config = config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        from engine.auth import AuthFailureLimiter, Directory
        from engine.store import MailStore

        self.directory = Directory(config.state_db, notify=self.events.publish)
        self.store = MailStore(config.mail_dir, notify=self.events.publish, hostname=config.hostname)
        limiter = AuthFailureLimiter(max_failures=config.limits.auth_failures, window=config.limits.auth_window)
        self.services = Services(config=config, directory=self.directory, store=self.store,
                                 events=self.events, limiter=limiter)
        self.log = _optional(lambda: importlib.import_module("engine.log").DeliveryLog(
            config.state_db, self.events))
        self.services.log = self.log
        # The smarthost password may live in the desktop's keyring; SecretStore calls it off the loop with
        # a timeout, and falls back to the 0600 file the person agreed to.
        from engine.secrets import SecretStore

        secrets = SecretStore(self.data_dir)
        self.queue = _optional(lambda: importlib.import_module("engine.queue").Queue(
            self.services, secrets=lambda name: asyncio.to_thread(secrets.get, name)))
        self.services.outbound = self.queue
        # DKIM signing of submitted mail, SPF/DKIM/DMARC/ARC checks on the MX (engine/mailauth).
        self.mailauth = _optional(lambda: importlib.import_module("engine.mailauth").MailAuth(self.services))
        if self.mailauth is not None:
            self.services.inbound_filters.append(self.mailauth.inbound)
        self._opened = True

    def close(self) -> None:
        for part in (self.queue, self.log, self.store, self.directory):
            closer = getattr(part, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("closing %r failed", part)
        self._opened = False

    # --- running -------------------------------------------------------------------------------------

    async def start(self, *, strict: bool = False) -> list[ListenerState]:
        """Starts every configured listener; with strict, any failure stops everything and raises."""
        self._start_task = asyncio.current_task()
        try:
            return await self._start(strict)
        finally:
            self._start_task = None

    async def _start(self, strict: bool) -> list[ListenerState]:
        self.open()
        assert self.services is not None
        self.events.publish(EngineStateChanged("starting"))
        if any(self.config.listen.values()):
            from engine.tls import CertificateError, ensure_certificate, server_context

            try:
                cert, key = await asyncio.to_thread(ensure_certificate, self.config)
                self.services.tls = server_context(cert, key)
            except CertificateError as exc:
                raise EngineError(str(exc)) from None
        await self._start_agent()
        for service, address in self.config.listen.items():
            await self._start_listener(service, address)
        failed = [s for s in self._states.values() if s.state == "failed"]
        if strict and failed:
            await self.stop()
            raise EngineError("; ".join(s.reason for s in failed))
        if self.queue is not None and hasattr(self.queue, "start"):
            await self.queue.start()
        self._watch_task = asyncio.create_task(self._watch_directory(), name="directory-watch")
        self._running = True
        self.events.publish(EngineStateChanged("running"))
        return self.status()

    async def _start_agent(self) -> None:
        """The delivery agent process (engine/store/agent.py) when the settings want it and a listener
        can deliver; if it cannot start, local delivery simply stays in this process."""
        wanted = self.config.delivery.local_process
        if wanted is None:
            wanted = self._delivery_agent_default
        if not wanted or self._agent is not None or not any(self.config.listen.values()):
            return
        from engine.store.agent import DeliveryAgent

        agent = DeliveryAgent(self.config.mail_dir, self.config.hostname, self.events.publish)
        try:
            await agent.start()
        except (TimeoutError, OSError, StoreError) as exc:
            log.warning("delivery agent not started (%s); delivering from this process", exc)
            await agent.close()
            return
        self._agent = agent
        self.store.attach_agent(agent)

    async def _stop_agent(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            self.store.attach_agent(None)
            await agent.close()

    async def _start_listener(self, service: str, address: ListenAddress | None) -> None:
        assert self.services is not None
        shown = str(address) if address else ""
        if address is None:
            self._set_state(ListenerState(service, "", "off"))
            return
        module_name, class_name = LISTENER_CLASSES[service]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            self._set_state(ListenerState(service, shown, "unavailable", "not built into this version yet"))
            return
        listener: Listener = cls(self.services, service)
        try:
            await listener.start(address.host, address.port)
        except OSError as exc:
            self._set_state(ListenerState(service, shown, "failed", describe_bind_error(service, address, exc)))
            return
        host, port = listener.address
        self._listeners[service] = listener
        self._set_state(ListenerState(service, str(ListenAddress(host, port)), "running"))

    def _set_state(self, state: ListenerState) -> None:
        self._states[state.service] = state
        self.events.publish(ListenerChanged(state.service, state.state, state.reason))

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting, lets in-flight transactions finish within `grace`, then closes everything."""
        starting = self._start_task
        if starting is not None and starting is not asyncio.current_task():
            # A start still in flight (quit or shutdown right after start) would bind listeners after this
            # stop had run and leave their sockets open: let it finish, then stop what it started.
            await asyncio.wait({starting})
        self.events.publish(EngineStateChanged("stopping"))
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        listeners = list(self._listeners.items())
        self._listeners.clear()
        await asyncio.gather(*(listener.stop(grace) for _, listener in listeners), return_exceptions=True)
        for service, _ in listeners:
            old = self._states[service]
            self._set_state(ListenerState(service, old.address, "stopped"))
        if self.queue is not None and hasattr(self.queue, "stop"):
            await self.queue.stop()
        await self._stop_agent()
        self._running = False
        self.events.publish(EngineStateChanged("stopped"))

    @property
    def running(self) -> bool:
        return self._running

    def status(self) -> list[ListenerState]:
        order = list(LISTENER_CLASSES)
        return sorted(self._states.values(), key=lambda s: order.index(s.service))

    def address_of(self, service: str) -> tuple[str, int]:
        """Where a running service is bound (tests start on port 0 and ask)."""
        return self._listeners[service].address

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Runs a blocking store/directory call off the loop (what the GUI bridge and CLI-in-process use)."""
        return await asyncio.to_thread(func, *args)

    async def _watch_directory(self) -> None:
        """Tells listeners when the CLI changed domains/accounts from another process (within a second)."""
        from engine.events import DirectoryChanged

        last = self.directory.data_version()
        while True:
            await asyncio.sleep(0.5)
            try:
                now = self.directory.data_version()
            except Exception:
                log.exception("directory watch failed")
                continue
            if now != last:
                last = now
                self.events.publish(DirectoryChanged())

    # --- applying changed settings (added for the desktop Settings panel) ----------------------------

    async def apply_config(self, new: Config) -> list[ListenerState]:
        """Adopts validated settings, restarting only the listeners they affect.

        A listener restarts when its own address changed, or when something every listener uses changed
        (host name, TLS files, limits); the others keep their connections.  The queue and DNS read
        `services.config` afresh, so delivery settings need no restart.
        """
        if self._listen_override is not None:
            new = new.with_listen(self._listen_override)     # --listen beats the settings file
        old = self.config
        self.config = new
        self._config_override = new
        if self.services is None or not self._running:
            if self.services is not None:
                self.services.config = new
            return self.status()
        self.services.config = new
        shared = (old.hostname, old.tls, old.limits) != (new.hostname, new.tls, new.limits)
        if old.tls != new.tls and any(new.listen.values()):
            from engine.tls import CertificateError, ensure_certificate, server_context

            try:
                cert, key = await asyncio.to_thread(ensure_certificate, new)
                self.services.tls = server_context(cert, key)
            except CertificateError as exc:
                raise EngineError(str(exc)) from None
        for service in LISTENER_CLASSES:
            if not shared and old.listen.get(service) == new.listen.get(service):
                continue
            listener = self._listeners.pop(service, None)
            if listener is not None:
                await listener.stop()
            await self._start_listener(service, new.listen.get(service))
        return self.status()

    # --- foreground ----------------------------------------------------------------------------------

    def serve_forever(self, on_started: Callable[[list[ListenerState]], None] | None = None) -> None:
        """`postroom serve`: run until SIGTERM/SIGINT, then shut down cleanly."""
        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await self.start(strict=True)
            if on_started is not None:
                on_started(self.status())
            try:
                await stop.wait()
            finally:
                await self.stop(grace=SHUTDOWN_GRACE)
                self.close()

        log.info("engine loop: %s", loop_kind())
        run(main())


def _optional(factory: Callable[[], Any]) -> Any:
    """Builds a component whose package may not exist yet in this version."""
    try:
        return factory()
    except (ImportError, AttributeError) as exc:
        log.info("component not available: %s", exc)
        return None


class EngineThread:
    """Runs an Engine's loop in its own thread (DESIGN.md: one process, two loops)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="postroom-engine", daemon=True)

    def _run(self) -> None:
        # An explicit loop: qasync installs a global policy whose new loops are Qt loops.
        loop = new_event_loop()
        log.info("engine loop: %s", loop_name(loop))
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, func: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(func, *args)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Awaitable from another loop (the GUI's qasync loop) without blocking it."""
        return await asyncio.wrap_future(self.submit(coro))

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stops the engine (if running) and the loop, and joins the thread."""
        if self._loop is None or not self._thread.is_alive():
            return
        async def finish() -> None:
            # Also while a start is in flight or after one failed part-way: its listeners need closing.
            engine = self.engine
            if engine.running or engine._start_task is not None or engine._listeners:
                await engine.stop()
            self.engine.close()

        try:
            self.submit(finish()).result(timeout)
        except Exception:
            log.exception("engine shutdown failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

