"""The first-run wizard: a person types a host, a domain, an account and a password, and they exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from desktop_support import PASSWORD, on_engine
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from desktop.bridge import EngineBridge
from desktop.wizard import SetupWizard, probe_ports
from engine.config import load_config
from engine.runtime import EngineThread


def next_page(qtbot: Any, wizard: SetupWizard) -> None:
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)


def test_wizard_creates_domain_account_and_settings(qtbot: Any, bridge: EngineBridge,
                                                    engine_thread: EngineThread, data_dir: Path) -> None:
    wizard = SetupWizard(bridge)
    qtbot.addWidget(wizard)
    wizard.show()

    host = wizard.host_page.hostname
    host.clear()
    qtbot.keyClicks(host, "mail.example.test")
    next_page(qtbot, wizard)
    assert wizard.currentPage() is wizard.account_page

    page = wizard.account_page
    qtbot.keyClicks(page.domain, "example.test")
    page.local.clear()
    qtbot.keyClicks(page.local, "alice")
    qtbot.keyClicks(page.password, PASSWORD)
    qtbot.keyClicks(page.repeat, PASSWORD + "x")
    next_page(qtbot, wizard)
    assert wizard.currentPage() is page, "mismatched passwords must keep the page"
    assert page.message.isVisible() and "differ" in page.message.text()
    page.repeat.clear()
    qtbot.keyClicks(page.repeat, PASSWORD)
    next_page(qtbot, wizard)

    listeners = wizard.listeners_page
    assert wizard.currentPage() is listeners
    qtbot.waitUntil(lambda: listeners.problems is not None, timeout=5000)
    listeners.scope.setCurrentIndex(1)            # this computer only
    qtbot.waitUntil(lambda: listeners.problems is not None, timeout=5000)
    listeners.high.setChecked(True)
    next_page(qtbot, wizard)
    assert wizard.currentPage() is wizard.tls_page
    next_page(qtbot, wizard)                      # self-signed
    assert wizard.currentPage() is wizard.smarthost_page

    with qtbot.waitSignal(wizard.setupFinished, timeout=20000) as finished:
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
    assert finished.args == [""]

    engine = engine_thread.engine
    assert on_engine(engine_thread, engine.directory.list_domains) == ["example.test"]
    account = on_engine(engine_thread, engine.directory.authenticate, "alice@example.test", PASSWORD)
    assert account is not None and account.address == "alice@example.test"
    config = load_config(data_dir)
    assert config.hostname == "mail.example.test"
    assert str(config.listen["smtp"]) == "127.0.0.1:2525"
    text = (data_dir / "postroom.toml").read_text()
    assert "# written by the desktop tests" in text, "the settings file keeps its comments"


def test_wizard_refuses_a_bad_domain_in_words(qtbot: Any, bridge: EngineBridge) -> None:
    wizard = SetupWizard(bridge)
    qtbot.addWidget(wizard)
    wizard.show()
    next_page(qtbot, wizard)
    page = wizard.account_page
    qtbot.keyClicks(page.domain, "not a domain!")
    qtbot.keyClicks(page.password, PASSWORD)
    qtbot.keyClicks(page.repeat, PASSWORD)
    next_page(qtbot, wizard)
    assert wizard.currentPage() is page
    assert "not a valid domain" in page.message.text()


def test_port_probe_names_a_port_in_use() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        problems = probe_ports("127.0.0.1", {"smtp": port})
    assert "smtp" in problems and str(port) in problems["smtp"]
