"""`postroom log`: filters, formats and --follow, through the real entry point."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import Config
from engine.log import DeliveryLog
from engine.log.cli import parse_time, run


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    log = DeliveryLog(Config(data_dir=d).state_db)
    now = time.time()
    log.record("received", time=now - 7200, sender="alice@x.test", recipient="bob@y.test", queue_id="Q1",
               client_ip="192.0.2.1")
    log.record("relayed", time=now - 3600, sender="alice@x.test", recipient="bob@y.test", queue_id="Q1",
               remote_host="mx.y.test[192.0.2.5]:25", remote_reply="250 2.0.0 Ok", tls="TLSv1.3 verified")
    log.record("rejected", time=now - 60, sender="eve@z.test", recipient="carol@x.test",
               reason="relay denied", client_ip="192.0.2.9")
    log.close()
    return d


def _run(data_dir: Path, *argv: str) -> int:
    return main(["--data-dir", str(data_dir), "log", *argv])


def test_table_lists_oldest_first_with_the_story_of_each_row(data_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == ["received", "relayed", "rejected"]
    assert "alice@x.test -> bob@y.test" in lines[1] and "via mx.y.test[192.0.2.5]:25" in lines[1]
    assert "- relay denied" in lines[2] and "from 192.0.2.9" in lines[2]


def test_filters_combine(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "--since", "90m", "--address", "bob@") == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "relayed" in line
    assert _run(data_dir, "--status", "rejected,received", "--format", "json") == 0
    assert [e["event"] for e in json.loads(capsys.readouterr().out)] == ["received", "rejected"]
    assert _run(data_dir, "--until", "30m", "--direction", "out", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["event"] for r in rows] == ["relayed"]
    assert _run(data_dir, "--address", "nobody@") == 0
    assert capsys.readouterr().out == "No entries.\n"


def test_limit_keeps_the_newest(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "--limit", "2", "--format", "json") == 0
    assert [e["event"] for e in json.loads(capsys.readouterr().out)] == ["relayed", "rejected"]


def test_bad_input_is_one_line_and_exit_1(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "--since", "yesterday-ish") == 1
    assert capsys.readouterr().err.startswith("postroom: error: 'yesterday-ish' is not a time")
    assert _run(data_dir, "--status", "exploded") == 1
    assert capsys.readouterr().err.startswith("postroom: error: unknown status exploded")


def test_times_people_type() -> None:
    now = 1_700_000_000.0
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time("2024-05-01T13:30+00:00") == 1_714_570_200.0
    assert parse_time("2024-05-01") == datetime(2024, 5, 1).timestamp()


def test_follow_prints_new_rows_as_they_arrive(data_dir: Path) -> None:
    config = Config(data_dir=data_dir)
    out = io.StringIO()
    polls = 0
    writer = DeliveryLog(config.state_db)

    def keep_going() -> bool:
        nonlocal polls
        polls += 1
        if polls == 2:
            writer.record("deferred", sender="alice@x.test", recipient="dan@w.test", reason="451 try later")
        return polls <= 4 and "dan@w.test" not in out.getvalue()

    args = argparse.Namespace(since=None, until=None, address=None, status=None, direction=None, text=None,
                              limit=1, format="json", follow=True)
    try:
        assert run(args, config, out=out, keep_going=keep_going, poll=0.02) == 0
    finally:
        writer.close()
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["rejected", "deferred"]
