"""The delivery log: what SMTP and the queue record, what the GUI and CLI read back, and exports."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.events import DeliveryLogged, Event, EventBus
from engine.log import DeliveryLog, LogEntry, LogFilter


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def dlog(tmp_path: Path, bus: EventBus) -> Iterator[DeliveryLog]:
    log = DeliveryLog(tmp_path / "state.sqlite", bus)
    yield log
    log.close()


def test_smtp_fields_fill_columns_and_unknown_fields_go_to_extra(dlog: DeliveryLog) -> None:
    [entry] = dlog.record("received", sender="a@x.test", recipient="b@y.test", size=4096,
                          message_id="<m1@x.test>", client_ip="192.0.2.1", queue_id="Q1",
                          reason="", helo="client.x.test", service="submission")
    assert isinstance(entry, LogEntry)
    assert (entry.event, entry.direction, entry.sender, entry.recipient) == ("received", "in", "a@x.test",
                                                                            "b@y.test")
    assert (entry.size, entry.message_id, entry.client_ip, entry.queue_id) == (4096, "<m1@x.test>",
                                                                              "192.0.2.1", "Q1")
    assert entry.extra == {"helo": "client.x.test", "service": "submission"}


def test_reason_is_the_detail_and_rejections_are_inbound(dlog: DeliveryLog) -> None:
    [entry] = dlog.record("rejected", sender="spam@x.test", recipient="nobody@y.test",
                          reason="550 5.1.1 no such user", client_ip="192.0.2.9")
    assert entry.detail == "550 5.1.1 no such user"
    assert entry.direction == "in"


def test_a_list_of_recipients_gives_one_row_each(dlog: DeliveryLog) -> None:
    entries = dlog.record("relayed", sender="a@x.test", recipient=["b@y.test", "c@y.test"],
                          remote_host="mx.y.test", remote_reply="250 ok", tls="TLSv1.3 verified")
    assert [e.recipient for e in entries] == ["b@y.test", "c@y.test"]
    assert all(e.direction == "out" and e.remote_host == "mx.y.test" for e in entries)


def test_each_new_row_is_published_on_the_bus(dlog: DeliveryLog, bus: EventBus) -> None:
    seen: list[Event] = []
    bus.subscribe(seen.append)
    dlog.record("delivered", sender="a@x.test", recipient="me@here.test")
    assert len(seen) == 1
    assert isinstance(seen[0], DeliveryLogged)
    assert seen[0].entry.recipient == "me@here.test"


def test_rows_written_by_another_process_are_published_on_catch_up(tmp_path: Path, dlog: DeliveryLog,
                                                                   bus: EventBus) -> None:
    seen: list[Event] = []
    bus.subscribe(seen.append)
    cli_side = DeliveryLog(tmp_path / "state.sqlite")     # the CLI: same file, no bus
    try:
        cli_side.record("deleted", queue_id="Q9", detail="deleted by admin")
    finally:
        cli_side.close()
    assert seen == []
    [entry] = dlog.catch_up()
    assert entry.event == "deleted"
    assert [e.entry.queue_id for e in seen if isinstance(e, DeliveryLogged)] == ["Q9"]
    assert dlog.catch_up() == []


def test_record_never_raises_into_the_caller(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "state.sqlite")
    log.close()
    with pytest.raises(sqlite3.ProgrammingError):
        log.latest_id()
    assert log.record("received", sender="a@x.test") == []


def _fill(dlog: DeliveryLog, base: float) -> None:
    dlog.record("received", time=base, sender="alice@x.test", recipient="bob@y.test", queue_id="Q1")
    dlog.record("relayed", time=base + 60, sender="alice@x.test", recipient="bob@y.test", queue_id="Q1",
                remote_host="mx.y.test", remote_reply="250 2.0.0 queued as ABC")
    dlog.record("rejected", time=base + 120, sender="eve@z.test", recipient="carol@x.test",
                reason="relay denied")
    dlog.record("deferred", time=base + 180, sender="alice@x.test", recipient="dave@w.test",
                queue_id="Q2", reason="451 greylisted")
    dlog.record("bounced", time=base + 240, sender="alice@x.test", recipient="erin@v.test", queue_id="Q3",
                reason="550 no such user")


def test_query_filters_by_time_address_status_direction_and_text(dlog: DeliveryLog) -> None:
    base = 1_700_000_000.0
    _fill(dlog, base)
    assert [e.event for e in dlog.query()] == ["bounced", "deferred", "rejected", "relayed", "received"]
    assert [e.event for e in dlog.query(since=base + 60, until=base + 180)] == ["rejected", "relayed"]
    assert {e.event for e in dlog.query(address="BOB@")} == {"received", "relayed"}
    assert [e.event for e in dlog.query(status="deferred,bounced")] == ["bounced", "deferred"]
    assert [e.event for e in dlog.query(status=["rejected"])] == ["rejected"]
    assert {e.event for e in dlog.query(direction="in")} == {"received", "rejected"}
    assert [e.event for e in dlog.query(text="greylisted")] == ["deferred"]
    assert [e.event for e in dlog.query(text="ABC")] == ["relayed"]
    assert [e.event for e in dlog.query(queue_id="Q1", oldest_first=True)] == ["received", "relayed"]
    assert dlog.count(address="alice") == 4
    assert dlog.count(LogFilter.build(status="rejected")) == 1


def test_like_wildcards_in_a_filter_are_taken_literally(dlog: DeliveryLog) -> None:
    dlog.record("received", sender="a_b@x.test")
    dlog.record("received", sender="axb@x.test")
    assert [e.sender for e in dlog.query(address="a_b")] == ["a_b@x.test"]
    assert dlog.count(text="%") == 0


def test_pages_come_in_order_without_overlap(dlog: DeliveryLog) -> None:
    for i in range(25):
        dlog.record("received", time=1_000 + i, sender=f"s{i}@x.test")
    pages = [dlog.query(offset=o, limit=10) for o in (0, 10, 20)]
    assert [len(p) for p in pages] == [10, 10, 5]
    senders = [e.sender for page in pages for e in page]
    assert senders == [f"s{i}@x.test" for i in range(24, -1, -1)]


def test_follow_reads_only_rows_after_the_last_one_seen(dlog: DeliveryLog) -> None:
    dlog.record("received", sender="old@x.test")
    last = dlog.latest_id()
    dlog.record("received", sender="new@x.test")
    assert [e.sender for e in dlog.query(after_id=last)] == ["new@x.test"]


def test_stats_today_counts_events_since_local_midnight(dlog: DeliveryLog) -> None:
    now = time.time()
    dlog.record("received", time=now)
    dlog.record("received", time=now)
    dlog.record("relayed", time=now)
    dlog.record("received", time=now - 3 * 86400)
    assert dlog.stats_today(now) == {"received": 2, "relayed": 1}


def test_per_minute_buckets_rows_by_minute(dlog: DeliveryLog) -> None:
    base = 1_700_000_040.0      # a whole minute
    for offset in (0, 5, 59, 60, 185):
        dlog.record("received", time=base + offset)
    assert dlog.per_minute(base) == [(int(base), 3), (int(base) + 60, 1), (int(base) + 180, 1)]
    assert dlog.per_minute(base + 60) == [(int(base) + 60, 1), (int(base) + 180, 1)]


def test_export_csv_has_a_header_and_every_matching_row(dlog: DeliveryLog, tmp_path: Path) -> None:
    _fill(dlog, 1_700_000_000.0)
    calls: list[tuple[int, int]] = []
    target = tmp_path / "out.csv"
    n = dlog.export({"address": "alice"}, target, "csv", progress=lambda d, t: calls.append((d, t)), batch=3)
    assert n == 4
    with open(target, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["event"] for r in rows] == ["received", "relayed", "deferred", "bounced"]
    assert rows[0]["time"] == "2023-11-14T22:13:20Z"
    assert calls == [(3, 4), (4, 4)]


def test_export_json_is_an_array_of_objects(dlog: DeliveryLog, tmp_path: Path) -> None:
    _fill(dlog, 1_700_000_000.0)
    target = tmp_path / "out.json"
    assert dlog.export(LogFilter.build(status="bounced"), target, "json") == 1
    [record] = json.loads(target.read_text(encoding="utf-8"))
    assert record["recipient"] == "erin@v.test"
    assert record["detail"] == "550 no such user"
    empty = tmp_path / "empty.json"
    assert dlog.export({"status": "expired"}, empty, "json") == 0
    assert json.loads(empty.read_text(encoding="utf-8")) == []


def test_a_failed_export_leaves_no_file(dlog: DeliveryLog, tmp_path: Path) -> None:
    _fill(dlog, 1_700_000_000.0)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dlog.export(None, tmp_path / "out.csv", "csv", progress=stop, batch=2)
    assert list(tmp_path.glob("*.csv*")) == []
    with pytest.raises(ValueError):
        dlog.export(None, tmp_path / "out.xml", "xml")
