"""Local delivery throughput: MailStore.deliver (group commit) against a naive durable Maildir loop.

The baseline is what a simple MDA does per message: write to tmp/, fsync the file, rename into new/,
fsync new/.  It keeps no index at all, so the store pays for its SQLite index on top and still has to
win by sharing fsyncs.  Both run in the same process, on the same disk, in the same run (disk timings
here vary by ±30% between runs).

    .venv/bin/python bench/store_deliver.py [--messages 2000] [--size 4096] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.store import MailStore

ADDRESS = "bench@example.test"


def make_message(i: int, size: int) -> bytes:
    head = (f"Received: from client.test by mx.example.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"From: Sender <sender@client.test>\r\nTo: {ADDRESS}\r\nSubject: bench {i}\r\n"
            f"Message-ID: <{i}.{time.time_ns()}@client.test>\r\n\r\n").encode()
    line = b"x" * 74 + b"\r\n"
    return head + line * max(0, (size - len(head)) // len(line))


class NaiveMaildir:
    """write + fsync + rename + fsync dir, one message at a time per caller (smtp_throughput.py's
    baselines store with it too)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._n = 0
        self._host = socket.gethostname()

    def deliver(self, data: bytes) -> str:
        """Returns the file's name in new/."""
        with self._lock:
            self._n += 1
            n = self._n
        now = time.time_ns() // 1000
        name = f"{now // 1_000_000}.M{now % 1_000_000}P{os.getpid()}Q{n}.{self._host}"
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data.replace(b"\r\n", b"\n"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.root / "new" / name)
        dfd = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name


def deliver_nth(naive: NaiveMaildir, messages: list[bytes], i: int) -> None:
    naive.deliver(messages[i])


def run_threads(fn: Callable[[int], None], total: int, concurrency: int, deadline: float) -> int:
    """Runs fn(i) for i < total on `concurrency` workers, stopping at the deadline; returns how many ran."""
    counter = iter(range(total))
    lock = threading.Lock()
    done = [0]

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            fn(i)
            with lock:
                done[0] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    return done[0]


async def run_store(store: MailStore, messages: list[bytes], concurrency: int, deadline: float) -> int:
    queue = iter(messages)
    done = 0

    async def session() -> None:
        nonlocal done
        for data in queue:
            if time.monotonic() >= deadline:
                return
            await store.deliver([ADDRESS], data)
            done += 1

    await asyncio.gather(*(session() for _ in range(concurrency)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per run; a run stops early past it")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    messages = [make_message(i, args.size) for i in range(args.messages)]
    rates: dict[tuple[str, int], list[float]] = {}
    counts: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        # Block groups of its own (ext2/3/4 Orlov hint), away from the inodes other programs keep freeing
        # in /tmp's: on a shared machine without an ext4 journal those make every file creation dearer.
        with contextlib.suppress(OSError):
            subprocess.run(["chattr", "+T", tmp], capture_output=True, check=False)
        for rnd in range(args.rounds):
            for concurrency in (1, 20):
                naive = NaiveMaildir(base / f"naive{rnd}-{concurrency}")
                start = time.monotonic()
                n = run_threads(functools.partial(deliver_nth, naive, messages), len(messages), concurrency,
                                start + args.max_seconds)
                rates.setdefault(("naive", concurrency), []).append(n / (time.monotonic() - start))
                counts[("naive", concurrency)] = n

                with MailStore(base / f"store{rnd}-{concurrency}", hostname="bench.test") as store:
                    store.create_account(ADDRESS)
                    start = time.monotonic()
                    n = asyncio.run(run_store(store, messages, concurrency, start + args.max_seconds))
                    elapsed = time.monotonic() - start
                    assert store.mailbox(ADDRESS).status("INBOX").messages == n
                rates.setdefault(("store", concurrency), []).append(n / elapsed)
                counts[("store", concurrency)] = n

    labels = {"naive": "naive write+fsync+rename+fsync dir", "store": "MailStore.deliver (group commit + index)"}
    print(f"{args.messages} messages of {args.size} octets to one account, {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPUs; msg/s median (min-max)")
    print(f"{'method':<42} {'conc':>4} {'msgs':>6} {'msg/s':>8} {'range':>13}")
    for concurrency in (1, 20):
        for kind in ("naive", "store"):
            r = sorted(rates[(kind, concurrency)])
            print(f"{labels[kind]:<42} {concurrency:>4} {counts[(kind, concurrency)]:>6} "
                  f"{statistics.median(r):>8.0f} {f'{r[0]:.0f}-{r[-1]:.0f}':>13}")
    for concurrency in (1, 20):
        ratio = statistics.median(rates[("store", concurrency)]) / statistics.median(rates[("naive", concurrency)])
        print(f"MailStore / naive at {concurrency:>2} concurrent: {ratio:.2f}x")


if __name__ == "__main__":
    main()
