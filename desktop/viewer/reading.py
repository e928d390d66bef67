"""The reading pane: header summary, warnings, bounce report, checks, remote-content bar, body, attachments.

It shows a `MessageView` (desktop.viewer.message) and decides nothing about safety itself: every string
it gets is already escaped, and every label is plain text (a QLabel would otherwise render a subject
like "<img src=...>" as rich text).  HTML goes to the hardened MessageWebView, plain text to a
QTextBrowser that cannot load anything.  Saving and opening links are requests to the panel.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop.viewer.html import text_document
from desktop.viewer.message import AttachmentInfo, MessageView
from desktop.viewer.text import ShownAddress, escape_unsafe, tooltip
from desktop.viewer.webview import MessageWebView, PartSource
from desktop.widgets.common import format_size

MAX_SOURCE_CHARS = 1_000_000      # the source view shows this much of a huge message, and says so


def plain_label(text: str = "", *, selectable: bool = True, wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(wrap)
    # Expanding: a word-wrapped label in a form row otherwise keeps a narrow width and wraps early.
    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def addresses_text(addresses: tuple[ShownAddress, ...]) -> str:
    return ", ".join(a.text for a in addresses)


def remote_summary(urls: list[str]) -> str:
    hosts = sorted({urlsplit(u if "//" in u else "//" + u).hostname or u for u in urls})
    shown = ", ".join(escape_unsafe(h, strict=True) for h in hosts[:4]) + (" …" if len(hosts) > 4 else "")
    n = len(urls)
    return f"Remote content was blocked: {n} item{'s' if n != 1 else ''} from {shown}."


class ReadingPane(QWidget):
    loadRemoteRequested = Signal(bool)        # True: always for this sender
    saveRequested = Signal(object)            # AttachmentInfo
    saveAllRequested = Signal()
    linkActivated = Signal(QUrl)

    BODY_EMPTY, BODY_HTML, BODY_TEXT, BODY_SOURCE, BODY_HEADERS = range(5)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view: MessageView | None = None
        self.raw = b""
        self._parts: PartSource | None = None
        self._remote: list[str] = []
        self._allow_remote = False
        self._body_kind = self.BODY_EMPTY
        self._text_html: str | None = None

        self.subject_label = plain_label()
        font = QFont(self.subject_label.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.subject_label.setFont(font)
        self.subject_label.setObjectName("subject")
        self.from_label = plain_label()
        self.to_label = plain_label()
        self.cc_label = plain_label()
        self.date_label = plain_label()
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("From:", self.from_label)
        form.addRow("To:", self.to_label)
        self.cc_caption = QLabel("Cc:")
        form.addRow(self.cc_caption, self.cc_label)
        form.addRow("Date:", self.date_label)

        self.warning_label = plain_label()
        self.warning_label.setObjectName("addressWarning")
        self.warning_label.setStyleSheet("color: #b00020;")
        self.auth_label = plain_label()
        self.auth_label.setObjectName("authResults")
        self.dsn_label = plain_label()
        self.dsn_frame = QFrame()
        self.dsn_frame.setObjectName("dsnReport")
        self.dsn_frame.setFrameShape(QFrame.Shape.StyledPanel)
        self.dsn_frame.setStyleSheet("#dsnReport { background: #fff4e5; border: 1px solid #e0a040; }")
        QVBoxLayout(self.dsn_frame).addWidget(self.dsn_label)

        self.remote_label = plain_label(selectable=False)
        self.load_once_button = QPushButton("Load remote content")
        self.load_once_button.setToolTip("Load pictures and styles from the web for this message only "
                                         "(the sender learns that and when you read it)")
        self.load_always_button = QPushButton("Always for this sender")
        self.load_once_button.clicked.connect(lambda: self.loadRemoteRequested.emit(False))
        self.load_always_button.clicked.connect(lambda: self.loadRemoteRequested.emit(True))
        self.remote_bar = QFrame()
        self.remote_bar.setObjectName("remoteBar")
        self.remote_bar.setStyleSheet("#remoteBar { background: #fffbe6; border: 1px solid #d9c76a; }")
        bar = QHBoxLayout(self.remote_bar)
        bar.addWidget(self.remote_label, 1)
        bar.addWidget(self.load_once_button)
        bar.addWidget(self.load_always_button)

        self.html_button = QPushButton("HTML")
        self.text_button = QPushButton("Plain text")
        self.headers_button = QPushButton("All headers")
        self.source_button = QPushButton("Source")
        switches = QHBoxLayout()
        for button, kind in ((self.html_button, self.BODY_HTML), (self.text_button, self.BODY_TEXT),
                             (self.headers_button, self.BODY_HEADERS), (self.source_button, self.BODY_SOURCE)):
            button.setCheckable(True)
            button.setAutoExclusive(True)
            button.clicked.connect(lambda _=False, k=kind: self.show_body(k))
            switches.addWidget(button)
        switches.addStretch(1)

        self.empty_label = QLabel("Select a message to read it.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.web: MessageWebView | None = None          # created on the first HTML message (it is heavy)
        self.text_view = QTextBrowser()
        self.text_view.setOpenLinks(False)
        self.text_view.setOpenExternalLinks(False)
        self.text_view.anchorClicked.connect(self.linkActivated)
        self.text_view.setObjectName("textBody")
        self.source_view = QPlainTextEdit()
        self.source_view.setReadOnly(True)
        self.source_view.setObjectName("sourceView")
        self.source_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.headers_view = QPlainTextEdit()
        self.headers_view.setReadOnly(True)
        self.headers_view.setObjectName("headersView")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.source_view.setFont(mono)
        self.headers_view.setFont(mono)
        self.stack = QStackedWidget()
        self._web_slot = QWidget()          # replaced by the web view when first needed
        for widget in (self.empty_label, self._web_slot, self.text_view, self.source_view, self.headers_view):
            self.stack.addWidget(widget)

        self.attachment_list = QListWidget()
        self.attachment_list.setObjectName("attachments")
        self.attachment_list.itemActivated.connect(self._save_item)
        self.save_button = QPushButton("Save…")
        self.save_all_button = QPushButton("Save all…")
        self.save_button.clicked.connect(self._save_current)
        self.save_all_button.clicked.connect(self.saveAllRequested)
        self.attachment_box = QWidget()
        att_layout = QHBoxLayout(self.attachment_box)
        att_layout.setContentsMargins(0, 0, 0, 0)
        att_layout.addWidget(self.attachment_list, 1)
        att_buttons = QVBoxLayout()
        att_buttons.addWidget(self.save_button)
        att_buttons.addWidget(self.save_all_button)
        att_buttons.addStretch(1)
        att_layout.addLayout(att_buttons)

        self.header_box = QWidget()
        header_layout = QVBoxLayout(self.header_box)
        header_layout.setContentsMargins(0, 0, 0, 0)
        header_layout.addWidget(self.subject_label)
        header_layout.addLayout(form)
        header_layout.addWidget(self.warning_label)
        header_layout.addWidget(self.auth_label)
        header_layout.addWidget(self.dsn_frame)
        header_layout.addWidget(self.remote_bar)
        header_layout.addLayout(switches)
        # The headers take the room they need, the body all the rest.
        self.header_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.attachment_list.setMaximumHeight(110)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.stack)
        splitter.addWidget(self.attachment_box)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header_box)
        layout.addWidget(splitter, 1)
        self.clear()

    # --- showing -------------------------------------------------------------------------------------

    def clear(self, text: str = "Select a message to read it.") -> None:
        self.view = None
        self.raw = b""
        self._parts = None
        self._remote = []
        if self.web is not None:
            self.web.forget()
        self.header_box.hide()
        self.attachment_box.hide()
        self.empty_label.setText(text)
        self.stack.setCurrentWidget(self.empty_label)
        self._body_kind = self.BODY_EMPTY

    def _ensure_web(self) -> MessageWebView:
        if self.web is None:
            self.web = MessageWebView()
            self.web.setObjectName("htmlBody")
            self.web.remoteBlocked.connect(self._blocked)
            self.web.linkClicked.connect(self.linkActivated)
            index = self.stack.indexOf(self._web_slot)
            self.stack.removeWidget(self._web_slot)
            self._web_slot.deleteLater()
            self.stack.insertWidget(index, self.web)
        return self.web

    def show_message(self, view: MessageView, raw: bytes, parts: PartSource, *, allow_remote: bool,
                     text_html: str | None = None) -> None:
        """`text_html`: view.text already made into HTML (desktop.viewer.html.text_document) off the GUI
        thread; made here when not given."""
        self.view = view
        self._text_html = text_html
        self.raw = raw
        self._parts = parts
        self._allow_remote = allow_remote
        self._remote = []
        self.header_box.show()
        self.subject_label.setText(view.subject or "(no subject)")
        self.from_label.setText(addresses_text(view.sender) or "(no sender)")
        self.to_label.setText(addresses_text(view.to))
        self.cc_label.setText(addresses_text(view.cc))
        self.cc_label.setVisible(bool(view.cc))
        self.cc_caption.setVisible(bool(view.cc))
        self.date_label.setText(view.date)
        self.warning_label.setText("\n".join(f"⚠ {w}" for w in view.warnings))
        self.warning_label.setVisible(bool(view.warnings))
        self._show_auth(view)
        self._show_dsn(view)
        self._show_attachments(view)
        self.html_button.setEnabled(view.html is not None)
        self.text_button.setEnabled(view.text is not None or view.html is None)
        self.show_body(self.BODY_HTML if view.html is not None else self.BODY_TEXT)

    def _show_auth(self, view: MessageView) -> None:
        if not view.auth:
            self.auth_label.hide()
            return
        marks = {True: "✔", False: "✘", None: "•"}
        self.auth_label.setText("\n".join(f"{marks[v.good]} {v.text}" for v in view.auth))
        self.auth_label.show()

    def _show_dsn(self, view: MessageView) -> None:
        report = view.dsn
        if report is None:
            self.dsn_frame.hide()
            return
        lines = [report.headline + "."]
        for r in report.recipients:
            lines.append(f"• {r.recipient}: {r.action_words} — {r.reason}"
                         + (f" (server {r.remote_mta})" if r.remote_mta else ""))
        if report.reporting_mta:
            lines.append(f"Reported by {report.reporting_mta}.")
        self.dsn_label.setText("\n".join(lines))
        self.dsn_frame.show()

    def _show_attachments(self, view: MessageView) -> None:
        self.attachment_list.clear()
        listed = [a for a in view.attachments if not a.inline]
        for att in listed:
            item = QListWidgetItem(f"{att.name}  —  {att.content_type}, {format_size(att.size)}")
            item.setData(Qt.ItemDataRole.UserRole, att)
            item.setToolTip(tooltip(f"Saved as “{att.save_name}”. Attachments are never opened by Postroom."))
            self.attachment_list.addItem(item)
        if listed:
            self.attachment_list.setCurrentRow(0)
        self.attachment_box.setVisible(bool(listed))
        self.save_all_button.setEnabled(len(listed) > 1)

    def show_body(self, kind: int) -> None:
        view = self.view
        if view is None:
            return
        self._body_kind = kind
        buttons = {self.BODY_HTML: self.html_button, self.BODY_TEXT: self.text_button,
                   self.BODY_HEADERS: self.headers_button, self.BODY_SOURCE: self.source_button}
        if kind in buttons:
            buttons[kind].setChecked(True)
        if kind == self.BODY_HTML and view.html is not None and self._parts is not None:
            web = self._ensure_web()
            safe = web.show_html(view.html, view.cids, self._parts, allow_remote=self._allow_remote)
            self._remote = list(safe.remote)
            self.stack.setCurrentWidget(web)
        elif kind == self.BODY_HEADERS:
            self.headers_view.setPlainText(view.headers)
            self.stack.setCurrentWidget(self.headers_view)
        elif kind == self.BODY_SOURCE:
            text = escape_unsafe(self.raw[:MAX_SOURCE_CHARS].decode("utf-8", "replace"), keep_newlines=True)
            if len(self.raw) > MAX_SOURCE_CHARS:
                text += f"\n\n[… {format_size(len(self.raw) - MAX_SOURCE_CHARS)} more not shown]"
            self.source_view.setPlainText(text)
            self.stack.setCurrentWidget(self.source_view)
        else:
            if self._text_html is None:
                self._text_html = text_document(view.text or "")
            self.text_view.setHtml(self._text_html)
            self.stack.setCurrentWidget(self.text_view)
        self._update_remote_bar()

    def _blocked(self, url: str) -> None:
        if url not in self._remote:
            self._remote.append(url)
        self._update_remote_bar()

    def _update_remote_bar(self) -> None:
        show = self._body_kind == self.BODY_HTML and bool(self._remote) and not self._allow_remote
        if show:
            self.remote_label.setText(remote_summary(self._remote))
            sender = self.view.sender_key if self.view is not None else ""
            self.load_always_button.setVisible(bool(sender))
            self.load_always_button.setText(f"Always for {escape_unsafe(sender, strict=True)}")
        self.remote_bar.setVisible(show)

    def allow_remote(self) -> None:
        """The person chose to load remote content: show the message again with it."""
        self._allow_remote = True
        if self._body_kind == self.BODY_HTML:
            self.show_body(self.BODY_HTML)

    @property
    def remote_urls(self) -> list[str]:
        return list(self._remote)

    @property
    def body_kind(self) -> int:
        return self._body_kind

    # --- attachments ---------------------------------------------------------------------------------

    def attachments(self) -> list[AttachmentInfo]:
        return [self.attachment_list.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.attachment_list.count())]

    def _save_item(self, item: QListWidgetItem) -> None:
        self.saveRequested.emit(item.data(Qt.ItemDataRole.UserRole))

    def _save_current(self) -> None:
        item = self.attachment_list.currentItem()
        if item is not None:
            self._save_item(item)
