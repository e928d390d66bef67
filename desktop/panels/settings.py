"""Settings: listeners, TLS, limits, DNS and smarthost, validated before they are saved and applied.

Apply writes only the keys that changed into postroom.toml (comments kept, engine.settings_store), after
the same validation the engine starts with; then the running engine adopts them, restarting only the
listeners they affect.  The smarthost password goes to the keyring — or, if none works here and the
person agrees when asked, to a 0600 file — never into postroom.toml.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.listeners import SERVICE_NAMES
from desktop.widgets.common import MessageLine
from engine.config import STANDARD_LISTEN, Config, load_config
from engine.runtime import Engine, ListenerState
from engine.secrets import SMARTHOST_PASSWORD, SecretStore, with_secrets
from engine.settings_store import SettingsStore, config_values

# (key, label, kind) — kind "int" keys are written as TOML integers, "list" as a list of strings.
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("General", "hostname", "Server host name", "str"),
    *(("Listeners", f"listen.{name}", SERVICE_NAMES[name], "str") for name in STANDARD_LISTEN),
    ("TLS", "tls.cert", "Certificate file (empty: self-signed)", "str"),
    ("TLS", "tls.key", "Private key file", "str"),
    ("Limits", "limits.message_size", "Largest message", "size"),
    ("Limits", "limits.recipients", "Recipients per message", "int"),
    ("Limits", "limits.connections_per_ip", "Connections per IP address", "int"),
    ("Limits", "limits.auth_failures", "Login failures before slowing down", "int"),
    ("DNS", "dns.nameservers", "Nameservers (empty: the system's)", "list"),
    ("DNS", "dns.timeout", "DNS timeout", "str"),
    ("Delivery", "delivery.retry_schedule", "Retry schedule", "str"),
    ("Delivery", "delivery.max_queue_lifetime", "Give up after", "str"),
    ("Delivery", "delivery.smarthost", "Smarthost (host:port, empty: deliver directly)", "str"),
    ("Delivery", "delivery.smarthost_username", "Smarthost user name", "str"),
    ("Delivery", "delivery.smarthost_tls", "Smarthost TLS", "choice:required,starttls,implicit"),
)


def load_values(data_dir: Any) -> dict[str, Any]:
    """The settings file's values as the form shows them (blocking: worker thread)."""
    return config_values(load_config(data_dir))


def _to_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _from_text(kind: str, text: str) -> Any:
    text = text.strip()
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return text          # the validator names the key and says what is wrong
    if kind == "size":
        return int(text) if text.isdigit() else text
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


async def apply_settings(engine: Engine, changes: dict[str, Any]) -> tuple[Config, list[ListenerState]]:
    """Validates and saves, then lets the running engine adopt the new settings."""
    store = SettingsStore(engine.data_dir)
    config = await asyncio.to_thread(store.save, changes)
    config = await asyncio.to_thread(with_secrets, config, SecretStore(engine.data_dir))
    states = await engine.apply_config(config)
    return config, states


