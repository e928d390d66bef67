"""The bridge hands engine events to the GUI in batches: a burst costs a few slots, nothing is lost, and
what panels need (every new log row, engine states in order) survives the coalescing."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from desktop.bridge import EngineBridge, _Pending
from engine.events import (
    DeliveryLogged,
    DirectoryChanged,
    EngineStateChanged,
    MessageStored,
    QueueChanged,
)
from engine.runtime import EngineThread


def publish_from_engine_thread(thread: EngineThread, events: list[object]) -> None:
    """Publishes like the engine does: from its own thread, as fast as it can."""
    done = threading.Event()

    def run() -> None:
        for event in events:
            thread.engine.events.publish(event)  # type: ignore[arg-type]
        done.set()

    thread.call_soon(run)
    assert done.wait(10)


def test_a_burst_of_events_arrives_in_a_few_batches_with_every_log_row(qtbot: Any, bridge: EngineBridge,
                                                                       engine_thread: EngineThread) -> None:
    batches: list[list[object]] = []
    bridge.deliveryLogged.connect(batches.append)
    publish_from_engine_thread(engine_thread, [DeliveryLogged(n) for n in range(20_000)])
    qtbot.waitUntil(lambda: sum(len(b) for b in batches) == 20_000, timeout=10000)
    assert [row for batch in batches for row in batch] == list(range(20_000)), "all rows, in order"
    assert len(batches) <= 20, f"{len(batches)} emissions for one burst"


def test_repeats_are_coalesced_but_engine_states_keep_their_order(qtbot: Any, bridge: EngineBridge,
                                                                  engine_thread: EngineThread) -> None:
    states: list[str] = []
    queue_ids: list[object] = []
    stored: list[MessageStored] = []
    directory: list[bool] = []
    bridge.engineStateChanged.connect(states.append)
    bridge.queueChanged.connect(queue_ids.append)
    bridge.messageStored.connect(stored.append)
    bridge.directoryChanged.connect(lambda: directory.append(True))
    with qtbot.waitSignal(bridge.eventsReceived, timeout=5000):
        publish_from_engine_thread(engine_thread, [
            EngineStateChanged("stopping"), QueueChanged("Q1"), DirectoryChanged(),
            MessageStored("alice@example.test", "INBOX", 1), EngineStateChanged("stopped"),
            QueueChanged("Q2"), DirectoryChanged(), MessageStored("Alice@example.test", "INBOX", 2),
            MessageStored("alice@example.test", "Junk", 1), EngineStateChanged("starting"),
        ])
    assert states == ["stopping", "stopped", "starting"]
    assert queue_ids == [None], "several messages changed: None, as QueueChanged spells 'many'"
    assert directory == [True]
    assert sorted((e.folder, e.uid) for e in stored) == [("INBOX", 2), ("Junk", 1)], "latest per folder"


def test_one_queue_change_keeps_its_id(qtbot: Any, bridge: EngineBridge, engine_thread: EngineThread) -> None:
    with qtbot.waitSignal(bridge.queueChanged, timeout=5000) as caught:
        publish_from_engine_thread(engine_thread, [QueueChanged("Q7"), QueueChanged("Q7")])
    assert caught.args == ["Q7"]


def test_a_closed_bridge_takes_no_more_events(bridge: EngineBridge, engine_thread: EngineThread) -> None:
    bridge.close()
    publish_from_engine_thread(engine_thread, [DirectoryChanged()])     # returns once published
    assert bridge._inbox == [], "nothing queued, so nothing can reach a panel being torn down"


def test_an_answer_is_never_delivered_inside_the_call_that_asked(qtbot: Any, bridge: EngineBridge) -> None:
    """A future already done when submit() adds its callback runs that callback on the GUI thread; the
    answer must still come later, from the event loop, as for every other call."""
    answers: list[object] = []
    done: concurrent.futures.Future[object] = concurrent.futures.Future()
    done.set_result("answer")
    bridge._finished.emit(_Pending(answers.append, None, None), done)      # as add_done_callback would
    assert answers == [], "not synchronously"
    qtbot.waitUntil(lambda: answers == ["answer"], timeout=2000)
