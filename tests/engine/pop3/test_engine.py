"""POP3 as the runtime starts it: the real Engine with its own settings, certificate and stores."""

from __future__ import annotations

import poplib
import ssl
from pathlib import Path

from engine.config import ListenAddress
from engine.runtime import Engine, EngineThread

from .conftest import message

ADDRESS = "carol@example.test"
PASSWORD = "carol-password"


def test_engine_serves_pop3s_and_pop3_with_stls(tmp_path: Path) -> None:
    listen: dict[str, ListenAddress | None] = {"pop3": ListenAddress("127.0.0.1", 0),
                                               "pop3s": ListenAddress("127.0.0.1", 0)}
    engine = Engine(tmp_path, listen=listen)
    runner = EngineThread(engine)
    runner.start()
    try:
        states = runner.submit(engine.start(strict=True)).result(30)
        assert {s.service: s.state for s in states}["pop3"] == "running"
        engine.directory.add_domain("example.test")
        engine.directory.add_account(ADDRESS, PASSWORD)
        engine.store.create_account(ADDRESS)
        data = message("via engine")
        runner.submit(engine.store.deliver([ADDRESS], data)).result(30)

        # pop3s with the engine's self-signed certificate (a client told to accept it, like curl -k).
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        client = poplib.POP3_SSL("127.0.0.1", engine.address_of("pop3s")[1], context=insecure, timeout=30)
        try:
            client.user(ADDRESS)
            client.pass_(PASSWORD)
            _, lines, _ = client.retr(1)
            assert b"\r\n".join(lines) + b"\r\n" == data
            client.dele(1)
            client.quit()
        finally:
            client.close()

        assert engine.store.mailbox(ADDRESS).messages("INBOX") == []
        # The plain port is up as well and offers STLS with the same certificate.
        plain = poplib.POP3("127.0.0.1", engine.address_of("pop3")[1], timeout=30)
        try:
            assert "STLS" in plain.capa()
            plain.stls(insecure)
            plain.quit()
        finally:
            plain.close()
    finally:
        runner.shutdown()
