"""SMTP reception throughput: Postroom's MX beside Postfix's own path and a bare aiosmtpd Maildir handler.

Postfix's `smtp-source` (one connection per message: HELO, MAIL, RCPT, DATA, QUIT) sends N messages of
`--size` octets with 20 and with 1 concurrent sessions; the clock runs from its start until the last
message is in the server's Maildir (new/ or cur/).  The servers, each in its own process(es) on loopback:

- postroom:  engine.smtp SMTPListener (role "smtp") with the real Directory, MailStore and DeliveryLog,
             and the delivery agent process the engine starts by default ([delivery] local_process:
             the SMTP sessions' deliveries are written and indexed there), so every message is parsed, checked, given a Received: line, fsynced (file and directory),
             indexed (durable SQLite commit) and logged before its 250.  On the engine's own loop
             (engine/eventloop.py: uvloop; `POSTROOM_EVENT_LOOP=asyncio` for the standard one).
- postfix:   a throwaway Postfix instance (`postfix -c DIR start`, its own main.cf/master.cf, queue and
             data directories in a temp dir, no chroot, smtpd on a free loopback port) delivering through
             virtual(8) into a Maildir: smtpd -> cleanup (queue file fsynced before the 250) -> qmgr ->
             virtual (Maildir file fsynced).  Needs root and the `postfix` user (Debian's package makes it);
             started and stopped with its own commands, its master found by its PID file.
- aiosmtpd:  aiosmtpd's SMTP with a handle_DATA that writes the message (LF line ends, as stored) to
             tmp/, fsyncs it, renames it into new/ and fsyncs new/ (on a worker thread, so sessions
             overlap) - the simplest durable server one could write with the library we build on.
- floor:     not a mail server (only with --servers ...,floor): a bare asyncio.Protocol that checks
             nothing and, on the loop itself, writes, fsyncs, renames, fsyncs new/ and commits one row to
             a SQLite WAL index (synchronous=FULL) before each 250 - the ceiling for any Python design that
             keeps issue 2's order of durable steps, on the same disk in the same run.  On the engine's
             loop, as postroom; aiosmtpd runs on asyncio's own loop, as its documentation starts it.

The machine is shared and disk timings vary by ±30% between runs, so every round runs every server
back to back (the order rotates between rounds), each in a fresh directory under one work directory
marked `chattr +T` (see spread_directories) and kept until the end, and the table shows medians over
rounds with their range, the ratios of Postroom to each other server computed per round (then the
median), the server CPU per message (Postfix: master and all its children) and the load average
before and after.

    .venv/bin/python bench/smtp_throughput.py [--messages 5000] [--size 4096] [--sessions 20,1] [--rounds 3]
                                              [--servers postroom,postfix,aiosmtpd[,floor]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_deliver import NaiveMaildir  # beside this file: one durable Maildir writer for both benches

SMTP_SOURCE = "/usr/sbin/smtp-source"
RECIPIENT = "bench@example.test"
SENDER = "sender@source.test"


# --- the servers (run as `--serve <kind>` in a child process) ------------------------------------------


async def serve_postroom(data: Path, port_file: Path) -> None:
    import dataclasses

    from engine.auth import AuthFailureLimiter, Directory
    from engine.config import Config, Limits
    from engine.events import EventBus
    from engine.log import DeliveryLog
    from engine.services import Services
    from engine.smtp.server import SMTPListener
    from engine.store import MailStore
    from engine.store.agent import DeliveryAgent

    config = Config(data_dir=data, hostname="mx.example.test",
                    limits=dataclasses.replace(Limits(), connections_per_ip=1000))
    events = EventBus()
    directory = Directory(config.state_db)
    if not directory.is_local_domain("example.test"):
        directory.add_domain("example.test")
        directory.add_account(RECIPIENT, "bench-password")
    store = MailStore(config.mail_dir, notify=events.publish, hostname=config.hostname)
    store.create_account(RECIPIENT)
    log = DeliveryLog(config.state_db, events)
    services = Services(config=config, directory=directory, store=store, events=events,
                        limiter=AuthFailureLimiter(), log=log)
    listener = SMTPListener(services, "smtp")
    # As the engine runs it by default ([delivery] local_process): a delivery agent process beside it.
    agent = DeliveryAgent(config.mail_dir, config.hostname, events.publish)
    await agent.start()
    store.attach_agent(agent)
    await listener.start("127.0.0.1", 0)
    await _run_until_signal(port_file, listener.address[1])
    await listener.stop(1.0)
    store.attach_agent(None)
    await agent.close()
    store.close()
    log.close()
    directory.close()


def maildir_of(data: Path, kind: str) -> Path:
    if kind == "postroom":
        return data / "mail" / "example.test" / "bench"
    return data / "maildir"


async def serve_aiosmtpd(data: Path, port_file: Path) -> None:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    write = NaiveMaildir(maildir_of(data, "aiosmtpd")).deliver

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            await asyncio.to_thread(write, content)
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), hostname="mx.example.test"), "127.0.0.1", 0)
    await _run_until_signal(port_file, server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def serve_floor(data: Path, port_file: Path) -> None:
    """The least a Python server can do and still answer 250 only as issue 2 item 5 orders: a bare
    asyncio.Protocol that checks nothing and parses only the verb, and at the end of DATA, on the loop
    itself (no thread hand-offs), writes the message to tmp/, fsyncs it, renames it into new/, fsyncs
    new/ and commits one row to a SQLite WAL index with synchronous=FULL.  Not a mail server: the ceiling
    for any Python design that keeps that order, measured on the same disk in the same run."""
    import sqlite3

    maildir = NaiveMaildir(maildir_of(data, "floor"))
    index = sqlite3.connect(data / "index.sqlite", isolation_level=None)
    index.execute("PRAGMA journal_mode=WAL")
    index.execute("PRAGMA synchronous=FULL")
    index.execute("CREATE TABLE IF NOT EXISTS messages (uid INTEGER PRIMARY KEY, base TEXT, size INTEGER)")

    def store(content: bytes) -> None:
        name = maildir.deliver(content)
        index.execute("BEGIN IMMEDIATE")
        index.execute("INSERT INTO messages (base, size) VALUES (?, ?)", (name, len(content)))
        index.execute("COMMIT")

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)   # uvloop's has the API, not the class
            self.buffer = b""
            self.in_data = False
            self.transport.write(b"220 mx.example.test ESMTP\r\n")

        def data_received(self, chunk: bytes) -> None:
            self.buffer += chunk
            while True:
                if self.in_data:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    store(self.buffer[:end + 2])
                    self.buffer = self.buffer[end + 5:]
                    self.in_data = False
                    self.transport.write(b"250 2.0.0 OK\r\n")
                    continue
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return
                verb = self.buffer[:4].upper()
                self.buffer = self.buffer[end + 2:]
                if verb == b"DATA":
                    self.in_data = True
                    self.transport.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    self.transport.write(b"221 2.0.0 Bye\r\n")
                    self.transport.close()
                    return
                else:
                    self.transport.write(b"250 2.0.0 OK\r\n")

    server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", 0)
    await _run_until_signal(port_file, server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    index.close()


async def _run_until_signal(port_file: Path, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port_file.write_text(str(port))
    await stop.wait()


# --- Postfix: a throwaway instance -------------------------------------------------------------------

POSTFIX = "/usr/sbin/postfix"
# Services the MX path needs, none chrooted (the fifth column): smtpd on our port, cleanup, qmgr, the
# address rewriter, bounce/defer/trace, virtual(8) and the helpers smtpd and qmgr call.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:{root}/conf/vmailbox
virtual_mailbox_base = {root}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
biff = no
"""


