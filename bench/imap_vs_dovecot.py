"""IMAP against Dovecot on copies of the same Maildir: SELECT, whole-mailbox FETCH, header FETCH, body
SEARCH, and fetching 1,000 whole messages.

    .venv/bin/python bench/imap_vs_dovecot.py [--messages 10000] [--runs 5]

Delivers N varied messages (plain and multipart, 1-30 KiB) into one account of Postroom's store, copies
the Maildir for Dovecot (from /work/shared/peers/dovecot.conf.in, free loopback ports, stopped by PID),
and times each row with the same raw-socket client against both, after one warm-up pass (both servers
then serve from their caches, which is the steady state a mail client sees).  Postroom runs in a child
process so client and server do not share an interpreter.  Result sizes are compared between the servers.
Disk timings vary between runs: compare the ratios printed at the end, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOVECOT_TEMPLATE = Path("/work/shared/peers/dovecot.conf.in")
USER_LOCAL = "bench"
DOMAIN = "example.test"
ADDRESS = f"{USER_LOCAL}@{DOMAIN}"
PASSWORD = "bench-password"
DEADLINE = 60.0
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]
NEEDLE = "zanzibar"          # in about 1 message in 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {DEADLINE} s")


def make_message(i: int, rng: random.Random) -> bytes:
    size = rng.choice((1024, 2048, 4096, 8192, 30000))
    words = [rng.choice(WORDS) for _ in range(size // 7)]
    if i % 50 == 7:
        words.insert(rng.randrange(len(words)), NEEDLE)
    lines = [" ".join(words[k:k + 10]) for k in range(0, len(words), 10)]
    body = "\r\n".join(lines) + "\r\n"
    head = (f"From: Sender {i % 97} <sender{i % 97}@remote{i % 7}.test>\r\nTo: {ADDRESS}\r\n"
            f"Cc: Other <other{i % 13}@example.test>\r\nSubject: message {i} about {rng.choice(WORDS)}\r\n"
            f"Message-ID: <bench-{i}@remote.test>\r\nDate: Mon, {1 + i % 28:02d} Jan 2024 10:{i % 60:02d}:00 +0000\r\n"
            "MIME-Version: 1.0\r\n")
    if i % 4 == 0:
        return (head + 'Content-Type: multipart/mixed; boundary="b{0}"\r\n\r\n--b{0}\r\n'
                "Content-Type: text/plain; charset=us-ascii\r\n\r\n{1}--b{0}\r\n"
                'Content-Type: application/octet-stream; name="data.bin"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b{0}--\r\n").format(i, body).encode()
    return (head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body).encode()


# --- one client for both servers ------------------------------------------------------------------

class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.n = 0
        self._line()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        start = 0
        while (i := self.buf.find(b"\r\n", start)) < 0:
            start = max(0, len(self.buf) - 1)
            self._fill()
        out = bytes(self.buf[:i + 2])
        del self.buf[:i + 2]
        return out

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def command(self, text: str) -> list[bytes]:
        """Sends one command; returns its responses (literals inlined), the tagged one last."""
        self.n += 1
        tag = f"b{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        literal = re.compile(rb"\{(\d+)\}\r\n\Z")
        while True:
            resp = self._line()
            while (m := literal.search(resp)) is not None:
                resp += self._exact(int(m.group(1)))
                resp += self._line()
            out.append(resp)
            if resp.startswith(tag + b" "):
                if not resp.startswith(tag + b" OK"):
                    raise RuntimeError(resp.decode(errors="replace"))
                return out

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.command("LOGOUT")
        self.sock.close()


def session(port: int, user: str) -> Client:
    c = Client(port)
    c.command(f'LOGIN "{user}" "{PASSWORD}"')
    return c


# --- rows -----------------------------------------------------------------------------------------

def row_select(port: int, user: str) -> tuple[float, int]:
    c = session(port, user)
    t = time.perf_counter()
    out = c.command("SELECT INBOX")
    took = time.perf_counter() - t
    c.close()
    return took, int(next(x for x in out if x.endswith(b" EXISTS\r\n")).split()[1])


def _timed(port: int, user: str, text: str) -> tuple[float, list[bytes]]:
    c = session(port, user)
    c.command("SELECT INBOX")
    t = time.perf_counter()
    out = c.command(text)
    took = time.perf_counter() - t
    c.close()
    return took, out


def row_fetch_envelopes(port: int, user: str) -> tuple[float, int]:
    took, out = _timed(port, user, "UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
    return took, sum(1 for x in out if b" FETCH (" in x)


def row_fetch_headers(port: int, user: str) -> tuple[float, int]:
    took, out = _timed(port, user, "FETCH 1:* BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]")
    return took, sum(1 for x in out if b" FETCH (" in x)


def row_search_body(port: int, user: str) -> tuple[float, int]:
    took, out = _timed(port, user, f"UID SEARCH BODY {NEEDLE}")
    return took, len(out[0].split()) - 2


def row_fetch_1000(port: int, user: str) -> tuple[float, int]:
    took, out = _timed(port, user, "FETCH 1:1000 BODY.PEEK[]")
    return took, sum(len(x) for x in out[:-1])


def row_fetch_1000_single(port: int, user: str) -> tuple[float, int]:
    c = session(port, user)
    c.command("SELECT INBOX")
    t = time.perf_counter()
    total = 0
    for i in range(1, 1001):
        total += len(c.command(f"FETCH {i} BODY.PEEK[]")[0])
    took = time.perf_counter() - t
    c.close()
    return took, total


ROWS: list[tuple[str, Callable[[int, str], tuple[float, int]]]] = [
    ("SELECT INBOX", row_select),
    ("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)", row_fetch_envelopes),
    ("FETCH 1:* BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]", row_fetch_headers),
    (f"UID SEARCH BODY {NEEDLE}", row_search_body),
    ("FETCH 1:1000 BODY.PEEK[] (one command)", row_fetch_1000),
    ("1,000 single FETCH n BODY.PEEK[]", row_fetch_1000_single),
]


# --- servers --------------------------------------------------------------------------------------

def build_postroom(data_dir: Path, messages: list[bytes]) -> Path:
    sys.path.insert(0, str(ROOT))
    from argon2 import PasswordHasher

    from engine.auth import Directory
    from engine.config import Config
    from engine.store import MailStore

    config = Config(data_dir=data_dir, hostname="bench.example.test")
    data_dir.mkdir(parents=True, exist_ok=True)
    directory = Directory(config.state_db, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    directory.add_domain(DOMAIN)
    directory.add_account(ADDRESS, PASSWORD)
    store = MailStore(config.mail_dir, hostname="bench.example.test")
    store.create_account(ADDRESS)

    async def deliver_all() -> None:
        # delivered as SMTP does, many at once so the group commit batches them
        for start in range(0, len(messages), 200):
            await asyncio.gather(*(store.deliver([ADDRESS], m) for m in messages[start:start + 200]))

    asyncio.run(deliver_all())
    store.close()
    directory.close()
    return config.mail_dir / DOMAIN / USER_LOCAL


def serve_postroom(data_dir: Path, port: int) -> None:
    sys.path.insert(0, str(ROOT))
    from argon2 import PasswordHasher

    from engine.auth import AuthFailureLimiter, Directory
    from engine.config import Config
    from engine.events import EventBus
    from engine.imap.server import IMAPListener
    from engine.services import Services
    from engine.store import MailStore

    async def main() -> None:
        config = Config(data_dir=data_dir, hostname="bench.example.test")
        events = EventBus()
        directory = Directory(config.state_db, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        store = MailStore(config.mail_dir, notify=events.publish, hostname="bench.example.test")
        services = Services(config=config, directory=directory, store=store, events=events,
                            limiter=AuthFailureLimiter())
        listener = IMAPListener(services, "imap")
        await listener.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await listener.stop(1.0)
        store.close()

    from engine.eventloop import run

    run(main())    # on the engine's loop


def start_dovecot(root: Path, maildir: Path) -> tuple[subprocess.Popen[bytes], int]:
    pop3_port, imap_port = free_port(), free_port()
    conf = DOVECOT_TEMPLATE.read_text().replace("@ROOT@", str(root))
    conf = conf.replace("port = 11110", f"port = {pop3_port}").replace("port = 11143", f"port = {imap_port}")
    for sub in ("run", "state", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dovecot.conf").write_text(conf)
    (root / "users").write_text(f"{USER_LOCAL}:{{PLAIN}}{PASSWORD}\n")
    target = root / "mail" / USER_LOCAL / "Maildir"
    target.parent.mkdir(parents=True)
    shutil.copytree(maildir, target, ignore=shutil.ignore_patterns("index.sqlite*", "postroom-*"))
    subprocess.run(["chown", "-R", "65534:65534", str(root / "mail")], check=True)
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(imap_port, proc, "dovecot")
    return proc, imap_port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_postroom(Path(args.serve[0]), int(args.serve[1]))
        return
    if shutil.which("dovecot") is None:
        raise SystemExit("dovecot is not installed: apt-get install -y dovecot-imapd")
    if args.messages < 1000:
        raise SystemExit("--messages must be at least 1000 (the 1,000-message rows)")

    rng = random.Random(3501)
    messages = [make_message(i, rng) for i in range(args.messages)]
    with tempfile.TemporaryDirectory(prefix="imapbench-") as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)
        t0 = time.perf_counter()
        maildir = build_postroom(tmpdir / "postroom", messages)
        print(f"delivered {args.messages} messages ({sum(map(len, messages)) >> 20} MiB) "
              f"in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        ours = subprocess.Popen([sys.executable, __file__, "--serve", str(tmpdir / "postroom"), str(port)],
                                cwd=ROOT)
        dovecot = None
        results: dict[str, dict[str, list[float]]] = {}
        sizes: dict[str, dict[str, int]] = {}
        try:
            wait_for_port(port, ours, "postroom")
            dovecot, dport = start_dovecot(tmpdir / "dovecot", maildir)
            targets = {"postroom": (port, ADDRESS), "dovecot": (dport, USER_LOCAL)}
            for label, fn in ROWS:
                # alternate the servers run by run, so a burst of load elsewhere hits both alike
                for run in range(args.runs + 1):         # run 0 warms caches and is not counted
                    for name, (p, user) in targets.items():
                        took, size = fn(p, user)
                        if run:
                            results.setdefault(label, {}).setdefault(name, []).append(took)
                        sizes.setdefault(label, {})[name] = size
        finally:
            stop(ours)
            if dovecot is not None:
                stop(dovecot)

    print(f"\n{args.messages} messages, median of {args.runs} warm runs (loopback, 2 cores)")
    print(f"{'row':58} {'postroom':>10} {'dovecot':>10} {'ratio':>7}  result (postroom / dovecot)")
    for label, _fn in ROWS:
        ours_t = statistics.median(results[label]["postroom"])
        theirs = statistics.median(results[label]["dovecot"])
        s = sizes[label]
        print(f"{label:58} {ours_t * 1000:8.1f}ms {theirs * 1000:8.1f}ms {ours_t / theirs:6.2f}x  "
              f"{s['postroom']} / {s['dovecot']}")


if __name__ == "__main__":
    main()
