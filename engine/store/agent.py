"""Local delivery in a child process (a "delivery agent", as Postfix hands mail to virtual(8)).

Why a process: a delivery is a dozen system calls (open, write, fsync, rename, the directory fsync, the
SQLite commit), each of which drops and retakes the GIL.  In the engine's process those threads queue for
the GIL behind the SMTP sessions' Python, so under load a 0.2 ms write waits milliseconds and the store,
not the disk, sets the pace.  In a process of its own the same MailStore code runs beside the sessions on
the other core.  Both processes open the same Maildirs and index.sqlite files, which are built for that
(file names carry the pid, SQLite serialises writers, a delivery finds rows a rescan added meanwhile).

The parent keeps its own MailStore for everything else (IMAP, POP3, APPEND, the viewer, deliver_sync);
`MailStore.deliver` sends deliveries here when an agent is attached on the calling loop, and the agent's MessageStored events
come back over the same socket so IDLE sessions and the GUI hear of new mail as before.

Wire format over a socketpair: frames of a 4-byte big-endian length and a pickle (both ends are this
module, started by us; the socket is never reachable by anyone else).  Parent -> agent:
("deliver", id, addresses, folder, quota, data) and ("forget", 0, address).  Agent -> parent:
("ok", id, {address: uid}), ("error", id, kind, text, errno), ("event", 0, event).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errno_codes
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import Event
from engine.interfaces import NoSuchFolder, QuotaExceeded, StoreError
from engine.loopcall import call_on_loop

if TYPE_CHECKING:
    from engine.store.mailstore import DeliveryRequest, MailStore

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
START_TIMEOUT = 30.0
RECEIVE_SIZE = 1024 * 1024

_ERRORS: dict[str, type[StoreError]] = {"quota": QuotaExceeded, "nofolder": NoSuchFolder, "store": StoreError}


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class _Frames:
    """Splits a byte stream into the frames above."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self._buffer += data
        out: list[tuple[Any, ...]] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            out.append(pickle.loads(self._buffer[_LENGTH.size:end]))
            del self._buffer[:end]
        return out


def _describe(exc: BaseException) -> tuple[str, str, int]:
    """(kind, text, errno) of a failed delivery, for the parent to raise the same class of error."""
    for kind, cls in _ERRORS.items():       # subclasses before StoreError, in the table's order
        if isinstance(exc, cls):
            return kind, str(exc), 0
    if isinstance(exc, OSError):
        return "os", exc.strerror or str(exc), exc.errno or errno_codes.EIO
    return "store", f"{type(exc).__name__}: {exc}", 0


def _rebuild(kind: str, text: str, code: int) -> Exception:
    if kind == "os":
        return OSError(code, text)
    return _ERRORS.get(kind, StoreError)(text)


# --- the parent's side -----------------------------------------------------------------------------------


class DeliveryAgent:
    """The parent's handle on one agent process, bound to the loop that started it.

    `deliver` has MailStore.deliver's contract: it returns only once the agent has every copy fsynced and
    indexed, and raises StoreError/QuotaExceeded/OSError as the store would.  If the agent dies, the
    deliveries waiting on it fail (the SMTP client hears 4xx and tries again; a file the agent had already
    placed is found by the next rescan, so nothing accepted is lost) and the next delivery starts a new one."""

    def __init__(self, root: Path, hostname: str, notify: Callable[[Event], None] | None) -> None:
        self.root = Path(root)
        self.hostname = hostname
        self._notify = notify
        self.loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[dict[str, int]]] = {}
        self._next_id = 0
        self._starting: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Starts the agent process (if it is not running) and waits until it answers."""
        self.loop = asyncio.get_running_loop()
        if self._transport is not None:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._spawn())
        await asyncio.shield(self._starting)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = [str(self.root), self.hostname, str(child_end.fileno())]
            env = dict(os.environ)
            if getattr(sys, "frozen", False):
                command = [sys.executable, AGENT_COMMAND, *argv]
            else:
                command = [sys.executable, "-c", _RUN_AGENT, *argv]
                # The child imports the very engine this process runs, wherever that came from.
                env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            process = await loop.run_in_executor(None, lambda: subprocess.Popen(
                command, pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, close_fds=True, env=env))
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        ready: asyncio.Future[None] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(lambda: _ParentProtocol(self, ready), sock=parent_end)
        except BaseException:
            parent_end.close()
            process.kill()
            await loop.run_in_executor(None, process.wait)
            raise
        self._process = process
        self._transport = transport
        try:
            await asyncio.wait_for(ready, START_TIMEOUT)
        except BaseException:
            self._lost(StoreError("The delivery agent did not start"))
            raise

    async def deliver(self, addresses: Sequence[str], data: bytes, folder: str = "INBOX",
                      quota: object = None) -> dict[str, int]:
        if self._closed:
            raise StoreError("The mail store is closed")
        if self._transport is None:      # not started yet, or the last agent died
            await self.start()
        assert self.loop is not None and self._transport is not None
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, int]] = self.loop.create_future()
        self._pending[request_id] = future
        self._transport.write(_frame(("deliver", request_id, list(addresses), folder, quota, data)))
        # Shielded: a cancelled SMTP session must not forget a delivery the agent goes on with.
        return await asyncio.shield(future)

    def forget(self, address: str) -> None:
        """The account was removed: the agent drops its open mailbox (a later one starts afresh).
        Callable from any thread (the CLI bridge removes accounts off the loop)."""
        call_on_loop(self.loop, self._send_forget, address)

    def _send_forget(self, address: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_frame(("forget", 0, address)))

    def _received(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            if self._notify is not None:
                self._notify(message[2])
            return
        future = self._pending.pop(message[1], None)
        if future is None or future.done():
            return
        if kind == "ok":
            future.set_result(message[2])
        else:
            future.set_exception(_rebuild(message[2], message[3], message[4]))

    def _lost(self, error: Exception) -> None:
        """The socket closed: every delivery still waiting fails; the next one starts a new agent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        process, self._process = self._process, None
        if process is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.run_in_executor(None, _reap, process, not self._closed)

    async def close(self) -> None:
        """Lets the agent finish what it has (it exits when its socket closes), then waits for it."""
        self._closed = True
        process = self._process
        if self._transport is not None:
            self._transport.close()
        if process is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _reap, process, False)
        self._process = None