def postfix_unavailable() -> str | None:
    """Why the Postfix column cannot run here, or None."""
    import pwd

    if not Path(POSTFIX).exists():
        return f"{POSTFIX} is missing (apt-get install postfix)"
    if os.geteuid() != 0:
        return "a Postfix instance needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no `postfix` user (the Debian package creates it)"
    return None


class PostfixInstance:
    """`postfix -c <root>/conf`: its own queue, data directory, log file and Maildir, all under `root`."""

    def __init__(self, root: Path) -> None:
        import pwd

        self.root = root
        self.conf = root / "conf"
        self.port = free_port()
        self.master_pid: int | None = None
        postfix = pwd.getpwnam("postfix")
        nobody = pwd.getpwnam("nobody")       # virtual(8) writes mail as an unprivileged uid
        os.chmod(root, 0o755)                 # mkdtemp's 0700 would keep postfix and nobody out
        for sub in ("conf", "queue", "data", "mail"):
            (root / sub).mkdir()
        os.chown(root / "data", postfix.pw_uid, postfix.pw_gid)
        os.chown(root / "mail", nobody.pw_uid, nobody.pw_gid)
        (self.conf / "main.cf").write_text(MAIN_CF.format(root=root, uid=nobody.pw_uid, gid=nobody.pw_gid))
        (self.conf / "master.cf").write_text(MASTER_CF.format(port=self.port))
        (self.conf / "vmailbox").write_text(f"{RECIPIENT} example.test/bench/\n")   # trailing "/": Maildir

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "example.test" / "bench"

    def _command(self, *args: str) -> None:
        done = subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.root / "maillog").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no maillog)"

    def start(self) -> None:
        self._command("start")
        pid_file = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.master_pid = int(pid_file.read_text().split()[0])
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not answer on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """`postfix stop`, then waits (bounded) for our master to be gone; `postfix abort` if it lingers."""
        pid = self.master_pid
        if pid is None:
            return
        try:
            self._command("stop")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"  {exc}", file=sys.stderr)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            subprocess.run([POSTFIX, "-c", str(self.conf), "abort"], capture_output=True, timeout=60)
        self.master_pid = None

    def cpu_seconds(self) -> float:
        """The master's CPU, its reaped children's, and that of the children still running."""
        if self.master_pid is None:
            return 0.0
        return cpu_seconds(self.master_pid, children=True) + sum(map(cpu_seconds, children_of(self.master_pid)))


