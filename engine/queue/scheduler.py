"""The delivery scheduler: finds due recipients, runs bounded workers per destination, records outcomes,
returns failures to senders in DSNs, and removes finished messages.

Crash safety (mox's rule): a recipient is marked `sending`, with its attempt counted and its next-attempt
time set, in a committed transaction before we dial; its outcome is committed as soon as the remote has
answered.  After a crash a `sending` recipient's fate is unknown, so it waits for that retry time like
any deferral, and one the remote already accepted (committed `delivered`) is never sent again.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from engine.config import Config, format_duration
from engine.dsn import RecipientStatus, compose_dsn
from engine.events import EventBus, QueueChanged
from engine.loopcall import call_on_loop
from engine.queue.admin import QueueAdmin
from engine.queue.db import MessageRow, RecipientRow
from engine.queue.delivery import Deliverer, Job, Outcome
from engine.queue.model import (
    DELIVERED,
    FAILED,
    LOCAL_ROUTE,
    MAX_RECEIVED,
    QUEUED,
    domain_of,
    retry_delay,
)
from engine.smtp.client import SMTPConnection
from engine.smtp.message import count_received

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_SLEEP = 30.0            # re-check at least this often (delay warnings, missed notifications)
DSN_RETRY = 60.0            # a DSN that could not be delivered is tried again after this long
SPOOL_SWEEP_EVERY = 600.0   # look for orphaned spool files this often
ORPHAN_AGE = 600.0          # ... and remove those older than this
JOBS_PER_WORKER = 100       # then give the concurrency slot to another destination
BACKLOG = 200               # dispatched jobs waiting for a worker before we stop looking for more
HOUSEKEEPING_EVERY = 5.0    # the whole-queue scans (delay warnings, leftovers) at most this often


class Scheduler:
    def __init__(self, admin: QueueAdmin, deliverer: Deliverer, *, events: EventBus | None = None,
                 log_sink: Any = None, poll_interval: float = 0.5,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.admin = admin
        self.db = admin.db
        self.spool = admin.spool
        self.deliverer = deliverer
        self.events = events
        self.log_sink = log_sink
        self.poll_interval = poll_interval
        self.executor = executor
        self._slots = asyncio.Semaphore(self.config.delivery.concurrency)
        self._slots_for = self.config.delivery.concurrency
        self._wakeup = asyncio.Event()
        self._pending: dict[str, collections.deque[Job]] = collections.defaultdict(collections.deque)
        self._workers: collections.Counter[str] = collections.Counter()
        self._inflight: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: list[asyncio.Task[Any]] = []
        self._dsn_retry_at: dict[str, float] = {}
        self._bouncing: set[str] = set()
        self._next_spool_sweep = 0.0
        self._next_housekeeping = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def config(self) -> Config:
        """The settings now (the deliverer reads them afresh, so a changed setting applies at once)."""
        return self.deliverer.config

    async def _io(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking disk and database work, on the queue's own threads: most of them only wait for an
        fsync or for the group commit, so many of them let concurrent attempts share one commit."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        recovered = await self._io(self.db.recover)
        if recovered:
            log.warning("%d recipient(s) were mid-delivery when the queue last stopped; they will be retried "
                        "at their next attempt time", recovered)
        self._main = [asyncio.create_task(self._run(), name="queue-scheduler"),
                      asyncio.create_task(self._watch(), name="queue-watch")]

    async def stop(self) -> None:
        """Stops at once: attempts in flight are abandoned and retried after a restart (see above)."""
        tasks = [*self._main, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._main.clear()
        self._tasks.clear()
        self._pending.clear()
        self._inflight.clear()
        self._workers.clear()

    def wake(self) -> None:
        """Look at the queue again now (safe to call from any thread)."""
        call_on_loop(self._loop, self._wakeup.set)

    # --- main loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            now = time.time()
            try:
                if self._backlog() < BACKLOG:
                    self._dispatch(self.db.due(now))
                await self._sweep(now)
                next_due = self.db.next_due(now)
            except Exception:
                log.exception("queue scheduler pass failed")
                next_due = now + 1.0
            delay = MAX_SLEEP if next_due is None else min(MAX_SLEEP, max(0.0, next_due - time.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    async def _watch(self) -> None:
        """Notices changes other processes (the CLI) commit to state.sqlite within `poll_interval`."""
        last = self.db.data_version()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                version = self.db.data_version()
            except Exception:
                log.exception("queue watch failed")
                continue
            if version != last:
                last = version
                self._wakeup.set()
                if self.events is not None:
                    self.events.publish(QueueChanged(None))
                catch_up = getattr(self.log_sink, "catch_up", None)
                if callable(catch_up):
                    catch_up()

    def _dispatch(self, rows: list[RecipientRow]) -> None:
        """Groups due recipients by message and destination (one transaction per destination host)."""
        groups: dict[tuple[str, str], list[str]] = {}
        routes: dict[str, str] = {}
        for row in rows:
            route = routes.get(row.domain)
            if route is None:
                route = routes[row.domain] = self.deliverer.route_of(row.domain)
            key = (row.queue_id, route)
            if key in self._inflight:
                continue
            groups.setdefault(key, []).append(row.recipient)
        for (queue_id, route), recipients in groups.items():
            self._inflight.add((queue_id, route))
            self._pending[route].append(Job(queue_id, route, tuple(recipients)))
            self._spawn_workers(route)

    def _spawn_workers(self, route: str) -> None:
        limit = self.config.delivery.concurrency_per_domain
        while self._pending[route] and self._workers[route] < min(limit, len(self._pending[route])):
            self._workers[route] += 1
            task = asyncio.create_task(self._worker(route), name=f"queue-worker-{route}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _worker(self, route: str) -> None:
        """Delivers a destination's pending jobs one after another over one reused connection."""
        conn: SMTPConnection | None = None
        done = 0
        if self._slots_for != self.config.delivery.concurrency:
            # A changed total: new workers share a new budget; running ones finish on the old one.
            self._slots_for = self.config.delivery.concurrency
            self._slots = asyncio.Semaphore(self._slots_for)
        try:
            async with self._slots:
                while self._pending[route] and done < JOBS_PER_WORKER:
                    job = self._pending[route].popleft()
                    done += 1
                    try:
                        conn = await self._attempt(job, conn)
                    except Exception:
                        log.exception("delivery attempt for %s failed unexpectedly", job.queue_id)
                        if conn is not None:
                            conn.close()
                        conn = None
                    finally:
                        self._inflight.discard((job.queue_id, job.route))
                        self._wakeup.set()
                if conn is not None:
                    await conn.quit()
                    conn = None
        finally:
            if conn is not None:
                conn.close()
            self._workers[route] -= 1
            if not self._workers[route]:
                del self._workers[route]
            if self._pending.get(route):
                self._spawn_workers(route)
            elif route in self._pending and not self._pending[route]:
                del self._pending[route]

    # --- one attempt ---------------------------------------------------------------------------------

    async def _attempt(self, job: Job, conn: SMTPConnection | None) -> SMTPConnection | None:
        message = self.db.message(job.queue_id)
        if message is None:                      # deleted by the admin meanwhile
            return conn
        rows = {r.recipient: r for r in self.db.recipients(job.queue_id)}
        now = time.time()
        attempt = 1 + max((rows[r].attempts for r in job.recipients if r in rows), default=0)
        next_attempt = now + retry_delay(self.config.delivery.retry_schedule, attempt)
        # The crash-safety step: committed before we dial anyone.
        marked, data = await self._io(self._begin, job, now, next_attempt)
        if not marked:
            return conn
        job = Job(job.queue_id, job.route, tuple(marked))
        self._publish(job.queue_id)
        if data is None:
            outcomes = [Outcome(r, FAILED, "the queued message file is missing", "5.3.0") for r in marked]
        else:
            hops = count_received(data)
            if hops > MAX_RECEIVED:
                # RFC 5321 §6.3: too many hops means a loop; bounce rather than pass it on.
                outcomes = [Outcome(r, FAILED, f"mail forwarding loop: {hops} Received: headers", "5.4.6")
                            for r in marked]
            elif job.route == LOCAL_ROUTE:
                outcomes = await self.deliverer.local(job, data)
            else:
                outcomes, conn = await self.deliverer.remote(job, message.sender, data, conn)
        try:
            outcomes = [self._expire(o, message, now) for o in outcomes]
            # Off the loop: commits wait for the disk and for other components' writes.
            await self._io(self._end, job, message, outcomes, attempt)
            self._publish(job.queue_id)
        except BaseException:
            if conn is not None:        # the caller never gets it back: close it here
                conn.close()
            raise
        return conn

    def _begin(self, job: Job, now: float, next_attempt: float) -> tuple[list[str], bytes | None]:
        """(worker thread) Marks the attempt started, then reads the message; None if its file is gone."""
        marked = self.db.start_attempt(job.queue_id, job.recipients, now, next_attempt)
        if not marked:
            return marked, None
        try:
            return marked, self.spool.read(job.queue_id)
        except FileNotFoundError:
            return marked, None

    def _end(self, job: Job, message: MessageRow, outcomes: list[Outcome], attempt: int) -> None:
        """(worker thread) Commits the outcomes with their log rows, and drops the spool file when done."""
        rows_of = getattr(self.log_sink, "rows", None)
        insert = getattr(self.log_sink, "insert_rows", None)
        if callable(rows_of) and callable(insert):
            rows = []
            for o in outcomes:
                event, fields = self._log_fields(message, o, attempt)
                rows += rows_of(event, **fields)
            removed = self.db.finish_attempt(job.queue_id, [o.result() for o in outcomes],
                                             also=lambda db: insert(db, rows))
            self.log_sink.catch_up()                    # publishes the new rows as DeliveryLogged
        else:
            removed = self.db.finish_attempt(job.queue_id, [o.result() for o in outcomes])
            self._record_outcomes(message, outcomes, attempt)
        if removed:
            self.spool.remove(job.queue_id)

    def _expire(self, outcome: Outcome, message: MessageRow, now: float) -> Outcome:
        """A deferral past `max_queue_lifetime` becomes a failure (the last reason is kept for the DSN)."""
        lifetime = self.config.delivery.max_queue_lifetime
        if outcome.status != QUEUED or now - message.created < lifetime:
            return outcome
        text = f"gave up after {format_duration(lifetime)} in the queue; last error: {outcome.text}"
        return Outcome(outcome.recipient, FAILED, text, outcome.code, outcome.remote_host,
                       outcome.from_remote, outcome.tls)

    def _record_outcomes(self, message: MessageRow, outcomes: list[Outcome], attempt: int) -> None:
        for outcome in outcomes:
            self._record_outcome(message, outcome, attempt)

    def _record_outcome(self, message: MessageRow, o: Outcome, attempt: int) -> None:
        event, fields = self._log_fields(message, o, attempt)
        self._log(event, **fields)

    @staticmethod
    def _log_fields(message: MessageRow, o: Outcome, attempt: int) -> tuple[str, dict[str, Any]]:
        """The delivery-log event and fields for one recipient's outcome."""
        fields: dict[str, Any] = dict(queue_id=message.id, message_id=message.message_id, sender=message.sender,
                                      recipient=o.recipient, size=message.size, attempt=attempt,
                                      remote_host=o.remote_host)
        if o.status == DELIVERED and o.local:
            return "delivered", {**fields, "detail": o.text}
        if o.status == DELIVERED:
            return "relayed", {**fields, "remote_reply": o.text, "tls": o.tls}
        fields.update(tls=o.tls, detail=o.text, remote_reply=o.text if o.from_remote else "")
        if o.status == QUEUED:
            return "deferred", fields
        event = "expired" if o.text.startswith("gave up after") else "bounced"
        return event, {**fields, "status": o.code}

    def _log(self, event: str, **fields: Any) -> None:
        if self.log_sink is None:
            return
        try:
            self.log_sink.record(event, **fields)
        except Exception:
            log.exception("could not record %s", event)

    def _publish(self, queue_id: str | None) -> None:
        if self.events is not None:
            self.events.publish(QueueChanged(queue_id))

    async def _remove_if_done(self, queue_id: str) -> None:
        if await self._io(self.db.delete_if_done, queue_id):
            await self._io(self.spool.remove, queue_id)
            self._dsn_retry_at.pop(queue_id, None)

    # --- bounces, warnings, housekeeping ----------------------------------------------------------------

    async def _sweep(self, now: float) -> None:
        for queue_id in self.db.awaiting_dsn():
            if self._dsn_retry_at.get(queue_id, 0.0) <= now and not self._busy(queue_id):
                await self._bounce(queue_id)
                await self._remove_if_done(queue_id)
        if now < self._next_housekeeping:
            return
        d = self.config.delivery
        interval = HOUSEKEEPING_EVERY
        if d.delay_warning > 0:
            interval = min(interval, max(0.1, d.delay_warning / 4))
        self._next_housekeeping = now + interval
        if 0 < d.delay_warning < d.max_queue_lifetime:
            for queue_id in self.db.needing_warning(now - d.delay_warning):
                await self._warn(queue_id)
        for queue_id in self.db.finished():
            if not self._busy(queue_id):
                await self._remove_if_done(queue_id)
        if now >= self._next_spool_sweep:
            self._next_spool_sweep = now + SPOOL_SWEEP_EVERY
            known = self.db.ids()
            removed = await self._io(self.spool.sweep, known, ORPHAN_AGE)
            if removed:
                log.warning("removed %d spool file(s) without a queue entry (left by a crash before the "
                            "client was told 250)", len(removed))

    def _backlog(self) -> int:
        return sum(len(jobs) for jobs in self._pending.values())

    def _busy(self, queue_id: str) -> bool:
        return any(qid == queue_id for qid, _ in self._inflight)

    async def _bounce(self, queue_id: str) -> None:
        """One DSN for the recipients that failed and were not yet reported (RFC 3464)."""
        if queue_id in self._bouncing:        # a worker and the sweep must not both report the same failure
            return
        self._bouncing.add(queue_id)
        try:
            await self._bounce_now(queue_id)
        finally:
            self._bouncing.discard(queue_id)

    async def _bounce_now(self, queue_id: str) -> None:
        message = self.db.message(queue_id)
        if message is None:
            return
        failed = [r for r in self.db.recipients(queue_id) if r.status == FAILED and not r.notified]
        if not failed:
            return
        names = [r.recipient for r in failed]
        if message.is_dsn or not message.sender:
            # RFC 3464 §4 / RFC 5321 §6.1: never bounce a bounce (null reverse-path).
            log.info("%s: not returning a failed message with the null sender", queue_id)
            await self._io(self.db.mark_notified, queue_id, names)
            return
        reports = [RecipientStatus(
            recipient=r.recipient, action="failed", status=r.last_status or "5.0.0",
            diagnostic=r.last_error, remote_mta=_host_name(r.remote_host) if r.from_remote else "",
            last_attempt=r.last_attempt, from_remote=r.from_remote) for r in failed]
        if await self._send_dsn(message, reports):
            await self._io(self.db.mark_notified, queue_id, names)

    async def _warn(self, queue_id: str) -> None:
        """RFC 3464 `delayed`: tell the sender once that the message is still being retried."""
        message = self.db.message(queue_id)
        if message is None:
            return
        waiting = [r for r in self.db.recipients(queue_id) if r.status == QUEUED and r.attempts]
        until = message.created + self.config.delivery.max_queue_lifetime
        reports = [RecipientStatus(
            recipient=r.recipient, action="delayed", status=r.last_status or "4.0.0", diagnostic=r.last_error,
            remote_mta=_host_name(r.remote_host) if r.from_remote else "", last_attempt=r.last_attempt,
            will_retry_until=until, from_remote=r.from_remote) for r in waiting]
        if reports and await self._send_dsn(message, reports):
            await self._io(self.db.mark_warned, queue_id)
            for r in waiting:
                self._log("delayed", queue_id=queue_id, message_id=message.message_id, sender=message.sender,
                          recipient=r.recipient, size=message.size, detail="delay warning sent to the sender")

    async def _send_dsn(self, message: MessageRow, reports: list[RecipientStatus]) -> bool:
        """Into the sender's mailbox when local, into the queue (from <>) when remote; False to retry."""
        try:
            original = await self._io(self.spool.read_headers, message.id)
        except FileNotFoundError:
            original = b""
        dsn = compose_dsn(reporting_mta=self.config.hostname, sender=message.sender, original=original,
                          recipients=reports, queue_id=message.id, arrival=message.created)
        try:
            if self.deliverer.route_of(domain_of(message.sender)) == LOCAL_ROUTE:
                directory = self.deliverer.directory
                accounts = await self._io(directory.resolve, message.sender)
                if not accounts:
                    log.warning("%s: the sender %s has no mailbox here; its DSN is dropped", message.id,
                                message.sender)
                    return True
                await self.deliverer.store.deliver(accounts, dsn)
                self._log("delivered", sender="", recipient=message.sender, size=len(dsn),
                          remote_host=", ".join(accounts),
                          detail=f"delivery status notification for queue id {message.id}")
            else:
                await self._io(self.admin.enqueue, "", [message.sender], dsn,
                                        received_from="delivery status notification", is_dsn=True)
        except Exception as exc:
            log.warning("%s: could not deliver the DSN to %s (will retry): %s", message.id, message.sender, exc)
            self._dsn_retry_at[message.id] = time.time() + DSN_RETRY
            return False
        self._dsn_retry_at.pop(message.id, None)
        return True


def _host_name(remote: str) -> str:
    """"mx.example.com[192.0.2.1]:25" -> "mx.example.com"."""
    return remote.split("[", 1)[0] if remote else ""
