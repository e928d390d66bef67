"""The queue's admin API as the CLI and the desktop use it, with and without a running scheduler."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.dsn import parse_dsn
from engine.events import DeliveryLogged, QueueChanged
from engine.queue import QueueAdmin, QueueError

from .conftest import SENDER, Harness

MESSAGE = (b"From: alice@home.test\r\nTo: x@grey.test\r\nSubject: Admin test\r\n"
           b"Message-ID: <adm1@home.test>\r\n\r\nbody\r\n")


async def test_list_and_get_show_each_message_and_recipient(harness: Harness) -> None:
    queue = harness.queue()
    queue_id = await queue.enqueue(f"<{SENDER}>", ["a@accept.test", "b@far.test"], MESSAGE,
                                   received_from="client [127.0.0.1]", authenticated_as=SENDER)
    [item] = queue.list()
    assert item.id == queue_id and queue.get(queue_id) == item
    assert (item.sender, item.size, item.subject, item.message_id) == (SENDER, len(MESSAGE), "Admin test",
                                                                       "<adm1@home.test>")
    assert [(r.address, r.status, r.attempts) for r in item.recipients] == [
        ("a@accept.test", "queued", 0), ("b@far.test", "queued", 0)]
    assert item.status == "queued" and item.next_attempt is not None
    assert abs(item.created - time.time()) < 60
    assert queue.get("0123456789ABCDEF") is None


async def test_open_message_and_headers(harness: Harness) -> None:
    queue = harness.queue()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    assert queue.open_message(queue_id) == MESSAGE
    assert queue.headers(queue_id) == MESSAGE.split(b"\r\n\r\n")[0].decode().replace("\r\n", "\n") + "\n"
    with pytest.raises(QueueError, match="no message"):
        queue.open_message("FFFFFFFFFFFF")


async def test_requests_for_unknown_ids_are_one_clear_error(harness: Harness) -> None:
    queue = harness.queue()
    for action in (queue.retry, queue.delete, queue.bounce, queue.headers):
        with pytest.raises(QueueError) as info:
            action("NOPE0000")
        assert str(info.value) == "no message 'NOPE0000' in the queue"


async def test_a_cli_retry_reaches_the_running_scheduler_within_a_second(harness: Harness, mx: Any,
                                                                          eventually: Any) -> None:
    harness.configure(retry_schedule=(3600.0,))
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["x@grey.test"], MESSAGE)
    await eventually(lambda: harness.log_events("x@grey.test") == ["deferred"], what="the greylisting")
    item = queue.get(queue_id)
    assert item is not None and item.status == "deferred" and "Greylisted" in item.last_error
    assert item.next_attempt is not None and item.next_attempt > time.time() + 3000

    cli = QueueAdmin(harness.config)            # another process's view: same files, no scheduler
    try:
        assert cli.retry(queue_id) == 1
    finally:
        cli.close()
    started = time.monotonic()
    await eventually(lambda: mx.recipients() == ["x@grey.test"], timeout=3, what="the retried delivery")
    assert time.monotonic() - started < 1.5


async def test_a_cli_delete_removes_the_message_and_says_who_did_it(harness: Harness, eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["s@servfail.test"], MESSAGE)
    cli = QueueAdmin(harness.config, log=_CliLog(harness))
    try:
        cli.delete(queue_id, by="root via the CLI")
    finally:
        cli.close()
    assert queue.get(queue_id) is None
    assert not (harness.config.spool_dir / queue_id).exists()
    [entry] = harness.log.query(status="deleted")
    assert (entry.queue_id, entry.recipient, entry.detail) == (queue_id, "s@servfail.test",
                                                               "deleted from the queue by root via the CLI")
    # the running engine hears of it: a queue change and the CLI's log row, on its own bus
    await eventually(lambda: any(isinstance(e, DeliveryLogged) and e.entry.event == "deleted"
                                 for e in harness.seen), what="the CLI's log row on the engine's bus")
    await eventually(lambda: any(isinstance(e, QueueChanged) and e.queue_id is None for e in harness.seen),
                     what="the engine to notice the CLI's change")


async def test_bounce_returns_the_message_to_the_sender_now(harness: Harness, eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["s@servfail.test"], MESSAGE)
    await eventually(lambda: harness.log_events("s@servfail.test") == ["deferred"], what="a first attempt")
    assert queue.bounce(queue_id, by="the desktop") == ["s@servfail.test"]
    [dsn] = await eventually(lambda: harness.inbox(), what="the DSN")
    report = parse_dsn(dsn)
    assert report is not None
    [failed] = report.failed
    assert failed.recipient == "s@servfail.test" and "the desktop" in failed.diagnostic
    await eventually(lambda: queue.get(queue_id) is None, what="the message to leave the queue")


async def test_admin_changes_are_published(harness: Harness) -> None:
    queue = harness.queue()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    queue.retry_all()
    queue.delete(queue_id)
    changes = [e.queue_id for e in harness.seen if isinstance(e, QueueChanged)]
    assert changes == [queue_id, None, queue_id]


class _CliLog:
    """The CLI's own DeliveryLog: same file, no event bus (the CLI has no engine)."""

    def __init__(self, harness: Harness) -> None:
        from engine.log import DeliveryLog

        self._log = DeliveryLog(harness.config.state_db)

    def record(self, event: str, **fields: Any) -> Any:
        try:
            return self._log.record(event, **fields)
        finally:
            self._log.close()
