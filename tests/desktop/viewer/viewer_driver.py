"""Driving the mailbox viewer as a person would: open an account, deliver mail over SMTP, pick messages.
(A module name no other test directory uses.)"""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from desktop.bridge import EngineBridge
from desktop.models.messages import MessageListModel
from desktop.panels.mailbox_viewer import MailboxViewerPanel
from engine.runtime import Engine
from engine.secrets import SecretStore

ALICE = "alice@example.test"
WAIT = 15000


def deliver(engine: Engine, data: bytes, sender: str = "carol@remote.test", to: str = ALICE) -> None:
    """Over the engine's own SMTP listener, as mail from outside arrives."""
    host, port = engine.address_of("smtp")
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.sendmail(sender, [to], data)


def make_panel(qtbot: Any, bridge: EngineBridge, tmp_path: Path, backend: Any) -> MailboxViewerPanel:
    secrets = SecretStore(bridge.engine.data_dir, backend=backend, timeout=2.0)
    settings = QSettings(str(tmp_path / "viewer-test.ini"), QSettings.Format.IniFormat)
    panel = MailboxViewerPanel(bridge, secrets=secrets, settings=settings)
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    activate(qtbot, panel)
    qtbot.waitUntil(lambda: panel.account_combo.findData(ALICE) >= 0, timeout=WAIT)
    return panel


def open_account(qtbot: Any, panel: MailboxViewerPanel, password: str, *, remember: bool = False) -> None:
    panel.open_account(ALICE)
    qtbot.waitUntil(lambda: panel.password_dialog is not None and panel.password_dialog.isVisible(),
                    timeout=WAIT)
    dialog = panel.password_dialog
    assert dialog is not None
    dialog.password.setText(password)
    dialog.remember.setChecked(remember)
    dialog.open_button.click()
    qtbot.waitUntil(lambda: panel.account == ALICE and panel.folder == "INBOX", timeout=WAIT)
    activate(qtbot, panel)


def activate(qtbot: Any, panel: MailboxViewerPanel) -> None:
    """Keyboard shortcuts go to the active window only (a closed dialog does not give activation back
    under the offscreen platform)."""
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow, timeout=WAIT)


def rows(panel: MailboxViewerPanel) -> list[str]:
    model = panel.list_model
    return [model.index(r, MessageListModel.SUBJECT).data() or "" for r in range(model.rowCount())]


def wait_rows(qtbot: Any, panel: MailboxViewerPanel, n: int) -> None:
    qtbot.waitUntil(lambda: panel.list_model.rowCount() == n and "…" not in rows(panel), timeout=WAIT)


def select_subject(qtbot: Any, panel: MailboxViewerPanel, subject: str) -> None:
    """Clicks the message with this subject and waits until the reading pane shows it."""
    row = rows(panel).index(subject)
    panel._select_row(row)
    qtbot.waitUntil(lambda: panel.reading.view is not None and panel.reading.subject_label.text() == subject,
                    timeout=WAIT)


def process_events() -> None:
    QApplication.processEvents()
