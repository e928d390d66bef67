"""Opening a mailbox: the password is asked once, checked by the engine, and remembered only if wished."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import MemoryKeyring
from desktop_support import PASSWORD
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as NoKeyring
from PySide6.QtWidgets import QMessageBox
from viewer_driver import ALICE, WAIT, make_panel, open_account

from desktop.bridge import EngineBridge
from desktop.viewer.accounts import secret_name
from engine.runtime import Engine, EngineThread


def test_wrong_password_is_refused_then_the_right_one_opens(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                            tmp_path: Path,
                                                            keyring_backend: MemoryKeyring) -> None:
    panel = make_panel(qtbot, bridge, tmp_path, keyring_backend)
    assert not panel.send_test_button.isEnabled()
    panel.open_account(ALICE)
    qtbot.waitUntil(lambda: panel.password_dialog is not None and panel.password_dialog.isVisible(), timeout=WAIT)
    dialog = panel.password_dialog
    dialog.password.setText("not the password")
    dialog.open_button.click()
    qtbot.waitUntil(lambda: dialog.message.isVisible() and "not right" in dialog.message.text(), timeout=WAIT)
    assert panel.account is None
    dialog.password.setText(PASSWORD)
    dialog.open_button.click()
    qtbot.waitUntil(lambda: panel.account == ALICE and panel.folder == "INBOX", timeout=WAIT)
    assert keyring_backend.items == {}           # not asked to remember
    assert panel.send_test_button.isEnabled()


def test_a_remembered_password_opens_without_asking(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                    tmp_path: Path, keyring_backend: MemoryKeyring) -> None:
    panel = make_panel(qtbot, bridge, tmp_path, keyring_backend)
    open_account(qtbot, panel, PASSWORD, remember=True)
    qtbot.waitUntil(lambda: "system keyring" in panel.message.text(), timeout=WAIT)
    assert PASSWORD in keyring_backend.items.values()

    again = make_panel(qtbot, bridge, tmp_path, keyring_backend)
    again.open_account(ALICE)
    qtbot.waitUntil(lambda: again.account == ALICE, timeout=WAIT)
    assert again.password_dialog is None

    again.forget_saved_password()
    qtbot.waitUntil(lambda: keyring_backend.items == {}, timeout=WAIT)


def test_without_a_keyring_a_file_is_used_only_after_asking(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                            tmp_path: Path) -> None:
    no_keyring: Callable[[], KeyringBackend] = NoKeyring     # keyring's constructors are unannotated
    panel = make_panel(qtbot, bridge, tmp_path, no_keyring())
    open_account(qtbot, panel, PASSWORD, remember=True)
    qtbot.waitUntil(lambda: panel.question is not None and panel.question.isVisible(), timeout=WAIT)
    box: QMessageBox = panel.question
    assert "keyring" in box.informativeText() and "only by your user account" in box.informativeText()
    secrets_file = panel.secrets.file_path
    assert not secrets_file.exists()
    panel.question_yes.click()
    qtbot.waitUntil(secrets_file.exists, timeout=WAIT)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert panel.secrets.get(secret_name(ALICE)) == PASSWORD


def test_an_account_added_later_appears_and_the_hint_goes(qtbot: Any, bridge: EngineBridge,
                                                          engine_thread: EngineThread, tmp_path: Path,
                                                          keyring_backend: MemoryKeyring) -> None:
    from desktop_support import on_engine
    from PySide6.QtCore import QSettings

    from desktop.panels.mailbox_viewer import NO_ACCOUNTS, MailboxViewerPanel
    from engine.secrets import SecretStore

    engine = engine_thread.engine
    engine_thread.submit(engine.start()).result(30)
    panel = MailboxViewerPanel(bridge, secrets=SecretStore(engine.data_dir, backend=keyring_backend),
                               settings=QSettings(str(tmp_path / "v.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.message.text() == NO_ACCOUNTS, timeout=WAIT)
    assert not panel.open_button.isEnabled()
    on_engine(engine_thread, engine.directory.add_domain, "example.test")
    on_engine(engine_thread, engine.directory.add_account, ALICE, PASSWORD)
    qtbot.waitUntil(lambda: panel.account_combo.findData(ALICE) >= 0, timeout=WAIT)
    assert not panel.message.isVisible() and panel.open_button.isEnabled()
