"""A queue scheduler in its own process, for the crash test (which SIGKILLs it mid-attempt).

Usage: run_queue.py DATA_DIR DNS_PORT REMOTE_PORT.  Prints "started" once the scheduler runs.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine.auth import Directory
from engine.config import Config, DeliverySettings, DNSSettings
from engine.events import EventBus
from engine.log import DeliveryLog
from engine.queue import Queue
from engine.services import Services
from engine.smtp.client import Timeouts
from engine.store import MailStore


async def main(data_dir: Path, dns_port: int, remote_port: int) -> None:
    config = Config(data_dir=data_dir, hostname="out.postroom.test",
                    dns=DNSSettings(nameservers=(("127.0.0.1", dns_port),), timeout=1.0),
                    delivery=DeliverySettings(remote_port=remote_port, retry_schedule=(0.5, 0.5)))
    events = EventBus()
    services = Services(config=config, directory=Directory(config.state_db),
                        store=MailStore(config.mail_dir, hostname=config.hostname), events=events, limiter=None,
                        log=DeliveryLog(config.state_db, events))
    queue = Queue(services, timeouts=Timeouts.uniform(5.0), poll_interval=0.1)
    await queue.start()
    print("started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    from engine.eventloop import run

    run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))     # on the engine's loop
