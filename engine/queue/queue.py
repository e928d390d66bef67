"""`Queue`: the outbound queue as the engine holds it — the Outbound that SMTP enqueues into, the admin API
the GUI calls, and the scheduler the runtime starts and stops."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import functools
import ssl
from collections.abc import Sequence
from typing import Any

from engine.dns import Resolver
from engine.queue.admin import QueueAdmin
from engine.queue.delivery import Deliverer, Secrets
from engine.queue.model import QueueItem
from engine.queue.scheduler import Scheduler
from engine.services import Services
from engine.smtp.client import Timeouts


class Queue:
    """Everything outbound.  Admin methods are synchronous (SQLite and files only) and safe to call from
    the engine loop; `enqueue`, `start` and `stop` are coroutines on the engine loop."""

    def __init__(self, services: Services, *, secrets: Secrets | None = None, resolver: Resolver | None = None,
                 timeouts: Timeouts | None = None, verify_context: ssl.SSLContext | None = None,
                 poll_interval: float = 0.5) -> None:
        self.services = services
        self.admin = QueueAdmin(services.config, log=services.log, events=services.events)
        self.deliverer = Deliverer(lambda: services.config, directory=services.directory, store=services.store,
                                   resolver=resolver, timeouts=timeouts, verify_context=verify_context,
                                   secrets=secrets)
        # Threads that mostly wait (fsync, group commit): enough of them that SMTP sessions and delivery
        # attempts arriving together share commits instead of queueing for a thread.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="postroom-queue")
        self.scheduler = Scheduler(self.admin, self.deliverer, events=services.events, log_sink=services.log,
                                   poll_interval=poll_interval, executor=self._executor)
        self._started = False

    # --- Outbound (what SMTP calls) ---------------------------------------------------------------------

    async def enqueue(self, sender: str, recipients: list[str], data: bytes, *, received_from: str = "",
                      authenticated_as: str = "") -> str:
        """Spools and commits before returning the queue id; OSError when the disk cannot take it."""
        loop = asyncio.get_running_loop()
        queue_id = await loop.run_in_executor(self._executor, functools.partial(
            self.admin.enqueue, sender, recipients, data, received_from=received_from,
            authenticated_as=authenticated_as))
        self.scheduler.wake()
        return queue_id

    # --- scheduler --------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.admin.on_change = self.scheduler.wake
        await self.scheduler.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self.admin.on_change = None
        await self.scheduler.stop()
        self._started = False

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.admin.close()

    # --- admin ------------------------------------------------------------------------------------------

    def list(self) -> builtins.list[QueueItem]:
        return self.admin.list()

    def count(self) -> int:
        return self.admin.count()

    def get(self, queue_id: str) -> QueueItem | None:
        return self.admin.get(queue_id)

    def retry(self, queue_id: str) -> int:
        return self.admin.retry(queue_id)

    def retry_all(self) -> int:
        return self.admin.retry_all()

    def delete(self, queue_id: str, by: str = "admin") -> None:
        self.admin.delete(queue_id, by)

    def bounce(self, queue_id: str, by: str = "admin") -> Sequence[str]:
        return self.admin.bounce(queue_id, by)

    def open_message(self, queue_id: str) -> bytes:
        return self.admin.open_message(queue_id)

    def headers(self, queue_id: str) -> str:
        return self.admin.headers(queue_id)

    def __repr__(self) -> str:
        return f"<Queue {self.services.config.spool_dir} started={self._started}>"


def _implements_outbound(queue: Queue) -> Any:
    from engine.services import Outbound

    checked: Outbound = queue
    return checked
