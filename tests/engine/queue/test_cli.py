"""`postroom queue ...` through the real entry point, on a data directory with no server running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import Config
from engine.log import DeliveryLog
from engine.queue import QueueAdmin

MESSAGE = b"From: a@home.test\r\nSubject: CLI test\r\nMessage-ID: <cli@home.test>\r\n\r\nbody\r\n"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _enqueue(data_dir: Path, recipients: list[str]) -> str:
    admin = QueueAdmin(Config(data_dir=data_dir))
    try:
        return admin.enqueue("a@home.test", recipients, MESSAGE)
    finally:
        admin.close()


def _run(data_dir: Path, *argv: str) -> int:
    return main(["--data-dir", str(data_dir), *argv])


def test_list_an_empty_queue(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "queue", "list") == 0
    assert capsys.readouterr().out == "The queue is empty.\n"


def test_list_as_a_table_and_as_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_id = _enqueue(data_dir, ["b@far.test", "c@far.test"])
    assert _run(data_dir, "queue", "list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["ID", "AGE", "SIZE", "TRIES", "NEXT", "STATUS"]
    assert table[1].startswith(queue_id) and "b@far.test, c@far.test" in table[1]
    assert table[-1] == "1 message(s)"
    assert _run(data_dir, "queue", "list", "--format", "json") == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["id"] == queue_id and item["subject"] == "CLI test"
    assert [r["address"] for r in item["recipients"]] == ["b@far.test", "c@far.test"]


def test_show_prints_recipients_and_headers(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_id = _enqueue(data_dir, ["b@far.test"])
    assert _run(data_dir, "queue", "show", queue_id) == 0
    out = capsys.readouterr().out
    assert f"Queue ID:   {queue_id}" in out
    assert "  b@far.test: queued, 0 attempt(s)" in out
    assert "Subject: CLI test" in out


def test_retry_delete_and_bounce(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _enqueue(data_dir, ["b@far.test"])
    second = _enqueue(data_dir, ["c@far.test"])
    assert _run(data_dir, "queue", "retry", first) == 0
    assert capsys.readouterr().out == f"{first}: 1 recipient(s) will be tried again now\n"
    assert _run(data_dir, "queue", "retry", "--all") == 0
    assert capsys.readouterr().out == "2 recipient(s) will be tried again now\n"
    assert _run(data_dir, "queue", "bounce", second) == 0
    assert "1 recipient(s) returned to the sender" in capsys.readouterr().out
    assert _run(data_dir, "queue", "delete", first) == 0
    assert capsys.readouterr().out == f"{first}: deleted\n"
    config = Config(data_dir=data_dir)
    admin = QueueAdmin(config)
    try:
        assert [i.id for i in admin.list()] == [second]
        assert admin.get(second) is not None and admin.get(second).status == "failed"  # type: ignore[union-attr]
    finally:
        admin.close()
    log = DeliveryLog(config.state_db)
    try:
        [deleted] = log.query(status="deleted")
        assert deleted.queue_id == first and "(command line)" in deleted.detail
    finally:
        log.close()


@pytest.mark.parametrize("argv", [["queue", "show", "ABCDEF012345"], ["queue", "delete", "ABCDEF012345"],
                                  ["queue", "retry", "ABCDEF012345"], ["queue", "bounce", "ABCDEF012345"]])
def test_an_unknown_id_is_one_line_and_exit_1(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str]) -> None:
    assert _run(data_dir, *argv) == 1
    captured = capsys.readouterr()
    assert captured.err == "postroom: error: no message 'ABCDEF012345' in the queue\n"
    assert captured.out == ""


def test_retry_needs_an_id_or_all(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _run(data_dir, "queue", "retry")
    assert info.value.code == 2
    assert "one of the arguments ID --all is required" in capsys.readouterr().err
