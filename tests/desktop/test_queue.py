"""The queue panel: a message to an unreachable domain waits with its reason, and can be retried,
inspected, bounced and deleted; the table follows the engine without polling."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from desktop.bridge import EngineBridge
from desktop.models.queue import QueueModel
from desktop.panels.queue import QueuePanel
from engine.runtime import Engine, EngineThread

MESSAGE = (b"From: alice@example.test\r\nTo: bob@unreachable.test\r\nSubject: stuck\r\n"
           b"Message-ID: <stuck@example.test>\r\n\r\nThis cannot be delivered.\r\n")


def enqueue(thread: EngineThread, engine: Engine, recipient: str = "bob@unreachable.test") -> str:
    future = thread.submit(engine.queue.enqueue("alice@example.test", [recipient], MESSAGE,
                                                authenticated_as="alice@example.test"))
    return str(future.result(10))


def cell(panel: QueuePanel, queue_id: str, column: int) -> str:
    index = panel.index_of(queue_id)
    return panel.model.index(index.row(), column).data() if index.isValid() else ""


def test_unreachable_message_waits_with_its_reason_then_retry_and_delete(
        qtbot: Any, bridge: EngineBridge, running: Engine, engine_thread: EngineThread,
        qtmodeltester: Any) -> None:
    panel = QueuePanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.loaded, timeout=5000)
    assert panel.empty_label.isVisible()

    queue_id = enqueue(engine_thread, running)
    qtbot.waitUntil(lambda: cell(panel, queue_id, QueueModel.STATUS) == "Waiting to retry", timeout=10000)
    assert cell(panel, queue_id, QueueModel.RECIPIENTS) == "bob@unreachable.test"
    assert cell(panel, queue_id, QueueModel.ATTEMPTS) == "1"
    error = cell(panel, queue_id, QueueModel.ERROR)
    assert error and "Traceback" not in error
    assert cell(panel, queue_id, QueueModel.NEXT).startswith("in ")
    qtmodeltester.check(panel.model)

    panel.select_id(queue_id)
    qtbot.mouseClick(panel.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(panel, queue_id, QueueModel.ATTEMPTS) == "2", timeout=10000)

    qtbot.mouseClick(panel.headers_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.headers_dialog is not None, timeout=5000)
    assert panel.headers_dialog is not None
    assert "Subject: stuck" in panel.headers_dialog.text.toPlainText()
    panel.headers_dialog.close()

    panel.select_id(queue_id)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert panel.confirm_box is not None
    panel.confirm_yes.click()
    qtbot.waitUntil(lambda: panel.model.total() == 0, timeout=5000)
    assert panel.empty_label.isVisible()
    assert running.queue.list() == []


def test_bounce_several_selected_messages(qtbot: Any, bridge: EngineBridge, running: Engine,
                                          engine_thread: EngineThread) -> None:
    panel = QueuePanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    ids = [enqueue(engine_thread, running, f"user{i}@unreachable.test") for i in range(3)]
    qtbot.waitUntil(lambda: all(cell(panel, q, QueueModel.STATUS) == "Waiting to retry" for q in ids),
                    timeout=10000)
    panel.view.selectAll()
    assert sorted(panel.selected_ids()) == sorted(ids)
    qtbot.mouseClick(panel.bounce_button, Qt.MouseButton.LeftButton)
    panel.confirm_yes.click()
    qtbot.waitUntil(lambda: "Bounced 3 message(s)" in panel.message.text(), timeout=5000)
    qtbot.waitUntil(lambda: not any(cell(panel, q, QueueModel.STATUS) == "Waiting to retry" for q in ids),
                    timeout=10000)


def test_cancelling_the_question_deletes_nothing(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                 engine_thread: EngineThread) -> None:
    panel = QueuePanel(bridge)
    qtbot.addWidget(panel)
    queue_id = enqueue(engine_thread, running)
    qtbot.waitUntil(lambda: panel.index_of(queue_id).isValid(), timeout=10000)
    panel.select_id(queue_id)
    panel.delete_selected()
    assert panel.confirm_box is not None
    panel.confirm_box.reject()
    assert panel.confirm_box is None
    assert [item.id for item in running.queue.list()] == [queue_id]
