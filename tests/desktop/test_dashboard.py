"""The dashboard shows each listener's address and state, today's counts, and controls the engine."""

from __future__ import annotations

import smtplib
from typing import Any

from PySide6.QtCore import Qt

from desktop.bridge import EngineBridge
from desktop.panels.dashboard import DashboardPanel
from engine.runtime import Engine


def cells(panel: DashboardPanel) -> list[list[str]]:
    model = panel.listeners
    return [[model.index(r, c).data() or "" for c in range(model.columnCount())] for r in range(model.rowCount())]


def test_dashboard_shows_listeners_running(qtbot: Any, bridge: EngineBridge, running: Engine,
                                           qtmodeltester: Any) -> None:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    host, port = running.address_of("smtp")
    qtbot.waitUntil(lambda: any(row[1] == f"{host}:{port}" and row[2] == "Running" for row in cells(panel)),
                    timeout=5000)
    qtmodeltester.check(panel.listeners)
    assert panel.state_label.text() == "Engine: running"


def test_dashboard_counts_a_received_message(qtbot: Any, bridge: EngineBridge, running: Engine) -> None:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    host, port = running.address_of("smtp")
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.sendmail("bob@elsewhere.test", ["alice@example.test"],
                        b"Subject: hi\r\n\r\nhello\r\n")
    qtbot.waitUntil(lambda: panel.counter_labels["received"].text() not in ("–", "0"), timeout=5000)


def test_a_hidden_dashboard_asks_nothing_and_catches_up_when_shown(qtbot: Any, bridge: EngineBridge,
                                                                  running: Engine) -> None:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    host, port = running.address_of("smtp")
    with qtbot.waitSignal(bridge.deliveryLogged, timeout=5000), smtplib.SMTP(host, port, timeout=10) as client:
        client.sendmail("bob@elsewhere.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
    qtbot.waitUntil(lambda: not panel._refresh_soon.pending and not bridge.busy, timeout=5000)
    assert panel.counter_labels["received"].text() == "–", "nothing fetched or drawn while hidden"
    panel.show()
    qtbot.waitUntil(lambda: panel.counter_labels["received"].text() == "1", timeout=5000)


def test_stop_and_start_from_the_dashboard(qtbot: Any, bridge: EngineBridge, running: Engine) -> None:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.stop_button.isEnabled(), timeout=5000)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.state_label.text() == "Engine: stopped", timeout=10000)
    qtbot.waitUntil(lambda: all(row[2] == "Stopped" for row in cells(panel)), timeout=5000)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=5000)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.state_label.text() == "Engine: running", timeout=10000)