def _reap(process: subprocess.Popen[bytes], crashed: bool) -> None:
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if crashed:
        log.error("delivery agent %d stopped (exit status %s); the next delivery starts a new one",
                  process.pid, process.returncode)


class _ParentProtocol(asyncio.Protocol):
    def __init__(self, agent: DeliveryAgent, ready: asyncio.Future[None]) -> None:
        self._agent = agent
        self._ready = ready
        self._frames = _Frames()

    def data_received(self, data: bytes) -> None:
        for message in self._frames.feed(data):
            if message[0] == "ready":
                if not self._ready.done():
                    self._ready.set_result(None)
                continue
            self._agent._received(message)

    def connection_lost(self, exc: Exception | None) -> None:
        error = StoreError("The delivery agent stopped; try again")
        if not self._ready.done():
            self._ready.set_exception(error)
        self._agent._lost(error)


# --- the agent's side ------------------------------------------------------------------------------------

AGENT_COMMAND = "__delivery-agent"
# Not `-m engine.store.agent`: the package imports this module first, and runpy warns about that.
_RUN_AGENT = "import sys; from engine.store.agent import agent_main; sys.exit(agent_main(sys.argv[1:]))"


def _serve(root: Path, hostname: str, fd: int) -> None:
    """The agent's whole life: one thread, blocking reads; every request that has arrived by the time
    the previous batch is done joins the next batch (MailStore.deliver_batch), so under load a batch
    carries many deliveries for the price of one flush per account, and no thread waits for a GIL."""
    from engine.store.mailstore import MailStore

    sock = socket.socket(fileno=fd)
    events: list[Event] = []
    store = MailStore(root, notify=events.append, hostname=hostname, max_workers=2)
    frames = _Frames()
    out = bytearray(_frame(("ready", 0)))
    try:
        while True:
            if out:
                sock.sendall(out)
                out.clear()
            data = sock.recv(RECEIVE_SIZE)
            if not data:
                return                      # the parent closed its end (engine stopping) or died
            messages = frames.feed(data)
            ended = False
            while not ended:                # everything else already waiting joins this batch
                try:
                    more = sock.recv(RECEIVE_SIZE, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                ended = not more
                messages += frames.feed(more)
            batch: list[tuple[int, DeliveryRequest]] = []
            for message in messages:
                if message[0] == "deliver":
                    _, request_id, addresses, folder, quota, body = message
                    batch.append((request_id, (addresses, body, folder, quota)))
                elif message[0] == "forget":
                    # In order: deliveries sent before the account was removed go to the old mailbox.
                    _run_batch(store, batch, out, events)
                    batch = []
                    store.remove_account(message[2])
            _run_batch(store, batch, out, events)
            if ended:
                with contextlib.suppress(OSError):
                    sock.sendall(out)
                return
    finally:
        store.close()
        sock.close()


def _run_batch(store: MailStore, batch: list[tuple[int, DeliveryRequest]], out: bytearray,
               events: list[Event]) -> None:
    outcomes = store.deliver_batch([request for _, request in batch]) if batch else []
    # Events first: a client told "stored" can count on IDLE sessions having heard of it.
    while events:
        out += _frame(("event", 0, events.pop(0)))
    for (request_id, _), outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, Exception):
            out += _frame(("error", request_id, *_describe(outcome)))
        else:
            out += _frame(("ok", request_id, outcome))


def agent_main(argv: Sequence[str]) -> int:
    """The agent process: `ROOT HOSTNAME FD`, started by DeliveryAgent (or the frozen program's hidden
    command), never by hand."""
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: engine.store.agent ROOT HOSTNAME FD (started by the engine, not by hand)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="postroom delivery agent: %(message)s")
    # Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group; the agent
    # outlives neither its parent nor its work: it exits once the parent closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _serve(Path(argv[0]), argv[1], int(argv[2]))
    return 0

