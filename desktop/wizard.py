"""First-run setup: host name, first domain and account, listeners, TLS, optional smarthost.

Each page checks its answers in place (the same validators the engine uses) before Next is allowed.  The
listeners page first tries to bind the standard ports (on the engine thread) and, when it cannot, offers
high ports with the reason in words.  Finishing writes postroom.toml and creates the domain and account
through the engine, all off the GUI thread; the wizard is opened with open(), never exec().
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from desktop.bridge import EngineBridge
from desktop.widgets.common import MessageLine
from engine.config import STANDARD_LISTEN, ConfigError, parse_listen
from engine.runtime import Engine
from engine.settings_store import SettingsStore

# High ports offered when the standard ones cannot be bound (no root, or another server holds them).
HIGH_PORTS: dict[str, int] = {
    "smtp": 2525, "submission": 2587, "submissions": 2465, "imap": 2143, "imaps": 2993,
    "pop3": 2110, "pop3s": 2995,
}
MIN_PASSWORD = 8


def probe_ports(host: str, ports: dict[str, int]) -> dict[str, str]:
    """{service: why it cannot bind} for each port this process cannot listen on right now."""
    problems: dict[str, str] = {}
    for service, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except PermissionError:
                problems[service] = f"port {port} needs administrator rights"
            except OSError as exc:
                problems[service] = f"port {port}: {exc.strerror or exc}"
    return problems


@dataclass
class SetupAnswers:
    hostname: str
    domain: str
    local_part: str
    password: str
    listen: dict[str, str]
    tls_cert: str = ""
    tls_key: str = ""
    smarthost: str = ""
    smarthost_username: str = ""
    smarthost_password: str = ""
    password_file_ok: bool = False
    notes: list[str] = field(default_factory=list)

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostname": self.hostname}
        out.update({f"listen.{k}": v for k, v in self.listen.items()})
        out["tls.cert"] = self.tls_cert or None
        out["tls.key"] = self.tls_key or None
        out["delivery.smarthost"] = self.smarthost or None
        out["delivery.smarthost_username"] = self.smarthost_username or None
        return out


async def apply_setup(engine: Engine, answers: SetupAnswers) -> list[str]:
    """Writes the settings and creates domain and account; returns notes for the person."""
    from engine.secrets import SMARTHOST_PASSWORD, KeyringUnavailable, SecretStore

    store = SettingsStore(engine.data_dir)
    config = await asyncio.to_thread(store.save, answers.changes())
    await asyncio.to_thread(engine.open)
    await engine.apply_config(config)
    notes: list[str] = []
    await asyncio.to_thread(_create_domain_and_account, engine, answers)
    notes.append(f"Created {answers.local_part}@{answers.domain.lower()}.")
    if answers.smarthost and answers.smarthost_password:
        secrets = SecretStore(engine.data_dir)
        try:
            where = await asyncio.to_thread(secrets.set, SMARTHOST_PASSWORD, answers.smarthost_password,
                                            allow_file=answers.password_file_ok)
        except KeyringUnavailable as exc:
            notes.append(f"The smarthost password was not saved: {exc}. Enter it again in Settings.")
        else:
            notes.append("The smarthost password is in the system keyring." if where == "keyring" else
                         f"The smarthost password is in {secrets.file_path} (readable only by you).")
    return notes


def _create_domain_and_account(engine: Engine, answers: SetupAnswers) -> None:
    """Idempotent, so Finish can be pressed again after fixing whatever failed the first time."""
    directory = engine.directory
    if not directory.is_local_domain(answers.domain):
        directory.add_domain(answers.domain)
    address = f"{answers.local_part}@{answers.domain}"
    if directory.get_account(address) is None:
        directory.add_account(address, answers.password)
    else:
        directory.set_password(address, answers.password)
    account = directory.get_account(address)
    engine.store.create_account(account.address)


class _Page(QWizardPage):
    def __init__(self, title: str, subtitle: str) -> None:
        super().__init__()
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.message = MessageLine()

    def fail(self, text: str) -> bool:
        self.message.show_error(text)
        return False


class HostPage(_Page):
    def __init__(self, hostname: str) -> None:
        super().__init__("Welcome to Postroom",
                         "Postroom is a mail server. First, the name other servers will know it by.")
        self.hostname = QLineEdit(hostname)
        self.hostname.setObjectName("hostname")
        self.hostname.setPlaceholderText("mail.example.org")
        explain = QLabel("Use a name that resolves to this machine from the internet (an A record), "
                         "e.g. mail.example.org. It is used in greetings and TLS certificates.")
        explain.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Server host name:", self.hostname)
        form.addRow(explain)
        form.addRow(self.message)

    def validatePage(self) -> bool:
        try:
            SettingsStore(Path("/nonexistent")).preview({"hostname": self.hostname.text().strip()})
        except ConfigError as exc:
            return self.fail(str(exc).split(": ", 2)[-1])
        self.message.clear_message()
        return True


class AccountPage(_Page):
    def __init__(self) -> None:
        super().__init__("Your first domain and account",
                         "Mail for this domain is delivered here; the account can log in with IMAP or POP3.")
        self.domain = QLineEdit()
        self.domain.setObjectName("domain")
        self.domain.setPlaceholderText("example.org")
        self.local = QLineEdit("postmaster")
        self.local.setObjectName("local_part")
        self.at_domain = QLabel("@")
        self.domain.textChanged.connect(lambda t: self.at_domain.setText(f"@{t.strip().lower()}"))
        row = QHBoxLayout()
        row.addWidget(self.local, 1)
        row.addWidget(self.at_domain)
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat = QLineEdit()
        self.repeat.setObjectName("repeat")
        self.repeat.setEchoMode(QLineEdit.EchoMode.Password)
        form = QFormLayout(self)
        form.addRow("Domain:", self.domain)
        form.addRow("Account:", row)
        form.addRow("Password:", self.password)
        form.addRow("Repeat password:", self.repeat)
        form.addRow(self.message)

    def validatePage(self) -> bool:
        from engine.auth import names

        try:
            domain = names.domain(self.domain.text().strip())
            names.account_local_part(self.local.text().strip())
        except Exception as exc:
            return self.fail(str(exc))
        if domain.count(".") < 1:
            return self.fail(f"{domain} has no dot; use the domain your addresses end in, e.g. example.org")
        if len(self.password.text()) < MIN_PASSWORD:
            return self.fail(f"Choose a password of at least {MIN_PASSWORD} characters.")
        if self.password.text() != self.repeat.text():
            return self.fail("The two passwords differ.")
        self.message.clear_message()
        return True


class ListenersPage(_Page):
    def __init__(self, bridge: EngineBridge) -> None:
        super().__init__("Where to listen",
                         "Other mail servers send to port 25; your mail programs use 587/465 and IMAP/POP3.")
        self.bridge = bridge
        self.standard = QRadioButton("Standard ports (25, 587, 465, 143, 993, 110, 995)")
        self.high = QRadioButton("High ports (2525, 2587, 2465, 2143, 2993, 2110, 2995)")
        self.standard.setObjectName("standard_ports")
        self.high.setObjectName("high_ports")
        group = QButtonGroup(self)
        group.addButton(self.standard)
        group.addButton(self.high)
        self.standard.setChecked(True)
        self.scope = QComboBox()
        self.scope.setObjectName("scope")
        self.scope.addItem("Every network (a real mail server)", "0.0.0.0")
        self.scope.addItem("This computer only (trying things out)", "127.0.0.1")
        self.scope.currentIndexChanged.connect(lambda _i: self.probe())
        self.explanation = QLabel("Checking which ports are free…")
        self.explanation.setObjectName("port_explanation")
        self.explanation.setWordWrap(True)
        self.problems: dict[str, str] | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self.standard)
        layout.addWidget(self.high)
        form = QFormLayout()
        form.addRow("Accept connections from:", self.scope)
        layout.addLayout(form)
        layout.addWidget(self.explanation)
        layout.addWidget(self.message)
        layout.addStretch(1)

    def initializePage(self) -> None:
        self.probe()

    def probe(self) -> None:
        host = self.scope.currentData()
        ports = {k: parse_listen(v).port for k, v in STANDARD_LISTEN.items()}  # type: ignore[union-attr]
        self.bridge.call(probe_ports, host, ports, on_result=self._probed,
                         on_error=self.message.show_error, owner=self)

    def _probed(self, problems: dict[str, str]) -> None:
        self.problems = problems
        if not problems:
            self.explanation.setText("All standard ports are free on this machine.")
            return
        reasons = "; ".join(f"{service}: {why}" for service, why in problems.items())
        self.explanation.setText(
            "Some standard ports cannot be used right now (" + reasons + "). Ports below 1024 need "
            "administrator rights (or `setcap cap_net_bind_service`), and another mail server may already "
            "hold them. High ports work without either; other servers still deliver only to port 25, so "
            "forward port 25 to 2525 in your router or firewall for incoming mail.")
        self.high.setChecked(True)

    def addresses(self) -> dict[str, str]:
        host = self.scope.currentData()
        if self.high.isChecked():
            return {k: f"{host}:{port}" for k, port in HIGH_PORTS.items()}
        return {k: f"{host}:{parse_listen(v).port}" for k, v in STANDARD_LISTEN.items()}  # type: ignore[union-attr]


class TLSPage(_Page):
    def __init__(self) -> None:
        super().__init__("Encryption (TLS)",
                         "Mail programs and other servers encrypt their connections with a certificate.")
        self.self_signed = QRadioButton("Make a self-signed certificate now (fine to start; mail programs "
                                        "will ask once whether to trust it)")
        self.files = QRadioButton("Use my certificate and key files (e.g. from Let's Encrypt)")
        self.self_signed.setObjectName("self_signed")
        self.files.setObjectName("tls_files")
        group = QButtonGroup(self)
        group.addButton(self.self_signed)
        group.addButton(self.files)
        self.self_signed.setChecked(True)
        self.cert = QLineEdit()
        self.cert.setObjectName("cert")
        self.key = QLineEdit()
        self.key.setObjectName("key")
        self.dialog: QFileDialog | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self.self_signed)
        layout.addWidget(self.files)
        form = QFormLayout()
        form.addRow("Certificate (PEM):", self._with_browse(self.cert, "Certificate"))
        form.addRow("Private key (PEM):", self._with_browse(self.key, "Private key"))
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self.files.toggled.connect(self._update)
        self._update()

    def _with_browse(self, edit: QLineEdit, what: str) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Choose…")
        button.clicked.connect(lambda: self._browse(edit, what))
        row.addWidget(button)
        return box

    def _browse(self, edit: QLineEdit, what: str) -> None:
        dialog = QFileDialog(self, f"Choose the {what.lower()} file")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(edit.setText)
        self.dialog = dialog
        dialog.open()

    def _update(self) -> None:
        self.cert.setEnabled(self.files.isChecked())
        self.key.setEnabled(self.files.isChecked())

    def validatePage(self) -> bool:
        if self.files.isChecked():
            for edit, what in ((self.cert, "certificate"), (self.key, "key")):
                path = Path(edit.text().strip()).expanduser()
                if not edit.text().strip():
                    return self.fail(f"Choose the {what} file, or make a self-signed certificate.")
                if not path.is_file():
                    return self.fail(f"There is no {what} file at {path}.")
        self.message.clear_message()
        return True


class SmarthostPage(_Page):
    def __init__(self) -> None:
        super().__init__("Sending through another server (optional)",
                         "Many home connections may not send on port 25. A smarthost (your provider's "
                         "server) can relay your outgoing mail. Leave empty to deliver directly.")
        self.host = QLineEdit()
        self.host.setObjectName("smarthost")
        self.host.setPlaceholderText("smtp.provider.net:587")
        self.username = QLineEdit()
        self.username.setObjectName("smarthost_username")
        self.password = QLineEdit()
        self.password.setObjectName("smarthost_password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.file_ok = QCheckBox("If no system keyring works here, keep the password in a file that only "
                                 "my user account can read")
        self.file_ok.setObjectName("password_file_ok")
        form = QFormLayout(self)
        form.addRow("Smarthost (host:port):", self.host)
        form.addRow("User name:", self.username)
        form.addRow("Password:", self.password)
        form.addRow(self.file_ok)
        form.addRow(self.message)

    def validatePage(self) -> bool:
        text = self.host.text().strip()
        if text:
            try:
                parse_listen(text)
            except ValueError as exc:
                return self.fail(f"Smarthost: {exc}")
        self.message.clear_message()
        return True


class SetupWizard(QWizard):
    """Emits `setupFinished("")` once settings, domain and account exist, or the reason they do not."""

    setupFinished = Signal(str)

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Set up Postroom")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.host_page = HostPage(bridge.engine.config.hostname)
        self.account_page = AccountPage()
        self.listeners_page = ListenersPage(bridge)
        self.tls_page = TLSPage()
        self.smarthost_page = SmarthostPage()
        for page in (self.host_page, self.account_page, self.listeners_page, self.tls_page,
                     self.smarthost_page):
            self.addPage(page)
        self.notes: list[str] = []
        self.error = ""
        self._applying = False

    def answers(self) -> SetupAnswers:
        tls = self.tls_page
        smart = self.smarthost_page
        return SetupAnswers(
            hostname=self.host_page.hostname.text().strip(),
            domain=self.account_page.domain.text().strip(),
            local_part=self.account_page.local.text().strip(),
            password=self.account_page.password.text(),
            listen=self.listeners_page.addresses(),
            tls_cert=tls.cert.text().strip() if tls.files.isChecked() else "",
            tls_key=tls.key.text().strip() if tls.files.isChecked() else "",
            smarthost=smart.host.text().strip(),
            smarthost_username=smart.username.text().strip(),
            smarthost_password=smart.password.text(),
            password_file_ok=smart.file_ok.isChecked(),
        )

    def accept(self) -> None:
        """Finish: apply off the GUI thread, close only when it worked (so a mistake can be fixed)."""
        if self._applying:
            return
        self._applying = True
        self.button(QWizard.WizardButton.FinishButton).setEnabled(False)
        self.smarthost_page.message.show_info("Setting up…")
        self.bridge.submit(apply_setup(self.bridge.engine, self.answers()), self._applied, self._failed,
                           owner=self)

    def _applied(self, notes: list[str]) -> None:
        self.notes = notes
        self._applying = False
        super().accept()
        self.setupFinished.emit("")

    def _failed(self, error: str) -> None:
        self._applying = False
        self.error = error
        self.button(QWizard.WizardButton.FinishButton).setEnabled(True)
        self.smarthost_page.message.show_error(f"Setup did not complete: {error}")