# --- the driver ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count_new(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur"))
    except FileNotFoundError:
        return 0


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time a process has used so far (Linux /proc; with `children`, also that of its
    children it has waited for), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of(pid: int) -> list[int]:
    """The running processes whose parent is `pid` (Linux /proc)."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class PythonServer:
    """A server of this file (`--serve postroom|aiosmtpd|floor`) in a child process."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.data = root / "data"
        self.data.mkdir()
        self.port_file = root / "port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def maildir(self) -> Path:
        return maildir_of(self.data, self.kind)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", self.kind, "--data", str(self.data),
                                      "--port-file", str(self.port_file)])
        deadline = time.monotonic() + 30
        while not self.port_file.exists() or not self.port_file.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} server did not start")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())

    def cpu_seconds(self) -> float:
        """The server's CPU and its children's (Postroom's delivery agent)."""
        if self.proc is None:
            return 0.0
        return cpu_seconds(self.proc.pid) + sum(map(cpu_seconds, children_of(self.proc.pid)))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def run_one(kind: str, messages: int, size: int, sessions: int, max_seconds: float,
            parent: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-{sessions}-", dir=parent))
    server: PythonServer | PostfixInstance
    server = PostfixInstance(work) if kind == "postfix" else PythonServer(kind, work)
    try:
        server.start()
        port = server.port
        maildir = server.maildir
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        source = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
                                 "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=max_seconds)
        sent = time.perf_counter()
        end = time.monotonic() + max_seconds
        while count_new(maildir) < messages and time.monotonic() < end:
            time.sleep(0.005)
        stored = count_new(maildir)
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
        if source.returncode != 0:
            print(f"  smtp-source ({kind}) said: {source.stderr.strip()[:300]}", file=sys.stderr)
        return {"kind": kind, "sessions": sessions, "seconds": elapsed, "source_seconds": sent - started,
                "stored": stored, "rate": stored / elapsed if elapsed else 0.0,
                "cpu_ms": 1000 * cpu / stored if stored else 0.0}
    finally:
        server.stop()


def spread_directories(parent: Path) -> None:
    """Marks `parent` as the top of a directory hierarchy (chattr +T, ext2/3/4), so each run's directory
    gets block groups of its own instead of sharing /tmp's with every test suite on a shared machine.

    Without a journal, ext4 skips inodes freed in the last few seconds (minutes, while their inode table
    block is dirty) one by one when it allocates a new one; measured here, other programs' deleted temp
    files made each file creation in /tmp several times dearer, for every server alike.  Best effort:
    other file systems have no such flag and lose nothing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["chattr", "+T", str(parent)], capture_output=True, timeout=10, check=False)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sessions", default="20,1", help="comma-separated session counts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--servers", default="postroom,postfix,aiosmtpd", help="comma-separated")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the servers write (default: a temp dir)")
    parser.add_argument("--serve", choices=tuple(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        if args.serve == "aiosmtpd":
            asyncio.run(SERVERS[args.serve](args.data, args.port_file))
        else:
            from engine.eventloop import run

            run(SERVERS[args.serve](args.data, args.port_file))
        return 0

    if not Path(SMTP_SOURCE).exists():
        print(f"{SMTP_SOURCE} is missing: apt-get install postfix (it ships smtp-source)", file=sys.stderr)
        return 2
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = set(kinds) - {"postfix", *SERVERS}
    if unknown:
        print(f"unknown servers: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if "postfix" in kinds and (why := postfix_unavailable()) is not None:
        print(f"Postfix column skipped: {why}", file=sys.stderr)
        kinds.remove("postfix")
    counts = [int(s) for s in args.sessions.split(",") if s.strip()]
    load_before = load_average()
    print(f"SMTP reception: {args.messages} messages of {args.size} octets via smtp-source, one connection "
          f"per message, clock stops when the last is in the Maildir; {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPUs, load average before: {load_before}")
    from engine.eventloop import loop_kind

    print(f"postroom and floor on {loop_kind()}, aiosmtpd on asyncio")
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    ok = True
    # Every run's files stay until the end: deleting thousands of files just before the next server
    # runs would tax its file creations (ext4 without a journal skips recently freed inodes one by one).
    parent = Path(tempfile.mkdtemp(prefix="smtp-bench-", dir=args.dir))
    os.chmod(parent, 0o711)       # Postfix's daemons (user postfix) and virtual(8) (nobody) pass through
    spread_directories(parent)
    try:
        for rnd in range(args.rounds):
            for sessions in counts:
                shift = rnd % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:     # rotate who goes first
                    r = run_one(kind, args.messages, args.size, sessions, args.max_seconds, parent)
                    results.setdefault((kind, sessions), []).append(r)
                    print(f"  round {rnd + 1} {kind:<9} {sessions:>2} sessions: {r['rate']:6.0f} msg/s "
                          f"{r['stored']:>6} stored  {r['cpu_ms']:5.2f} CPU ms/msg  load {load_average()}",
                          flush=True)
                    ok = ok and r["stored"] == args.messages
    finally:
        shutil.rmtree(parent, ignore_errors=True)

    print()
    print(f"{'server':<10}{'sessions':>9}{'msg/s':>8}{'range':>13}{'CPU ms/msg':>12}")
    for sessions in counts:
        for kind in kinds:
            rates = sorted(r["rate"] for r in results[(kind, sessions)])
            cpu = statistics.median(r["cpu_ms"] for r in results[(kind, sessions)])
            print(f"{kind:<10}{sessions:>9}{statistics.median(rates):>8.0f}"
                  f"{f'{rates[0]:.0f}-{rates[-1]:.0f}':>13}{cpu:>12.2f}")
    if "postroom" in kinds:
        print()
        for other in (k for k in kinds if k != "postroom"):
            for sessions in counts:
                mine, theirs = results[("postroom", sessions)], results[(other, sessions)]
                ratios = sorted(a["rate"] / b["rate"] for a, b in zip(mine, theirs, strict=True) if b["rate"])
                if ratios:
                    print(f"postroom / {other:<9} {sessions:>2} sessions: {statistics.median(ratios):.2f}x "
                          f"median of rounds ({ratios[0]:.2f}-{ratios[-1]:.2f})")
    print(f"load average before: {load_before}; after: {load_average()}")
    return 0 if ok else 1


SERVERS = {"postroom": serve_postroom, "aiosmtpd": serve_aiosmtpd, "floor": serve_floor}

if __name__ == "__main__":
    sys.exit(main())
