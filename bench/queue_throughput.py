"""Outbound throughput: N messages of `--size` octets from the queue to a loopback sink that accepts all.

The sink is Postfix's `smtp-sink` (stores nothing, about 12,000 msg/s here) on 127.0.0.1; a loopback DNS
zone (dnslib) gives the recipient domain an MX pointing at it.  Measured in one invocation, same disk:

- plain aiosmtplib:  `SMTP.sendmail` in a loop over one connection, and over `--connections` connections
                     in parallel; no spool, no database, no DNS: the client-side ceiling.
- postroom queue:    `Queue.enqueue` (spool file fsynced, rows committed) for every message, with the
                     scheduler running, until the queue is empty: DNS, the attempt-started commit,
                     pipelined SMTP over reused connections, the outcome commit, the delivery log row,
                     spool removal.  Default concurrency: `--connections` per destination.
- postfix:           a private Postfix instance (queue in a temp dir, relayhost = the sink) fed by
                     `smtp-source` over SMTP until `postqueue -p` is empty.  Its clock includes SMTP
                     reception, ours starts at enqueue(); skipped when Postfix cannot be started here.

    .venv/bin/python bench/queue_throughput.py [--messages 1000] [--size 4096] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
DOMAIN = "sink.test"
SENDER = "bench@source.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(size: int, n: int) -> bytes:
    head = (f"From: {SENDER}\r\nTo: user{n}@{DOMAIN}\r\nSubject: bench {n}\r\n"
            f"Message-ID: <bench{n}@source.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


class Sink:
    """smtp-sink on 127.0.0.1 (or an aiosmtpd fallback in a thread when Postfix tools are missing)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.controller: Any = None

    def start(self) -> str:
        if os.path.exists(SMTP_SINK):
            args = [SMTP_SINK, "-u", "nobody", "-m", "1000", f"127.0.0.1:{self.port}", "256"]
            if os.geteuid() != 0:
                args[1:3] = []
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return "smtp-sink"
                time.sleep(0.02)
            raise RuntimeError("smtp-sink did not start")
        from aiosmtpd.controller import Controller

        class Accept:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                return "250 OK"

        self.controller = Controller(Accept(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return "aiosmtpd sink"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        if self.controller is not None:
            self.controller.stop()


async def plain_aiosmtplib(port: int, messages: list[bytes], connections: int) -> float:
    import aiosmtplib

    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, m in enumerate(messages):
        queue.put_nowait((i, m))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench.test")
        await client.connect()
        try:
            while True:
                try:
                    i, m = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.sendmail(SENDER, [f"user{i}@{DOMAIN}"], m)
        finally:
            await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - start


async def postroom_queue(sink_port: int, messages: list[bytes], connections: int, work: Path) -> float:
    from dnslib import RR
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    from engine.auth import Directory
    from engine.config import Config, DeliverySettings, DNSSettings
    from engine.events import EventBus
    from engine.log import DeliveryLog
    from engine.queue import Queue
    from engine.services import Services
    from engine.store import MailStore

    records = RR.fromZone(f"{DOMAIN}. 300 IN MX 10 mx.{DOMAIN}.\nmx.{DOMAIN}. 300 IN A 127.0.0.1")

    class Zone(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            for rr in records:
                if rr.rname == request.q.qname and rr.rtype == request.q.qtype:
                    reply.add_answer(rr)
            return reply

    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    dns = DNSServer(Zone(), address="127.0.0.1", port=0, logger=quiet)
    dns.start_thread()
    data = work / "postroom"
    data.mkdir()
    config = Config(data_dir=data, hostname="out.bench.test",
                    dns=DNSSettings(nameservers=(("127.0.0.1", dns.server.server_address[1]),)),
                    delivery=DeliverySettings(remote_port=sink_port, concurrency_per_domain=connections))
    events = EventBus()
    directory = Directory(config.state_db)
    store = MailStore(config.mail_dir, hostname=config.hostname)
    dlog = DeliveryLog(config.state_db, events)
    services = Services(config=config, directory=directory, store=store, events=events, limiter=None, log=dlog)
    queue = Queue(services)
    await queue.start()
    try:
        start = time.perf_counter()
        pending = list(enumerate(messages))

        async def enqueuer() -> None:          # like 20 SMTP sessions handing messages over
            while pending:
                i, m = pending.pop()
                await queue.enqueue(SENDER, [f"user{i}@{DOMAIN}"], m)

        await asyncio.gather(*(enqueuer() for _ in range(20)))
        enqueued = time.perf_counter() - start
        while queue.count():
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        relayed = dlog.count(status="relayed")
        if relayed != len(messages):
            raise RuntimeError(f"only {relayed} of {len(messages)} relayed")
        print(f"  (postroom: all {len(messages)} enqueued after {enqueued:.2f}s)")
        return elapsed
    finally:
        await queue.stop()
        queue.close()
        dlog.close()
        store.close()
        directory.close()
        dns.server.shutdown()
        dns.server.server_close()


def postfix_relay(sink_port: int, count: int, size: int, work: Path) -> float | None:
    """A throwaway Postfix instance relaying everything to the sink; None when it cannot run here."""
    if not (shutil.which("postfix") and os.path.exists(SMTP_SOURCE)) or os.geteuid() != 0:
        return None
    conf = work / "postfix-conf"
    conf.mkdir()
    queue_dir = work / "postfix-queue"
    data_dir = work / "postfix-data"
    queue_dir.mkdir()
    data_dir.mkdir()
    shutil.chown(data_dir, user="postfix")
    os.chmod(work, 0o755)                 # the postfix user must reach its data directory
    port = free_port()
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    master = (conf / "master.cf").read_text()
    master = master.replace("\nsmtp      inet", f"\n127.0.0.1:{port}      inet", 1)
    if f"127.0.0.1:{port}" not in master:
        print("  (postfix skipped: no smtp inet service in /etc/postfix/master.cf)")
        return None
    (conf / "master.cf").write_text(master)
    (conf / "main.cf").write_text("\n".join([
        "compatibility_level = 3.6", f"queue_directory = {queue_dir}", f"data_directory = {data_dir}",
        "myhostname = postfix.bench.test", "mydestination =", "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4", "mynetworks = 127.0.0.0/8", f"relayhost = [127.0.0.1]:{sink_port}",
        "smtpd_relay_restrictions = permit_mynetworks, reject", "maillog_file = /dev/stdout",
        "default_destination_concurrency_limit = 20", "smtp_tls_security_level = none",
        "alias_maps =", "alias_database =", "local_recipient_maps =", "biff = no",
        "multi_instance_enable = no", "shlib_directory = /usr/lib/postfix",
        "daemon_directory = /usr/lib/postfix/sbin", "command_directory = /usr/sbin",
        "meta_directory = /etc/postfix", ""]))
    env = {**os.environ, "MAIL_CONFIG": str(conf)}
    try:
        subprocess.run(["postfix", "-c", str(conf), "check"], env=env, check=True, capture_output=True)
        subprocess.run(["postfix", "-c", str(conf), "start"], env=env, check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else ""
        print(f"  (postfix skipped: {(output.strip().splitlines() or [str(exc)])[-1]})")
        return None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        start = time.perf_counter()
        subprocess.run([SMTP_SOURCE, "-s", "20", "-m", str(count), "-l", str(size), "-f", SENDER,
                        "-t", f"user@{DOMAIN}", f"127.0.0.1:{port}"], check=True, capture_output=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            out = subprocess.run(["postqueue", "-c", str(conf), "-p"], env=env, capture_output=True, text=True)
            if "Mail queue is empty" in out.stdout:
                return time.perf_counter() - start
            time.sleep(0.05)
        print("  (postfix did not empty its queue within 300s)")
        return None
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], env=env, capture_output=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--no-postfix", action="store_true")
    args = parser.parse_args()
    messages = [message(args.size, i) for i in range(args.messages)]
    sink = Sink()
    kind = sink.start()
    results: list[tuple[str, float | None]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="postroom-bench-") as tmp:
            work = Path(tmp)
            print(f"{args.messages} messages of {args.size} bytes to {kind} on 127.0.0.1:{sink.port}")
            results.append(("plain aiosmtplib, 1 connection",
                            await plain_aiosmtplib(sink.port, messages, 1)))
            results.append((f"plain aiosmtplib, {args.connections} connections",
                            await plain_aiosmtplib(sink.port, messages, args.connections)))
            results.append((f"postroom queue, {args.connections} per destination",
                            await postroom_queue(sink.port, messages, args.connections, work)))
            if not args.no_postfix:
                results.append(("postfix (smtp-source -> queue -> sink)",
                                await asyncio.to_thread(postfix_relay, sink.port, args.messages, args.size, work)))
    finally:
        sink.stop()
    baseline = results[1][1]
    print(f"\n{'method':44} {'seconds':>8} {'msg/s':>8} {'vs plain x' + str(args.connections):>14}")
    for name, seconds in results:
        if seconds is None:
            print(f"{name:44} {'-':>8} {'-':>8} {'skipped':>14}")
            continue
        rate = args.messages / seconds
        ratio = (baseline / seconds) if baseline else 0.0
        print(f"{name:44} {seconds:8.2f} {rate:8.0f} {ratio:14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
