"""Crash safety: what is on disk before the 250 and before each dial, and what a restart does with it."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

from engine.queue import QueueAdmin

from .conftest import SENDER, Harness, lb

MESSAGE = b"From: alice@home.test\r\nSubject: once only\r\nMessage-ID: <c1@home.test>\r\n\r\nbody\r\n"
ROOT = Path(__file__).resolve().parents[3]


def _status(harness: Harness, queue_id: str) -> dict[str, str]:
    admin = QueueAdmin(harness.config)
    try:
        item = admin.get(queue_id)
        return {r.address: r.status for r in item.recipients} if item else {}
    finally:
        admin.close()


async def test_enqueue_commits_the_spool_file_and_the_rows_before_returning(harness: Harness) -> None:
    queue = harness.queue()
    queue_id = await queue.enqueue(SENDER, ["a@accept.test", "b@far.test"], MESSAGE)
    assert (harness.config.spool_dir / queue_id).read_bytes() == MESSAGE
    assert _status(harness, queue_id) == {"a@accept.test": "queued", "b@far.test": "queued"}


async def test_a_restart_after_an_abandoned_attempt_delivers_exactly_once(harness: Harness, mx: Any,
                                                                          eventually: Any) -> None:
    first = harness.queue()
    await first.start()
    queue_id = await first.enqueue(SENDER, ["a@accept.test", "z@stall.test"], MESSAGE)
    await eventually(lambda: "a@accept.test" in mx.recipients() and mx.stalled.is_set(),
                     what="one delivery done and one attempt hanging at RCPT")
    await eventually(lambda: _status(harness, queue_id)["a@accept.test"] == "delivered",
                     what="the delivered recipient to be committed")
    await first.stop()          # the scheduler vanishes mid-attempt; nothing more is written
    assert _status(harness, queue_id) == {"a@accept.test": "delivered", "z@stall.test": "sending"}

    mx.behaviours["stall.test"] = lb.ACCEPT
    second = harness.queue()
    await second.start()
    await eventually(lambda: second.get(queue_id) is None, what="the message to be finished")
    assert sorted(mx.recipients()) == ["a@accept.test", "z@stall.test"]


async def test_a_killed_process_mid_attempt_loses_and_duplicates_nothing(harness: Harness, mx: Any,
                                                                         zone: Any, eventually: Any) -> None:
    admin = QueueAdmin(harness.config)
    try:
        queue_id = admin.enqueue(SENDER, ["a@accept.test", "z@stall.test"], MESSAGE)
    finally:
        admin.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("run_queue.py")), str(harness.data_dir), str(zone.port),
        str(harness.config.delivery.remote_port), stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    try:
        await eventually(lambda: mx.stalled.is_set() and "a@accept.test" in mx.recipients(), timeout=15,
                         what="the child to deliver one recipient and hang on the other")
        await eventually(lambda: _status(harness, queue_id).get("a@accept.test") == "delivered",
                         what="the child to commit the delivery")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.stdout is not None
        await proc.stdout.read()
    assert _status(harness, queue_id) == {"a@accept.test": "delivered", "z@stall.test": "sending"}

    mx.behaviours["stall.test"] = lb.ACCEPT
    queue = harness.queue()
    await queue.start()
    await eventually(lambda: queue.get(queue_id) is None, what="the restarted queue to finish the message")
    assert sorted(mx.recipients()) == ["a@accept.test", "z@stall.test"]


FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    from engine.config import Config
    from engine.queue import QueueAdmin
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # EFBIG as an OSError instead of a killing signal
    admin = QueueAdmin(Config(data_dir=Path(sys.argv[1])))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    out = {}
    try:
        admin.enqueue("a@home.test", ["b@far.test"], b"Subject: big\\r\\n\\r\\n" + b"x" * 1_000_000)
    except OSError as exc:
        out["error"] = [type(exc).__name__, exc.errno]
    out["small"] = admin.enqueue("a@home.test", ["b@far.test"], b"Subject: small\\r\\n\\r\\nhi\\r\\n")
    print(json.dumps(out))
""")


async def test_a_full_disk_raises_oserror_and_leaves_nothing_half_written(harness: Harness) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", FULL_DISK, str(harness.data_dir),
                                                stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    out = json.loads(stdout)
    assert out["error"] == ["OSError", errno.EFBIG]    # what SMTP turns into 452 4.3.1
    admin = QueueAdmin(harness.config)
    try:
        assert [item.subject for item in admin.list()] == ["small"]
    finally:
        admin.close()
    assert sorted(p.name for p in harness.config.spool_dir.iterdir()) == [out["small"]]
