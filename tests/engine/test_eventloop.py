"""The engine's loop: uvloop (a dependency on every platform Postroom is built for), the standard selector
loop when the environment asks for it; tests run on the same loop as the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.eventloop import ENVIRONMENT, loop_kind, loop_name, new_event_loop
from engine.runtime import Engine, EngineThread


def test_the_engine_loop_is_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    loop = new_event_loop()
    try:
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()


@pytest.mark.parametrize("value", ["asyncio", "Selector", " standard "])
def test_the_environment_can_ask_for_the_standard_loop(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENVIRONMENT, value)
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop) and loop_name(loop) == "asyncio"
    finally:
        loop.close()


async def test_async_tests_run_on_the_engine_loop() -> None:
    assert loop_name(asyncio.get_running_loop()) == loop_kind()


def test_an_engine_in_a_thread_runs_on_uvloop_whatever_the_global_policy(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """qasync installs a policy whose new loops are Qt loops; the engine's thread builds its own."""
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    thread = EngineThread(Engine(tmp_path, listen={}))
    thread.start()
    try:
        assert loop_name(thread.loop) == "uvloop"
        assert thread.submit(asyncio.sleep(0, "ran")).result(timeout=10) == "ran"
    finally:
        thread.shutdown()
