"""The SMTP log writer: entries reach the delivery log in order, batched, and never lost to a bad batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.events import DeliveryLogged, Event, EventBus
from engine.log import DeliveryLog
from engine.smtp.records import RecordWriter


@contextmanager
def log_with_writer(path: Path, bus: EventBus | None = None) -> Iterator[tuple[DeliveryLog, RecordWriter]]:
    """A delivery log in `path` and a writer feeding it; the writer is closed (and so drained) first."""
    log = DeliveryLog(path / "state.sqlite", bus)
    writer = RecordWriter(log)
    try:
        yield log, writer
    finally:
        writer.close()
        log.close()


def test_entries_reach_the_log_in_order_and_are_published(tmp_path: Path) -> None:
    bus = EventBus()
    published: list[Event] = []
    bus.subscribe(published.append)
    with log_with_writer(tmp_path, bus) as (log, writer):
        for i in range(300):
            writer.record("received", message_id=f"m{i}", sender="a@remote.test", recipient=["b@example.test"])
            writer.record("delivered", message_id=f"m{i}", recipient=["b@example.test", "c@example.test"],
                          folder="INBOX")
        assert writer.flush()
        rows = log.query(limit=None, oldest_first=True)
        assert [(r.event, r.message_id) for r in rows][:4] == [
            ("received", "m0"), ("delivered", "m0"), ("delivered", "m0"), ("received", "m1")]
        assert len(rows) == 900
        assert [e.entry.id for e in published if isinstance(e, DeliveryLogged)] == [r.id for r in rows]


def test_a_batch_the_database_refuses_is_written_entry_by_entry(tmp_path: Path) -> None:
    with log_with_writer(tmp_path) as (log, writer):
        # An entry that cannot be turned into a row fails the batch; the entries are then recorded one
        # at a time, so the good ones around it survive.
        writer.record("received", message_id="good-1")
        writer.record("received", message_id=_Unprintable())
        writer.record("received", message_id="good-2")
        assert writer.flush()
        assert [r.message_id for r in log.query(limit=None, oldest_first=True)] == ["good-1", "good-2"]


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text for this value")


class _PlainRecorder:
    """A recorder with only `record` (the DeliveryRecorder protocol), as a listener may be given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.thread: threading.Thread | None = None

    def record(self, event: str, **fields: Any) -> None:
        self.thread = threading.current_thread()
        self.seen.append((event, fields))


def test_a_recorder_without_the_transaction_seam_gets_one_call_per_entry() -> None:
    recorder = _PlainRecorder()
    writer = RecordWriter(recorder, name="test-log")
    try:
        writer.record("received", message_id="a")
        writer.record("rejected", message_id="b", reason="relay denied")
        assert writer.flush()
        assert [(e, f["message_id"]) for e, f in recorder.seen] == [("received", "a"), ("rejected", "b")]
        assert all("time" in f for _, f in recorder.seen)
        assert recorder.thread is not None and recorder.thread.name == "test-log"
    finally:
        writer.close()


def test_entries_reach_the_log_by_themselves_without_a_flush(tmp_path: Path) -> None:
    with log_with_writer(tmp_path) as (log, writer):
        writer.record("received", message_id="unflushed")
        deadline = time.monotonic() + 5.0
        while log.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)        # polling with a deadline: the writer works on its own schedule
        assert [r.message_id for r in log.query()] == ["unflushed"]
