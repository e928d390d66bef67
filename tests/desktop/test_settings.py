"""The settings panel: changes are validated before saving, saved with the file's comments, applied to the
running engine, and the smarthost password never lands in postroom.toml."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QWidget

from desktop.bridge import EngineBridge
from desktop.panels.settings import SettingsPanel
from engine.config import load_config
from engine.runtime import Engine


def click(qtbot: Any, button: QWidget) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def text_field(panel: SettingsPanel, key: str) -> QLineEdit:
    """The fields these tests read and type into are line edits (others are combo boxes)."""
    return cast(QLineEdit, panel.fields[key])


def test_a_valid_change_is_saved_with_comments_and_applied(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                           data_dir: Path) -> None:
    panel = SettingsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.loaded, timeout=5000)
    assert text_field(panel, "hostname").text() == "mx.postroom.test"
    field = panel.fields["limits.recipients"]
    field.clear()
    qtbot.keyClicks(field, "42")
    click(qtbot, panel.apply_button)
    qtbot.waitUntil(lambda: panel.message.text() == "Saved and applied.", timeout=10000)
    assert load_config(data_dir).limits.recipients == 42
    assert running.config.limits.recipients == 42
    assert "# written by the desktop tests" in (data_dir / "postroom.toml").read_text()
    _host, port = running.address_of("smtp")
    assert port != 0, "the listeners run again after the change"


def test_a_mistake_is_named_in_place_and_nothing_is_saved(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                          data_dir: Path) -> None:
    before = (data_dir / "postroom.toml").read_text()
    panel = SettingsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.loaded, timeout=5000)
    text_field(panel, "dns.timeout").setText("soon")
    click(qtbot, panel.apply_button)
    qtbot.waitUntil(lambda: "dns.timeout" in panel.message.text(), timeout=5000)
    assert "duration" in panel.message.text()
    assert panel.message.property("kind") == "error"
    assert (data_dir / "postroom.toml").read_text() == before

    text_field(panel, "dns.timeout").setText("2s")
    text_field(panel, "listen.smtp").setText("nowhere")
    click(qtbot, panel.apply_button)
    qtbot.waitUntil(lambda: "listen.smtp" in panel.message.text(), timeout=5000)
    assert (data_dir / "postroom.toml").read_text() == before


def test_smarthost_password_goes_to_a_0600_file_only_after_consent(qtbot: Any, bridge: EngineBridge,
                                                                   running: Engine, data_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend
    from keyring.backends import fail

    no_keyring: Callable[[], KeyringBackend] = fail.Keyring     # keyring's constructors are unannotated
    monkeypatch.setattr(keyring, "get_keyring", lambda: no_keyring())   # a headless box: no Secret Service
    panel = SettingsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.loaded, timeout=5000)
    text_field(panel, "delivery.smarthost").setText("127.0.0.1:2587")
    text_field(panel, "delivery.smarthost_username").setText("relay-user")
    qtbot.keyClicks(panel.smarthost_password, "s3cret-relay")
    click(qtbot, panel.apply_button)
    qtbot.waitUntil(lambda: panel.consent_box is not None, timeout=10000)
    assert not (data_dir / "secrets.json").exists(), "nothing is written before the person agrees"
    panel.consent_yes.click()
    qtbot.waitUntil(lambda: panel.message.text() == "Saved and applied.", timeout=10000)
    secrets = data_dir / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert "s3cret-relay" in secrets.read_text()
    assert "s3cret-relay" not in (data_dir / "postroom.toml").read_text()
    assert running.config.delivery.smarthost_password == "s3cret-relay"
