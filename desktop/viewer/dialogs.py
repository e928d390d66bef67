"""The viewer's dialogs: the mailbox password, "Send test message", and writing a message.

Both are opened with `open()` (window-modal, no nested event loop: qasync issues #59/#174) and report
through signals; the panel does the engine work and tells the dialog the outcome.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.viewer.compose import Draft
from desktop.viewer.text import escape_unsafe
from desktop.widgets.common import MessageLine


class PasswordDialog(QDialog):
    """Asks for one account's password; `submitted(password, remember)` when the person clicks Open."""

    submitted = Signal(str, bool)

    def __init__(self, address: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.address = address
        self.setWindowTitle("Open mailbox")
        intro = QLabel(f"Password of {escape_unsafe(address, strict=True)}")
        intro.setTextFormat(Qt.TextFormat.PlainText)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setObjectName("mailboxPassword")
        self.remember = QCheckBox("Remember this password (in the system keyring)")
        self.message = MessageLine()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open |
                                        QDialogButtonBox.StandardButton.Cancel)
        self.open_button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        self.buttons.accepted.connect(self._submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.password)
        layout.addWidget(self.remember)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

    def _submit(self) -> None:
        if not self.password.text():
            self.message.show_error("Type the account's password.")
            return
        self.set_busy(True)
        self.message.show_info("Checking…")
        self.submitted.emit(self.password.text(), self.remember.isChecked())

    def set_busy(self, busy: bool) -> None:
        self.open_button.setEnabled(not busy)
        self.password.setEnabled(not busy)

    def wrong(self, text: str = "That password is not right.") -> None:
        self.set_busy(False)
        self.message.show_error(text)
        self.password.selectAll()
        self.password.setFocus()


class SendTestDialog(QDialog):
    """From one opened account to any address; `send(recipient)` when the person clicks Send."""

    send = Signal(str)

    def __init__(self, account: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send test message")
        self.account = account
        sender = QLabel(escape_unsafe(account, strict=True))
        sender.setTextFormat(Qt.TextFormat.PlainText)
        self.recipient = QLineEdit(account)
        self.recipient.setObjectName("testRecipient")
        self.recipient.setPlaceholderText("someone@example.org")
        form = QFormLayout()
        form.addRow("From:", sender)
        form.addRow("To:", self.recipient)
        explain = QLabel("The message goes through this server's own submission service, as from a mail "
                         "program, so it proves that sending works. Send it to an address elsewhere to test "
                         "outgoing mail, or to this account to test delivery.")
        explain.setWordWrap(True)
        self.message = MessageLine()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.send_button = QPushButton("&Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self._send)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(explain)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

    def _send(self) -> None:
        recipient = self.recipient.text().strip()
        if "@" not in recipient:
            self.message.show_error("Type an email address to send to.")
            return
        self.send_button.setEnabled(False)
        self.message.show_info("Sending…")
        self.send.emit(recipient)

    def done_sending(self, text: str, ok: bool) -> None:
        self.send_button.setEnabled(True)
        if ok:
            self.message.show_info(text)
        else:
            self.message.show_error(text)


COMPOSE_TITLES = {"new": "New message", "reply": "Reply", "reply-all": "Reply to all", "forward": "Forward"}


class ComposeDialog(QDialog):
    """A plain-text message window (new, reply, forward); `send(draft)` when the person clicks Send.

    Not modal: a person may read other mail while writing.  Closes itself once the panel reports that
    the message went out; stays open, with the reason, when it did not."""

    send = Signal(object)           # desktop.viewer.compose.Draft

    def __init__(self, account: str, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.draft = draft
        self.setWindowTitle(COMPOSE_TITLES.get(draft.kind, "New message"))
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setModal(False)
        sender = QLabel(escape_unsafe(account, strict=True))
        sender.setTextFormat(Qt.TextFormat.PlainText)
        self.to = QLineEdit(draft.to)
        self.to.setObjectName("composeTo")
        self.cc = QLineEdit(draft.cc)
        self.subject = QLineEdit(draft.subject)
        self.body = QPlainTextEdit(draft.body)
        self.body.setObjectName("composeBody")
        form = QFormLayout()
        form.addRow("From:", sender)
        form.addRow("To:", self.to)
        form.addRow("Cc:", self.cc)
        form.addRow("Subject:", self.subject)
        self.attachment_label = QLabel()
        self.attachment_label.setTextFormat(Qt.TextFormat.PlainText)
        if draft.forwarded is not None:
            self.attachment_label.setText(f"Attached: {escape_unsafe(draft.forwarded_name)} (the original message)")
        self.attachment_label.setVisible(draft.forwarded is not None)
        self.message = MessageLine()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.send_button = QPushButton("&Send")
        self.send_button.clicked.connect(self._send)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.body, 1)
        layout.addWidget(self.attachment_label)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(640, 520)
        if draft.kind in ("reply", "reply-all"):
            self.body.setFocus()
            cursor = self.body.textCursor()
            cursor.movePosition(cursor.MoveOperation.Start)
            self.body.setTextCursor(cursor)
        else:
            self.to.setFocus()

    def current_draft(self) -> Draft:
        return replace(self.draft, to=self.to.text(), cc=self.cc.text(), subject=self.subject.text(),
                       body=self.body.toPlainText())

    def _send(self) -> None:
        self.send_button.setEnabled(False)
        self.message.show_info("Sending…")
        self.send.emit(self.current_draft())

    def done_sending(self, text: str, ok: bool) -> None:
        self.send_button.setEnabled(True)
        if ok:
            self.message.show_info(text)
            self.accept()
        else:
            self.message.show_error(text)
