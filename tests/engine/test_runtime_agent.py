"""The engine starts its delivery agent process with the listeners and ends it when it stops; mail sent over
SMTP while it runs lands in the Maildir either way, and `[delivery] local_process = false` keeps the engine
in one process."""

from __future__ import annotations

import asyncio
import os
import smtplib
from pathlib import Path

import pytest

from engine.config import ListenAddress
from engine.runtime import Engine

ACCOUNT = "agent@example.test"


def _send_many(address: tuple[str, int], count: int, sessions: int) -> None:
    """`sessions` SMTP clients at once, so that deliveries overlap."""
    import concurrent.futures

    def one(i: int) -> None:
        with smtplib.SMTP(*address, timeout=30) as client:
            client.sendmail("someone@remote.test", [ACCOUNT],
                            f"Subject: overlap {i}\r\nMessage-ID: <{i}@remote.test>\r\n\r\nbody {i}\r\n")

    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        list(pool.map(one, range(count)))


@pytest.mark.parametrize("local_process", [True, False])
async def test_mail_over_smtp_lands_with_or_without_the_agent_and_the_agent_ends_with_the_engine(
        tmp_path: Path, local_process: bool) -> None:
    (tmp_path / "postroom.toml").write_text(
        f'hostname = "mx.example.test"\n[delivery]\nlocal_process = {str(local_process).lower()}\n')
    engine = Engine(tmp_path, listen={"smtp": ListenAddress("127.0.0.1", 0)})
    engine.open()
    engine.directory.add_domain("example.test")
    engine.directory.add_account(ACCOUNT, "a long password")
    await engine.start(strict=True)
    agent = engine._agent
    process = agent._process if agent is not None else None
    pid = process.pid if process is not None else None
    try:
        assert (pid is not None) == local_process
        await asyncio.to_thread(_send_many, engine.address_of("smtp"), 40, 8)
        inbox = engine.store.mailbox(ACCOUNT).messages("INBOX")
        assert len(inbox) == 40 and len({m.uid for m in inbox}) == 40
        maildir = engine.store.account_path(ACCOUNT) / "new"
        writers = {name.split("P", 1)[1].split("Q", 1)[0] for name in os.listdir(maildir)}
        assert writers == {str(pid if pid is not None else os.getpid())}
    finally:
        await engine.stop()
        engine.close()
    if process is not None:
        assert process.returncode is not None, "the delivery agent outlived the engine"


@pytest.mark.parametrize(("setting", "engine_default", "expected"), [
    (None, True, True),          # `postroom serve`, setting left out
    (None, False, False),        # the desktop app, setting left out
    (True, False, True),         # the settings ask for the agent: the desktop app runs one too
    (False, True, False),        # the settings refuse it: the headless server does without
])
async def test_the_setting_decides_and_when_left_out_the_embedding_does(
        tmp_path: Path, setting: bool | None, engine_default: bool, expected: bool) -> None:
    text = 'hostname = "mx.example.test"\n'
    if setting is not None:
        text += f"[delivery]\nlocal_process = {str(setting).lower()}\n"
    (tmp_path / "postroom.toml").write_text(text)
    engine = Engine(tmp_path, listen={"smtp": ListenAddress("127.0.0.1", 0)}, delivery_agent=engine_default)
    engine.open()
    await engine.start(strict=True)
    try:
        assert (engine._agent is not None) == expected
    finally:
        await engine.stop()
        engine.close()
