"""POP3 RETR throughput: Postroom against Dovecot on copies of the same Maildir.

    .venv/bin/python bench/pop3_vs_dovecot.py [--messages 1000] [--size 20480] [--runs 5]

Builds one account with N messages of SIZE octets in Postroom's store, copies its Maildir for Dovecot
(started from /work/shared/peers/dovecot.conf.in on free loopback ports, stopped by PID), and times, with
the same raw-socket client for both, a session that logs in and runs RETR 1..N: once strictly one command
at a time (latency-bound, what poplib and fetchmail do) and once pipelined (RFC 2449 PIPELINING).
Postroom runs in a child process so client and server do not share one interpreter.  Every body is checked
byte for byte against the other server's.  Disk timings vary between runs: compare the ratio, measured in
one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOVECOT_TEMPLATE = Path("/work/shared/peers/dovecot.conf.in")
USER_LOCAL = "bench"
DOMAIN = "example.test"
ADDRESS = f"{USER_LOCAL}@{DOMAIN}"
PASSWORD = "bench-password"
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Polls with a deadline until something accepts on the port (or the process dies)."""
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


def make_message(i: int, size: int, rng: random.Random) -> bytes:
    """A plain-text message of about `size` octets with CRLF lines, some starting with "."."""
    head = (f"From: sender{i}@remote.test\r\nTo: {ADDRESS}\r\nSubject: benchmark message {i}\r\n"
            f"Message-ID: <bench-{i}@remote.test>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    lines = []
    total = len(head)
    n = 0
    while total < size:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(70))
        line = ("." if n % 17 == 0 else "") + word
        lines.append(line.encode() + b"\r\n")
        total += len(lines[-1])
        n += 1
    return head + b"".join(lines)


# --- the client (same code for both servers) --------------------------------------------------------

