"""`postroom log`: read and filter the delivery log, as a table, CSV or JSON, and follow new entries.

Reads `state.sqlite` directly; works with or without a running server.  Times are accepted as
`2024-05-01`, `2024-05-01T13:30` (local time), an ISO time with offset, epoch seconds, or an age such
as `30m`, `2h`, `7d` (meaning that long ago).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from engine.config import Config, ConfigError, load_config, parse_duration
from engine.log.delivery_log import DeliveryLog
from engine.log.entry import DIRECTIONS, EVENTS, EXPORT_COLUMNS, LogEntry, LogFilter

EXIT_OK = 0
EXIT_ERROR = 1
FOLLOW_POLL = 0.5


def parse_time(text: str, now: float | None = None) -> float:
    """A moment from what a person types: ISO date/time (local unless it says), epoch, or an age."""
    text = text.strip()
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use 2024-05-01, 2024-05-01T13:30, epoch seconds, "
                         "or an age such as 2h or 7d") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()        # naive means local time
    return moment.timestamp()


def add_arguments(subparsers: Any) -> None:
    p = subparsers.add_parser("log", help="show the delivery log (received, delivered, relayed, bounced ...)")
    p.add_argument("--since", metavar="TIME", help="only entries at or after TIME (e.g. 2h, 2024-05-01)")
    p.add_argument("--until", metavar="TIME", help="only entries before TIME")
    p.add_argument("--address", metavar="A", help="sender or recipient containing A")
    p.add_argument("--status", metavar="S", help=f"event(s), comma-separated: {', '.join(EVENTS)}")
    p.add_argument("--direction", choices=DIRECTIONS, help="inbound or outbound mail only")
    p.add_argument("--text", metavar="T", help="any field containing T (queue id, Message-ID, reply ...)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="show the newest N entries (default 100; 0 for all)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries as they come")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.data_dir)
    except ConfigError as exc:
        return _fail(str(exc))
    return run(args, config)


def _fail(message: str) -> int:
    print(f"postroom: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None,
        keep_going: Callable[[], bool] | None = None, poll: float = FOLLOW_POLL) -> int:
    """`keep_going` bounds --follow (tests); by default it runs until interrupted."""
    out = out or sys.stdout
    try:
        flt = LogFilter.build(
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            address=args.address, status=args.status, direction=args.direction, text=args.text)
    except ValueError as exc:
        return _fail(str(exc))
    unknown = [s for s in flt.status if s not in EVENTS]
    if unknown:
        return _fail(f"unknown status {', '.join(unknown)} (known: {', '.join(EVENTS)})")
    if args.limit < 0:
        return _fail("--limit cannot be negative")
    try:
        dlog = DeliveryLog(config.state_db)
    except Exception as exc:
        return _fail(f"cannot open the delivery log in {config.data_dir}: {exc}")
    try:
        newest = dlog.query(flt, limit=args.limit or None)
        entries = list(reversed(newest))
        writer = _Writer(args.format, out, lines=args.follow)
        writer.write(entries)
        if args.follow:
            last = max([e.id for e in entries] + [dlog.latest_id() if not entries else 0])
            keep = keep_going or (lambda: True)
            while keep():
                time.sleep(poll)
                fresh = dlog.query(_after(flt, last), limit=None, oldest_first=True)
                if fresh:
                    last = fresh[-1].id
                    writer.write(fresh)
        writer.finish()
    finally:
        dlog.close()
    return EXIT_OK


def _after(flt: LogFilter, last: int) -> LogFilter:
    return LogFilter(since=flt.since, until=flt.until, address=flt.address, status=flt.status,
                     direction=flt.direction, text=flt.text, queue_id=flt.queue_id, after_id=last)


def _local(moment: float) -> str:
    return datetime.fromtimestamp(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class _Writer:
    """Prints entries as they come; JSON is one object per line when following, an array otherwise."""

    def __init__(self, fmt: str, out: TextIO, lines: bool = False) -> None:
        self.fmt = fmt
        self.out = out
        self.lines = lines               # JSON Lines: an array never ends while following
        self.count = 0
        self._csv = csv.writer(out) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(EXPORT_COLUMNS)
        if fmt == "json" and not lines:
            out.write("[")

    def write(self, entries: Sequence[LogEntry]) -> None:
        for e in entries:
            if self.fmt == "table":
                self.out.write(_table_line(e) + "\n")
            elif self._csv is not None:
                row = e.as_dict()
                row["time"] = datetime.fromtimestamp(e.time).astimezone().isoformat(timespec="seconds")
                row["extra"] = e.extra_json
                self._csv.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
            elif self.lines:
                self.out.write(json.dumps(e.as_dict(), ensure_ascii=False) + "\n")
            else:
                self.out.write(("\n" if self.count == 0 else ",\n") + json.dumps(e.as_dict(), ensure_ascii=False))
            self.count += 1
        self.out.flush()

    def finish(self) -> None:
        if self.fmt == "json" and not self.lines:
            self.out.write("\n]\n" if self.count else "]\n")
        elif self.fmt == "table" and self.count == 0:
            self.out.write("No entries.\n")
        self.out.flush()


def _table_line(e: LogEntry) -> str:
    who = f"{e.sender or '<>'} -> {e.recipient or '-'}"
    parts = [_local(e.time), e.event.ljust(9), (e.queue_id or "-").ljust(17), who]
    if e.remote_host:
        parts.append(f"via {e.remote_host}")
    if e.remote_reply and e.remote_reply != e.detail:
        parts.append(f"[{' '.join(e.remote_reply.split())}]")
    if e.tls and e.event == "relayed":
        parts.append(f"tls={e.tls.split(' (')[0]}")
    if e.detail:
        parts.append(f"- {' '.join(e.detail.split())}")
    if e.client_ip:
        parts.append(f"from {e.client_ip}")
    return "  ".join(parts)
