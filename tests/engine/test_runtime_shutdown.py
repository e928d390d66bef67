"""Shutting the engine thread down while a start is still in flight (the desktop's quit right after launch)
closes every listener that start binds: none is left open behind a closed loop."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from engine.config import ListenAddress, parse_listen
from engine.events import Event, ListenerChanged
from engine.runtime import Engine, EngineThread


def refuses(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def test_shutdown_during_start_closes_the_listeners_that_start_bound(tmp_path: Path) -> None:
    listen: dict[str, ListenAddress | None] = {"smtp": ListenAddress("127.0.0.1", 0),
                                               "submission": ListenAddress("127.0.0.1", 0)}
    engine = Engine(tmp_path, listen=listen)
    runner = EngineThread(engine)
    first_bound = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, ListenerChanged) and event.state == "running":
            first_bound.set()

    engine.events.subscribe(on_event)
    runner.start()
    started = runner.submit(engine.start())
    try:
        assert first_bound.wait(30), "no listener came up"
    finally:
        runner.shutdown()                  # the submission listener and the queue are usually still starting

    assert started.done()
    states = {s.service: s for s in started.result()}
    addresses = [parse_listen(states[service].address) for service in listen]
    assert all(a is not None and refuses((a.host, a.port)) for a in addresses)
    assert {s.service: s.state for s in engine.status() if s.service in listen} == {
        "smtp": "stopped", "submission": "stopped"}