class SettingsPanel(QWidget):
    title = "Settings"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.fields: dict[str, QLineEdit | QComboBox] = {}
        self.kinds: dict[str, str] = {}
        self.loaded_values: dict[str, str] = {}
        self.loaded = False
        self.consent_box: QMessageBox | None = None

        content = QWidget()
        content_layout = QVBoxLayout(content)
        groups: dict[str, QFormLayout] = {}
        for group, key, label, kind in FIELDS:
            if group not in groups:
                box = QGroupBox(group)
                groups[group] = QFormLayout(box)
                content_layout.addWidget(box)
            widget: QLineEdit | QComboBox
            if kind.startswith("choice:"):
                widget = QComboBox()
                widget.addItems(kind.split(":", 1)[1].split(","))
            else:
                widget = QLineEdit()
            widget.setObjectName(key)
            groups[group].addRow(label + ":", widget)
            self.fields[key] = widget
            self.kinds[key] = kind
        self.smarthost_password = QLineEdit()
        self.smarthost_password.setObjectName("smarthost_password")
        self.smarthost_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.smarthost_password.setPlaceholderText("unchanged (kept in the system keyring)")
        groups["Delivery"].addRow("Smarthost password:", self.smarthost_password)
        content_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)

        self.apply_button = QPushButton("&Apply")
        self.apply_button.setToolTip("Check, save and apply the changes (Ctrl+S)")
        self.apply_button.setShortcut("Ctrl+S")
        self.apply_button.clicked.connect(self.apply)
        self.revert_button = QPushButton("Re&vert")
        self.revert_button.clicked.connect(self.refresh)
        self.message = MessageLine()
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.apply_button)

        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        self.refresh()

    # --- loading -----------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.bridge.call(load_values, self.bridge.engine.data_dir, on_result=self._show,
                         on_error=lambda text: self.message.show_error(
                             f"The settings file has a mistake: {text}"), owner=self)

    def _show(self, values: dict[str, Any]) -> None:
        for key, widget in self.fields.items():
            text = _to_text(values.get(key, ""))
            if isinstance(widget, QComboBox):
                widget.setCurrentText(text)
            else:
                widget.setText(text)
            self.loaded_values[key] = text
        self.smarthost_password.clear()
        self.loaded = True

    def _text(self, key: str) -> str:
        widget = self.fields[key]
        return widget.currentText() if isinstance(widget, QComboBox) else widget.text().strip()

    def changes(self) -> dict[str, Any]:
        """Only what the person changed: untouched keys stay as they are written (or absent) in the file."""
        out: dict[str, Any] = {}
        for key in self.fields:
            text = self._text(key)
            if text != self.loaded_values.get(key, ""):
                out[key] = _from_text(self.kinds[key], text) if text or key.startswith("listen.") else None
        return out

    # --- applying ----------------------------------------------------------------------------------

    def apply(self) -> None:
        changes = self.changes()
        password = self.smarthost_password.text()
        if not changes and not password:
            self.message.show_info("Nothing has changed.")
            return
        store = SettingsStore(self.bridge.engine.data_dir)
        self.apply_button.setEnabled(False)
        self.message.show_info("Checking…")

        def checked(_preview: Any) -> None:
            if password:
                self._store_password(password, allow_file=False, then=lambda: self._save(changes))
            else:
                self._save(changes)

        def invalid(text: str) -> None:
            self.apply_button.setEnabled(True)
            self.message.show_error(text)

        self.bridge.call(store.preview, changes, on_result=checked, on_error=invalid, owner=self)

    def _store_password(self, password: str, *, allow_file: bool, then: Any) -> None:
        secrets = SecretStore(self.bridge.engine.data_dir)

        async def store() -> str:
            return await asyncio.to_thread(secrets.set, SMARTHOST_PASSWORD, password, allow_file=allow_file)

        def stored(_where: str) -> None:
            self.smarthost_password.clear()
            then()

        def failed(text: str) -> None:
            self.apply_button.setEnabled(True)
            if allow_file:
                self.message.show_error(f"The password could not be saved: {text}")
            else:
                self._ask_file_consent(text, password, then)

        self.bridge.submit(store(), stored, failed, owner=self)

    def _ask_file_consent(self, why: str, password: str, then: Any) -> None:
        """No keyring here: the password goes to a file only if the person says so, knowing what that means."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Where to keep the smarthost password?")
        box.setText("The system keyring cannot be used, so the smarthost password cannot be kept there.")
        box.setInformativeText(
            f"({why})\n\nPostroom can keep it in a file in its data folder that only your user account can "
            "read (permissions 0600). It is not encrypted: anyone with access to your account or your backups "
            "can read it. Keep it in that file?")
        yes = box.addButton("Keep it in a file", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Don't save the password", QMessageBox.ButtonRole.RejectRole)
        self.consent_box = box
        self.consent_yes = yes

        def answered(_r: int) -> None:
            agreed = box.clickedButton() is yes
            self.consent_box = None
            box.deleteLater()
            if agreed:
                self._store_password(password, allow_file=True, then=then)
            else:
                self.apply_button.setEnabled(True)
                self.message.show_error("The password was not saved; the other settings were not applied.")

        box.finished.connect(answered)
        box.open()

    def _save(self, changes: dict[str, Any]) -> None:
        def applied(result: tuple[Config, list[ListenerState]]) -> None:
            self.apply_button.setEnabled(True)
            _config, states = result
            failed = [s for s in states if s.state == "failed"]
            if failed:
                self.message.show_error("Saved, but some listeners could not start: " +
                                        "; ".join(s.reason for s in failed))
            else:
                self.message.show_info("Saved and applied.")
            self.refresh()

        def failed(text: str) -> None:
            self.apply_button.setEnabled(True)
            self.message.show_error(text)

        self.bridge.submit(apply_settings(self.bridge.engine, changes), applied, failed, owner=self)

