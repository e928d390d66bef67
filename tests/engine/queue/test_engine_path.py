"""The whole outbound path in a real Engine: an authenticated client submits over implicit TLS, the SMTP
server hands remote recipients to the queue, and the queue delivers them to the loopback MX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosmtplib

from engine.config import Config, DeliverySettings, DNSSettings, parse_listen
from engine.runtime import Engine

from .conftest import HOSTNAME


async def test_submission_to_a_remote_domain_is_relayed(tmp_path: Path, zone: Any, mx: Any,
                                                        remote_port: int, eventually: Any) -> None:
    data = tmp_path / "data"
    config = Config(data_dir=data, hostname=HOSTNAME,
                    listen={"submissions": parse_listen("127.0.0.1:0")},
                    dns=DNSSettings(nameservers=(("127.0.0.1", zone.port),), timeout=1.0),
                    delivery=DeliverySettings(remote_port=remote_port, retry_schedule=(0.5,)))
    engine = Engine(data, config=config)
    engine.open()
    engine.directory.add_domain("home.test")
    engine.directory.add_account("alice@home.test", "correct horse")
    await engine.start()
    try:
        host, port = engine.address_of("submissions")
        await aiosmtplib.send(
            b"From: alice@home.test\r\nTo: a@accept.test\r\nSubject: out\r\n\r\nhello\r\n",
            sender="alice@home.test", recipients=["a@accept.test"], hostname=host, port=port, use_tls=True,
            validate_certs=False, username="alice@home.test", password="correct horse", timeout=10)
        await eventually(lambda: mx.recipients() == ["a@accept.test"], what="the relayed message")
        events = await eventually(
            lambda: (e := [x.event for x in engine.log.query(address="a@accept.test", oldest_first=True)])
            and {"received", "relayed"} <= set(e) and e, what="the log entries")
        assert events == ["received", "relayed"]
        assert engine.queue.count() == 0
    finally:
        await engine.stop()
        engine.close()