class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.line()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def multi(self) -> bytes:
        """A multi-line body after its status line, still byte-stuffed, without the terminator."""
        status = self.line()
        if not status.startswith(b"+OK"):
            raise RuntimeError(status.decode(errors="replace"))
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return b""
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                out = bytes(self.buf[: i + 2])
                del self.buf[: i + 5]
                return out
            start = max(0, len(self.buf) - 4)
            self._fill()

    def cmd(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def login(self, user: str, password: str) -> None:
        for reply in (self.cmd(f"USER {user}"), self.cmd(f"PASS {password}")):
            if not reply.startswith(b"+OK"):
                raise RuntimeError(reply.decode(errors="replace"))

    def quit(self) -> None:
        self.cmd("QUIT")
        self.sock.close()


def unstuff(body: bytes) -> bytes:
    data = body.replace(b"\r\n..", b"\r\n.")
    return data[1:] if data.startswith(b"..") else data


def retr_sequential(port: int, user: str, n: int) -> tuple[float, list[bytes]]:
    c = Client(port)
    c.login(user, PASSWORD)
    bodies = []
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        c.sock.sendall(f"RETR {i}\r\n".encode())
        bodies.append(c.multi())
    elapsed = time.perf_counter() - t0
    c.quit()
    return elapsed, bodies


def retr_pipelined(port: int, user: str, n: int) -> float:
    c = Client(port)
    c.login(user, PASSWORD)
    t0 = time.perf_counter()
    c.sock.sendall(b"".join(f"RETR {i}\r\n".encode() for i in range(1, n + 1)))
    for _ in range(n):
        c.multi()
    elapsed = time.perf_counter() - t0
    c.quit()
    return elapsed


# --- the servers ------------------------------------------------------------------------------------

def build_postroom(data_dir: Path, messages: list[bytes]) -> Path:
    """Creates the account and delivers the messages; returns the account's Maildir."""
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
    box = store.mailbox(ADDRESS)
    for data in messages:
        box.append("INBOX", data)
    closer = getattr(store, "close", None)
    if callable(closer):
        closer()
    directory.close()
    return config.mail_dir / DOMAIN / USER_LOCAL


def serve_postroom(data_dir: Path, port: int) -> None:
    """Child-process mode: run the pop3 listener until SIGTERM."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from argon2 import PasswordHasher

    from engine.auth import AuthFailureLimiter, Directory
    from engine.config import Config
    from engine.events import EventBus
    from engine.pop3.server import POP3Listener
    from engine.services import Services
    from engine.store import MailStore

    async def main() -> None:
        config = Config(data_dir=data_dir, hostname="bench.example.test")
        events = EventBus()
        directory = Directory(config.state_db,
                              hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        store = MailStore(config.mail_dir, notify=events.publish, hostname="bench.example.test")
        services = Services(config=config, directory=directory, store=store, events=events,
                            limiter=AuthFailureLimiter())
        listener = POP3Listener(services, "pop3")
        await listener.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await listener.stop(1.0)

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
    # The same message files; the index.sqlite beside them is Postroom's and left out.
    shutil.copytree(maildir, target, ignore=shutil.ignore_patterns("index.sqlite*", "*.sqlite*"))
    subprocess.run(["chown", "-R", "65534:65534", str(root / "mail")], check=True)
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(pop3_port, proc, "dovecot")
    return proc, pop3_port


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
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--size", type=int, default=20 * 1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_postroom(Path(args.serve[0]), int(args.serve[1]))
        return
    if shutil.which("dovecot") is None:
        raise SystemExit("dovecot is not installed: apt-get install -y dovecot-pop3d")

    rng = random.Random(1939)
    messages = [make_message(i, args.size, rng) for i in range(args.messages)]
    with tempfile.TemporaryDirectory(prefix="pop3bench-") as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)
        t0 = time.perf_counter()
        maildir = build_postroom(tmpdir / "postroom", messages)
        print(f"stored {args.messages} messages of ~{args.size} octets in {time.perf_counter() - t0:.1f} s")

        port = free_port()
        ours = subprocess.Popen([sys.executable, __file__, "--serve", str(tmpdir / "postroom"), str(port)],
                                cwd=ROOT)
        dovecot, dport = None, 0
        try:
            wait_for_port(port, ours, "postroom")
            dovecot, dport = start_dovecot(tmpdir / "dovecot", maildir)
            results: dict[str, dict[str, list[float]]] = {"postroom": {"seq": [], "pipe": []},
                                                          "dovecot": {"seq": [], "pipe": []}}
            targets = {"postroom": (port, ADDRESS), "dovecot": (dport, USER_LOCAL)}
            bodies: dict[str, list[bytes]] = {}
            for run in range(args.runs + 1):          # run 0 warms caches and is not counted
                for name, (p, user) in targets.items():
                    seq, got = retr_sequential(p, user, args.messages)
                    pipe = retr_pipelined(p, user, args.messages)
                    bodies[name] = got
                    if run:
                        results[name]["seq"].append(seq)
                        results[name]["pipe"].append(pipe)
            same = sum(unstuff(a) == unstuff(b) for a, b in zip(bodies["postroom"], bodies["dovecot"],
                                                                  strict=True))
            original = sum(unstuff(a) == m for a, m in zip(bodies["postroom"], messages, strict=True))
        finally:
            stop(ours)
            if dovecot is not None:
                stop(dovecot)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nRETR 1..{args.messages} of {args.size} octets, median of {args.runs} runs "
          f"(loopback, {os.cpu_count()} cores, load average {load})")
    print(f"{'server':10} {'one at a time':>15} {'msg/s':>8} {'pipelined':>12} {'msg/s':>8}")
    for name in ("postroom", "dovecot"):
        seq = statistics.median(results[name]["seq"])
        pipe = statistics.median(results[name]["pipe"])
        print(f"{name:10} {seq * 1000:12.0f} ms {args.messages / seq:8.0f} {pipe * 1000:9.0f} ms "
              f"{args.messages / pipe:8.0f}")
    seq_ratio = statistics.median(results["postroom"]["seq"]) / statistics.median(results["dovecot"]["seq"])
    pipe_ratio = statistics.median(results["postroom"]["pipe"]) / statistics.median(results["dovecot"]["pipe"])
    print(f"\npostroom / dovecot time: one at a time {seq_ratio:.2f}x, pipelined {pipe_ratio:.2f}x")
    print(f"bodies identical to Dovecot's: {same}/{args.messages}; to the delivered bytes: "
          f"{original}/{args.messages}")


if __name__ == "__main__":
    main()
