"""Garbage made on the engine's threads is collected on the GUI thread while the window exists.

PySide6 crashed when a collection triggered on another thread freed a cycle holding Qt wrappers; the
desktop tests run under the same collector the app installs (conftest.py), so these check it directly.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from desktop.collector import GuiThreadCollector

freed_in: list[threading.Thread] = []


class Cycle:
    """Refers to itself, so only the cyclic collector can free it; says on which thread that happened."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        freed_in.append(threading.current_thread())


def make_garbage_elsewhere() -> None:
    """Cycles dropped on a worker thread, more of them than the youngest generation's threshold: with
    automatic collection on, the worker itself would free most of them while it makes the rest."""
    for _ in range(gc.get_threshold()[0] * 3):
        Cycle()


def test_automatic_collection_is_off_while_the_gui_collects() -> None:
    assert not gc.isenabled()


def test_a_cycle_dropped_on_another_thread_is_freed_on_the_gui_thread(qtbot: Any) -> None:
    freed_in.clear()
    worker = threading.Thread(target=make_garbage_elsewhere)
    worker.start()
    worker.join()
    assert freed_in == [], "the worker thread's allocations collected nothing"
    qtbot.waitUntil(lambda: bool(freed_in), timeout=5000)
    assert set(freed_in) == {threading.main_thread()}


def test_stopping_hands_collection_back_to_python(qapp: Any) -> None:
    gc.enable()                                   # as in a process where no collector runs yet
    try:
        collector = GuiThreadCollector(qapp)
        assert not gc.isenabled()
        collector.stop()
        assert gc.isenabled()
    finally:
        gc.disable()                              # the session's collector goes on
