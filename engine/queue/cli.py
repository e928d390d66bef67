"""`postroom queue ...`: list, show, retry, delete and bounce queued messages from the command line.

Works on the data directory directly (no server needed); a running server notices within a second.
Every failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from engine.config import Config, ConfigError, load_config
from engine.queue.admin import QueueAdmin
from engine.queue.model import QueueError, QueueItem

EXIT_OK = 0
EXIT_ERROR = 1


def add_arguments(subparsers: Any) -> None:
    """Adds `queue` with its actions to the top-level `postroom` parser's subcommands."""
    p = subparsers.add_parser("queue", help="list and manage outbound mail waiting for delivery")
    actions = p.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    q = actions.add_parser("list", help="list queued messages")
    q.add_argument("--format", choices=("table", "json"), default="table")
    q = actions.add_parser("show", help="show one message: recipients, errors and headers")
    q.add_argument("id", metavar="ID")
    q = actions.add_parser("retry", help="try delivery again now")
    target = q.add_mutually_exclusive_group(required=True)
    target.add_argument("id", metavar="ID", nargs="?")
    target.add_argument("--all", action="store_true", help="every queued message")
    q = actions.add_parser("delete", help="remove a message without telling the sender")
    q.add_argument("id", metavar="ID")
    q = actions.add_parser("bounce", help="give up now and return the message to its sender")
    q.add_argument("id", metavar="ID")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """The handler the top-level CLI calls (args.data_dir is set by it)."""
    try:
        config = load_config(args.data_dir)
    except ConfigError as exc:
        return _fail(str(exc))
    return run(args, config)


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        admin = QueueAdmin(config, log=_open_log(config))
    except OSError as exc:
        return _fail(f"cannot open the queue in {config.data_dir}: {exc}")
    try:
        action = args.queue_action
        if action == "list":
            _list(admin.list(), args.format, out)
        elif action == "show":
            _show(admin, args.id, out)
        elif action == "retry":
            if args.all:
                count = admin.retry_all()
                print(f"{count} recipient(s) will be tried again now", file=out)
            else:
                count = admin.retry(args.id)
                print(f"{args.id}: {count} recipient(s) will be tried again now", file=out)
        elif action == "delete":
            admin.delete(args.id, by=f"{_user()} (command line)")
            print(f"{args.id}: deleted", file=out)
        elif action == "bounce":
            failed = admin.bounce(args.id, by=f"{_user()} (command line)")
            print(f"{args.id}: {len(failed)} recipient(s) returned to the sender (the server sends the "
                  "notification)", file=out)
        else:
            return _fail(f"unknown queue action {action!r}")
    except QueueError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}")
    finally:
        admin.close()
        if admin.log is not None:
            admin.log.close()
    return EXIT_OK


def _open_log(config: Config) -> Any:
    from engine.log import DeliveryLog

    return DeliveryLog(config.state_db)


def _fail(message: str) -> int:
    print(f"postroom: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown user"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(moment: float | None, now: float) -> str:
    if moment is None:
        return "-"
    if moment <= now:
        return "now"
    return "in " + _age(moment - now)


def item_json(item: QueueItem) -> dict[str, Any]:
    return {
        "id": item.id, "sender": item.sender, "size": item.size, "created": item.created,
        "status": item.status, "attempts": item.attempts, "next_attempt": item.next_attempt,
        "last_error": item.last_error, "message_id": item.message_id, "subject": item.subject,
        "recipients": [{"address": r.address, "status": r.status, "attempts": r.attempts,
                        "next_attempt": r.next_attempt, "last_attempt": r.last_attempt,
                        "last_error": r.last_error,
                        "remote_host": r.remote_host} for r in item.recipients],
    }


def _list(items: Sequence[QueueItem], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump([item_json(i) for i in items], out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    if not items:
        print("The queue is empty.", file=out)
        return
    now = time.time()
    rows = [("ID", "AGE", "SIZE", "TRIES", "NEXT", "STATUS", "SENDER", "RECIPIENTS", "LAST ERROR")]
    for i in items:
        pending = i.pending or i.recipients
        rows.append((i.id, _age(now - i.created), str(i.size), str(i.attempts), _when(i.next_attempt, now),
                     i.status, i.sender or "<>", ", ".join(r.address for r in pending),
                     _short(i.last_error, 60)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1], file=out)
    print(f"{len(items)} message(s)", file=out)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(admin: QueueAdmin, queue_id: str, out: TextIO) -> None:
    item = admin.get(queue_id)
    if item is None:
        raise QueueError(f"no message {queue_id!r} in the queue")
    now = time.time()
    created = datetime.fromtimestamp(item.created).astimezone().isoformat(timespec="seconds")
    print(f"Queue ID:   {item.id}", file=out)
    print(f"Sender:     {item.sender or '<>'}", file=out)
    print(f"Queued:     {created} ({_age(now - item.created)} ago)", file=out)
    print(f"Size:       {item.size} bytes", file=out)
    print(f"Status:     {item.status}", file=out)
    print("Recipients:", file=out)
    for r in item.recipients:
        line = f"  {r.address}: {r.status}, {r.attempts} attempt(s)"
        if r.next_attempt is not None:
            line += f", next {_when(r.next_attempt, now)}"
        print(line, file=out)
        if r.last_error:
            print(f"      {r.last_error}", file=out)
    print("", file=out)
    try:
        print(admin.headers(queue_id).rstrip("\n"), file=out)
    except QueueError as exc:
        print(f"(headers unavailable: {exc})", file=out)
