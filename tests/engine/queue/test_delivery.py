"""Outbound delivery end to end: enqueue, DNS routing, remote SMTP, retries, bounces into the sender's
mailbox, and what the queue and the delivery log say along the way."""

from __future__ import annotations

from typing import Any

from engine.dsn import parse_dsn

from .conftest import SENDER, Harness, lb

MESSAGE = (b"From: Alice <alice@home.test>\r\nTo: many\r\nSubject: Quarterly report\r\n"
           b"Message-ID: <q1@home.test>\r\n\r\nHello everyone.\r\n")


def _failed_in_dsns(harness: Harness) -> dict[str, str]:
    """Failed recipient -> diagnostic, over every DSN in the sender's inbox."""
    out: dict[str, str] = {}
    for raw in harness.inbox():
        report = parse_dsn(raw)
        assert report is not None, raw[:200]
        assert report.original_subject == "Quarterly report"
        for r in report.failed:
            out[r.recipient] = r.diagnostic
    return out


async def test_the_acceptance_scenario(harness: Harness, mx: Any, eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    recipients = ["a@accept.test", "g@grey.test", "r@refused.test", "b@bare.test", "n@null.test",
                  "x@nxdomain.test", "s@servfail.test"]
    queue_id = await queue.enqueue(SENDER, recipients, MESSAGE, received_from="client [127.0.0.1]")

    # accepted, delivered after the greylisting retry, and delivered via the A record (no MX)
    await eventually(lambda: {"a@accept.test", "g@grey.test", "b@bare.test"} <= set(mx.recipients()),
                     timeout=6, what="the three deliverable recipients")
    # refused (550), null MX and NXDOMAIN: bounced into alice's mailbox
    failed = await eventually(lambda: (f := _failed_in_dsns(harness)) and len(f) == 3 and f,
                              what="DSNs for three failed recipients")
    assert set(failed) == {"r@refused.test", "n@null.test", "x@nxdomain.test"}
    assert "550 5.1.1" in failed["r@refused.test"]
    assert "null MX" in failed["n@null.test"]
    assert "does not exist" in failed["x@nxdomain.test"]

    # SERVFAIL: still queued, tried, with the reason in words; never bounced.  (The MX's 250 reaches the
    # queue's bookkeeping a moment after the MX has the recipient: wait for the rows, not for the MX.)
    def servfail_alone() -> Any:
        item = queue.get(queue_id)
        return item is not None and len(item.pending) == 1 and item.pending[0].attempts >= 1 and item
    item = await eventually(servfail_alone, what="only the SERVFAIL recipient left, tried once")
    [waiting] = item.pending
    assert waiting.address == "s@servfail.test"
    assert waiting.attempts >= 1 and "DNS" in waiting.last_error
    await eventually(lambda: harness.log_events("s@servfail.test").count("deferred") >= 2,
                     what="a second deferral for the SERVFAIL domain")
    assert "s@servfail.test" not in _failed_in_dsns(harness)

    # nobody delivered twice; the refused recipient was tried once and never again
    assert sorted(mx.recipients()) == ["a@accept.test", "b@bare.test", "g@grey.test"]
    assert mx.rcpt_attempts.count("r@refused.test") == 1
    assert mx.rcpt_attempts.count("g@grey.test") == 2

    # the log tells the story per recipient
    assert harness.log_events("a@accept.test") == ["relayed"]
    assert harness.log_events("g@grey.test") == ["deferred", "relayed"]
    assert harness.log_events("r@refused.test") == ["bounced"]
    assert harness.log_events("s@servfail.test")[:2] == ["deferred", "deferred"]
    relayed = harness.log.query(address="a@accept.test", status="relayed")[0]
    assert relayed.remote_host == f"mx.accept.test[127.0.0.1]:{harness.config.delivery.remote_port}"
    assert relayed.remote_reply.startswith("250")
    assert relayed.queue_id == queue_id and relayed.message_id == "<q1@home.test>"

    # the admin sees the SERVFAIL recipient; bouncing it ends the story with one more DSN
    queue.bounce(queue_id, by="test")
    await eventually(lambda: queue.get(queue_id) is None, what="the message to leave the queue")
    assert "s@servfail.test" in _failed_in_dsns(harness)
    await eventually(lambda: not list(harness.config.spool_dir.iterdir()), what="the spool file to go")


async def test_recipients_at_one_destination_share_one_transaction(harness: Harness, mx: Any,
                                                                   eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    await queue.enqueue(SENDER, ["one@accept.test", "two@accept.test", "three@far.test"], MESSAGE)
    await eventually(lambda: len(mx.recipients()) == 3, what="three deliveries")
    by_rcpts = sorted(tuple(sorted(m.rcpt_tos)) for m in mx.received)
    assert by_rcpts == [("one@accept.test", "two@accept.test"), ("three@far.test",)]


async def test_local_recipients_never_leave_the_machine(harness: Harness, mx: Any, eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    await queue.enqueue("someone@far.test", ["bob@home.test", "a@accept.test"], MESSAGE)
    await eventually(lambda: harness.inbox("bob@home.test") and mx.recipients(), what="both deliveries")
    assert mx.recipients() == ["a@accept.test"]
    assert harness.inbox("bob@home.test")[0].endswith(b"Hello everyone.\r\n")
    await eventually(lambda: harness.log_events("bob@home.test") == ["delivered"], what="the log entry")


async def test_a_connection_dropped_mid_data_keeps_the_recipient_queued(harness: Harness, mx: Any,
                                                                        eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["d@drop.test"], MESSAGE)
    await eventually(lambda: harness.log_events("d@drop.test").count("deferred") >= 2,
                     what="two deferrals")
    item = queue.get(queue_id)
    assert item is not None and item.status in ("deferred", "sending")
    assert "not confirmed" in harness.log.query(address="d@drop.test", status="deferred")[0].detail
    assert harness.inbox() == []


async def test_an_mx_that_greets_with_our_name_bounces_as_a_loop(harness: Harness, mx: Any,
                                                                 eventually: Any) -> None:
    ourselves = await lb.MXServer(host="::1", port=harness.config.delivery.remote_port,
                                  hostname=harness.config.hostname).start()
    try:
        queue = harness.queue()
        await queue.start()
        await queue.enqueue(SENDER, ["l@loop.test"], MESSAGE)
        failed = await eventually(lambda: _failed_in_dsns(harness), what="a DSN")
    finally:
        await ourselves.stop()
    assert "loops back to myself" in failed["l@loop.test"]
    assert ourselves.received == []


async def test_the_next_mx_is_tried_when_the_first_greets_with_4xx(harness: Harness, mx: Any,
                                                                  eventually: Any) -> None:
    busy = await lb.RawServer(host="::1", port=harness.config.delivery.remote_port,
                              greeting=b"421 4.3.2 too busy\r\n").start()
    try:
        queue = harness.queue()
        await queue.start()
        await queue.enqueue(SENDER, ["t@two.test"], MESSAGE)
        await eventually(lambda: mx.recipients() == ["t@two.test"], what="delivery via the second MX")
    finally:
        await busy.stop()
    assert busy.connections == 1
    relayed = await eventually(lambda: harness.log.query(address="t@two.test"), what="the log entry")
    assert relayed[0].remote_host.startswith("second.two.test[127.0.0.1]")


async def test_the_next_mx_is_tried_when_the_first_never_greets(harness: Harness, mx: Any,
                                                               eventually: Any) -> None:
    silent = await lb.RawServer(host="::1", port=harness.config.delivery.remote_port).start()
    try:
        queue = harness.queue()
        await queue.start()
        await queue.enqueue(SENDER, ["t@two.test"], MESSAGE)
        await eventually(lambda: mx.recipients() == ["t@two.test"], what="delivery after a greeting timeout")
    finally:
        await silent.stop()


async def test_messages_past_their_lifetime_are_returned(harness: Harness, mx: Any, eventually: Any) -> None:
    harness.configure(max_queue_lifetime=0.8, delay_warning=0.0)
    queue = harness.queue()
    await queue.start()
    await queue.enqueue(SENDER, ["s@servfail.test"], MESSAGE)
    failed = await eventually(lambda: _failed_in_dsns(harness), what="the expiry DSN")
    assert "gave up after" in failed["s@servfail.test"]
    assert harness.log_events("s@servfail.test")[-1] == "expired"


async def test_a_delay_warning_goes_out_once(harness: Harness, mx: Any, eventually: Any) -> None:
    harness.configure(delay_warning=0.3)
    queue = harness.queue()
    await queue.start()
    await queue.enqueue(SENDER, ["s@servfail.test"], MESSAGE)
    await eventually(lambda: harness.inbox(), what="a delay warning")
    await eventually(lambda: harness.log_events("s@servfail.test").count("deferred") >= 3, what="more retries")
    [warning] = harness.inbox()
    report = parse_dsn(warning)
    assert report is not None and [r.recipient for r in report.delayed] == ["s@servfail.test"]


async def test_bounces_to_remote_senders_are_queued_from_the_null_sender(harness: Harness, mx: Any,
                                                                         eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    await queue.enqueue("writer@far.test", ["r@refused.test"], MESSAGE)
    await eventually(lambda: "writer@far.test" in mx.recipients(), what="the DSN at the sender's MX")
    [dsn] = [m for m in mx.received if m.rcpt_tos == ("writer@far.test",)]
    assert dsn.mail_from in ("", "<>")          # aiosmtpd keeps the brackets of the null path
    report = parse_dsn(dsn.content)
    assert report is not None and [r.recipient for r in report.failed] == ["r@refused.test"]


async def test_a_bounce_is_never_bounced(harness: Harness, mx: Any, eventually: Any) -> None:
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue("", ["r@refused.test"], MESSAGE)
    await eventually(lambda: queue.get(queue_id) is None, what="the failed bounce to be dropped")
    assert harness.log_events("r@refused.test") == ["bounced"]
    assert [m for m in mx.received] == []
    assert harness.inbox() == []


async def test_too_many_received_headers_is_a_loop(harness: Harness, mx: Any, eventually: Any) -> None:
    looping = b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n" * 51 + MESSAGE
    queue = harness.queue()
    await queue.start()
    await queue.enqueue(SENDER, ["a@accept.test"], looping)
    failed = await eventually(lambda: _failed_in_dsns(harness), what="a loop bounce")
    assert "loop" in failed["a@accept.test"]
    assert mx.received == []


async def test_one_connection_serves_many_messages_to_a_destination(harness: Harness, mx: Any,
                                                                    eventually: Any) -> None:
    harness.configure(concurrency_per_domain=1)
    queue = harness.queue()
    for i in range(5):
        await queue.enqueue(SENDER, [f"n{i}@accept.test"], MESSAGE)
    await queue.start()
    await eventually(lambda: len(mx.received) == 5, what="five deliveries")
    assert mx.connections == 1


async def test_changed_settings_apply_to_a_running_queue(harness: Harness, mx: Any, eventually: Any) -> None:
    real_port = harness.config.delivery.remote_port
    harness.configure(remote_port=lb.free_port())           # nothing listens there
    queue = harness.queue()
    await queue.start()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test"], MESSAGE)
    await eventually(lambda: harness.log_events("a@accept.test")[:1] == ["deferred"], what="a deferral")
    harness.configure(remote_port=real_port, retry_schedule=(0.1,))
    queue.retry(queue_id)
    await eventually(lambda: mx.recipients() == ["a@accept.test"], what="delivery on the new port")

