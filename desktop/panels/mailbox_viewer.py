"""Mailboxes: read the mail of a local account in the window — folders, message list, reading pane.

The panel wires the pieces together and owns the session state (which account is open, which folder,
which message); every engine call goes through the bridge (desktop.viewer.actions), every safety
decision is made in desktop.viewer's pure functions, and engine events keep the list and the folder
counts live.  Opening an account asks for its password once (remembered in the keyring if wished).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.messages import MessageListModel
from desktop.viewer import actions
from desktop.viewer.accounts import (
    KeyringUnavailable,
    forget_password,
    remember_password,
    remembered_password,
    verify_password,
)
from desktop.viewer.compose import Draft, forward_draft, reply_draft
from desktop.viewer.dialogs import ComposeDialog, PasswordDialog, SendTestDialog
from desktop.viewer.folders import INBOX, FolderTreeModel, load_folders
from desktop.viewer.message import AttachmentInfo
from desktop.viewer.reading import ReadingPane
from desktop.viewer.sendtest import SendResult, send_test_message
from desktop.viewer.text import escape_unsafe, one_line
from desktop.widgets.common import Debouncer, MessageLine
from engine.events import MailboxChanged, MessageStored
from engine.interfaces import FLAGGED, SEEN, Mailbox
from engine.secrets import SecretStore

REMOTE_SENDERS_KEY = "viewer/remote_content_senders"
SAVE_DIR_KEY = "viewer/last_save_folder"
SETTINGS_FILE = "desktop-viewer.ini"
LINK_SCHEMES = ("http", "https", "mailto")
NO_ACCOUNTS = "There are no accounts yet: add one under Domains & accounts."
ENGINE_NOT_STARTED = "Start the engine to read mail."


def _remember_or_explain(secrets: SecretStore, address: str, password: str, allow_file: bool) -> tuple[str, str]:
    """("keyring" | "file", "") on success, ("unavailable", why) when no keyring works (ask, then retry)."""
    try:
        return remember_password(secrets, address, password, allow_file=allow_file), ""
    except KeyringUnavailable as exc:
        return "unavailable", str(exc)


class MailboxViewerPanel(QWidget):
    title = "Mailboxes"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None, *,
                 secrets: SecretStore | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setObjectName("mailboxViewer")
        data_dir = Path(bridge.engine.data_dir)
        self.secrets = secrets if secrets is not None else SecretStore(data_dir)
        self.settings = settings if settings is not None else QSettings(
            str(data_dir / SETTINGS_FILE), QSettings.Format.IniFormat)
        self.account: str | None = None
        self.password = ""
        self.mailbox: Mailbox | None = None
        self.folder = ""
        self.current: actions.LoadedMessage | None = None
        self._reading_token = 0
        self._wanted_uid: int | None = None
        self._select_row_after_reload: int | None = None
        self.password_dialog: PasswordDialog | None = None
        self.send_dialog: SendTestDialog | None = None
        self.question: QMessageBox | None = None
        self.file_dialog: QFileDialog | None = None
        self.input_dialog: QInputDialog | None = None

        # --- account bar
        self.account_combo = QComboBox()
        self.account_combo.setObjectName("accountCombo")
        self.account_combo.setMinimumContentsLength(24)
        self.open_button = QPushButton("&Open")
        self.open_button.clicked.connect(lambda: self.open_account())
        self.forget_button = QPushButton("Forget saved password")
        self.forget_button.clicked.connect(self.forget_saved_password)
        self.send_test_button = QPushButton("Send &test message…")
        self.send_test_button.setToolTip("Send a message from the open account through this server")
        self.send_test_button.clicked.connect(self.open_send_test)
        account_bar = QHBoxLayout()
        account_bar.addWidget(QLabel("Account:"))
        account_bar.addWidget(self.account_combo)
        account_bar.addWidget(self.open_button)
        account_bar.addWidget(self.forget_button)
        account_bar.addStretch(1)
        account_bar.addWidget(self.send_test_button)
        self.message = MessageLine()
        # Folder names, addresses and server replies end up here: never as rich text.
        self.message.setTextFormat(Qt.TextFormat.PlainText)

        # --- folders
        self.folder_model = FolderTreeModel(self)
        self.folder_model.messagesDropped.connect(self._dropped)
        self.folder_view = QTreeView()
        self.folder_view.setObjectName("folders")
        self.folder_view.setModel(self.folder_model)
        self.folder_view.setHeaderHidden(True)
        self.folder_view.setAcceptDrops(True)
        self.folder_view.setDropIndicatorShown(True)
        self.folder_view.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.folder_view.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.folder_view.selectionModel().currentChanged.connect(self._folder_selected)
        self.new_folder_button = QToolButton()
        self.new_folder_button.setText("New")
        self.new_folder_button.clicked.connect(self.ask_new_folder)
        self.rename_folder_button = QToolButton()
        self.rename_folder_button.setText("Rename")
        self.rename_folder_button.clicked.connect(self.ask_rename_folder)
        self.delete_folder_button = QToolButton()
        self.delete_folder_button.setText("Delete")
        self.delete_folder_button.clicked.connect(self.ask_delete_folder)
        folder_buttons = QHBoxLayout()
        for b in (self.new_folder_button, self.rename_folder_button, self.delete_folder_button):
            folder_buttons.addWidget(b)
        folder_buttons.addStretch(1)
        folder_box = QWidget()
        folder_layout = QVBoxLayout(folder_box)
        folder_layout.setContentsMargins(0, 0, 0, 0)
        folder_layout.addWidget(self.folder_view, 1)
        folder_layout.addLayout(folder_buttons)

        # --- message list
        self.search_box = QLineEdit()
        self.search_box.setObjectName("search")
        self.search_box.setPlaceholderText("Search sender, subject and text (Ctrl+F)")
        self.search_box.setClearButtonEnabled(True)
        self._search_soon = Debouncer(self._apply_search, 400, self)
        self.search_box.textChanged.connect(lambda _t: self._search_soon.trigger())
        self.search_box.returnPressed.connect(self._search_soon.flush)
        self.threads_box = QCheckBox("Threads")
        self.threads_box.toggled.connect(self._threads_toggled)
        self.read_button = QToolButton()
        self.read_button.setText("Read/Unread")
        self.read_button.setToolTip("Mark the selected messages read, or unread if they all are")
        self.read_button.clicked.connect(self.toggle_read)
        self.flag_button = QToolButton()
        self.flag_button.setText("★ Flag")
        self.flag_button.clicked.connect(self.toggle_flag)
        self.move_button = QToolButton()
        self.move_button.setText("Move to")
        self.move_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.move_menu = QMenu(self.move_button)
        self.move_menu.aboutToShow.connect(self._fill_move_menu)
        self.move_button.setMenu(self.move_menu)
        self.delete_button = QToolButton()
        self.delete_button.setText("Delete")
        self.delete_button.setToolTip("Move to Trash; in Trash, delete for good (Delete)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.count_label = QLabel("")
        list_bar = QHBoxLayout()
        list_bar.addWidget(self.search_box, 1)
        list_bar.addWidget(self.threads_box)
        for b in (self.read_button, self.flag_button, self.move_button, self.delete_button):
            list_bar.addWidget(b)
        list_bar.addWidget(self.count_label)

        self.list_model = MessageListModel(bridge, self)
        self.list_model.loaded.connect(self._list_loaded)
        self.list_model.failed.connect(self.message.show_error)
        self.list_model.dataChanged.connect(self._list_data_changed)
        self.list_view = QTreeView()
        self.list_view.setObjectName("messages")
        self.list_view.setModel(self.list_model)
        self.list_view.setRootIsDecorated(False)
        self.list_view.setUniformRowHeights(True)
        self.list_view.setAllColumnsShowFocus(True)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list_view.setDragEnabled(True)
        self.list_view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.list_view.setDefaultDropAction(Qt.DropAction.MoveAction)
        header = self.list_view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(MessageListModel.SUBJECT, QHeaderView.ResizeMode.Stretch)
        for column, width in ((MessageListModel.FLAG, 28), (MessageListModel.ATTACHMENT, 28),
                              (MessageListModel.SENDER, 220), (MessageListModel.DATE, 130),
                              (MessageListModel.SIZE, 70)):
            header.resizeSection(column, width)
        header.setSortIndicator(MessageListModel.DATE, Qt.SortOrder.DescendingOrder)
        self._sort_shown = (MessageListModel.DATE, Qt.SortOrder.DescendingOrder)
        header.sortIndicatorChanged.connect(self._sort_indicator_changed)
        self.list_view.setSortingEnabled(True)
        self.list_view.selectionModel().currentChanged.connect(self._message_selected)
        list_box = QWidget()
        list_layout = QVBoxLayout(list_box)
        list_layout.setContentsMargins(0, 0, 0, 0)
        list_layout.addLayout(list_bar)
        list_layout.addWidget(self.list_view, 1)

        # --- writing
        self.new_button = QToolButton()
        self.new_button.setText("New message")
        self.new_button.setToolTip("Write a message from the open account (Ctrl+N)")
        self.new_button.clicked.connect(self.compose_new)
        self.reply_button = QToolButton()
        self.reply_button.setText("Reply")
        self.reply_button.setToolTip("Reply to the sender (Ctrl+R)")
        self.reply_button.clicked.connect(lambda: self.compose_reply(False))
        self.reply_all_button = QToolButton()
        self.reply_all_button.setText("Reply all")
        self.reply_all_button.setToolTip("Reply to the sender and everyone else it went to (Ctrl+Shift+R)")
        self.reply_all_button.clicked.connect(lambda: self.compose_reply(True))
        self.forward_button = QToolButton()
        self.forward_button.setText("Forward")
        self.forward_button.setToolTip("Forward the message whole, as an attachment (Ctrl+L)")
        self.forward_button.clicked.connect(self.compose_forward)
        write_bar = QHBoxLayout()
        for b in (self.new_button, self.reply_button, self.reply_all_button, self.forward_button):
            write_bar.addWidget(b)
        write_bar.addStretch(1)
        self.compose_dialogs: list[ComposeDialog] = []

        # --- reading
        self.reading = ReadingPane()
        self.reading.loadRemoteRequested.connect(self._load_remote)
        self.reading.saveRequested.connect(self.save_attachment)
        self.reading.saveAllRequested.connect(self.save_all_attachments)
        self.reading.linkActivated.connect(self.open_link)

        reading_box = QWidget()
        reading_layout = QVBoxLayout(reading_box)
        reading_layout.setContentsMargins(0, 0, 0, 0)
        reading_layout.addLayout(write_bar)
        reading_layout.addWidget(self.reading, 1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(list_box)
        right.addWidget(reading_box)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(folder_box)
        main.addWidget(right)
        main.setStretchFactor(0, 1)
        main.setStretchFactor(1, 4)
        main.setSizes([220, 880])
        layout = QVBoxLayout(self)
        layout.addLayout(account_bar)
        layout.addWidget(self.message)
        layout.addWidget(main, 1)

        # --- keyboard
        def shortcut(keys: QKeySequence | QKeySequence.StandardKey | str, slot: Any, widget: QWidget,
                     context: Qt.ShortcutContext = Qt.ShortcutContext.WidgetWithChildrenShortcut) -> QShortcut:
            sc = QShortcut(QKeySequence(keys), widget, slot)
            sc.setContext(context)
            return sc

        self.shortcuts = [
            shortcut("J", self.next_message, self),
            shortcut("K", self.previous_message, self),
            shortcut(QKeySequence.StandardKey.Find, self.focus_search, self),
            shortcut(QKeySequence.StandardKey.Delete, self.delete_selected, self.list_view,
                     Qt.ShortcutContext.WidgetShortcut),
            shortcut(QKeySequence.StandardKey.Delete, self.delete_selected, self.reading),
            shortcut("Ctrl+N", self.compose_new, self),
            shortcut("Ctrl+R", lambda: self.compose_reply(False), self),
            shortcut("Ctrl+Shift+R", lambda: self.compose_reply(True), self),
            shortcut("Ctrl+L", self.compose_forward, self),
        ]

        # --- live
        self._folders_soon = Debouncer(self.refresh_folders, 250, self)
        self._list_soon = Debouncer(self.list_model.refresh, 150, self)
        bridge.messageStored.connect(self._engine_event)
        bridge.mailboxChanged.connect(self._engine_event)
        bridge.directoryChanged.connect(self.refresh_accounts)
        bridge.engineStateChanged.connect(self._engine_state)
        self._update_actions()
        self.reading.clear("Open an account to read its mail.")
        self.refresh_accounts()

    # --- accounts ------------------------------------------------------------------------------------

    def _engine_state(self, state: str) -> None:
        if state == "running":
            self.refresh_accounts()

    def refresh_accounts(self) -> None:
        directory = self.bridge.engine.directory
        if directory is None:
            self.message.show_info(ENGINE_NOT_STARTED)
            return
        self.bridge.call(directory.list_accounts, on_result=self._show_accounts,
                         on_error=self.message.show_error, owner=self)

    def _show_accounts(self, accounts: list[Any]) -> None:
        current = self.account_combo.currentData() or self.account
        self.account_combo.clear()
        for account in accounts:
            label = escape_unsafe(account.address, strict=True) + ("" if account.enabled else " (disabled)")
            self.account_combo.addItem(label, account.address)
        if current:
            index = self.account_combo.findData(current)
            if index >= 0:
                self.account_combo.setCurrentIndex(index)
        if not accounts:
            self.message.show_info(NO_ACCOUNTS)
        elif self.message.text() in (NO_ACCOUNTS, ENGINE_NOT_STARTED):
            self.message.clear_message()
        self._update_actions()

    def open_account(self, address: str | None = None) -> None:
        """Opens `address` (default: the one chosen): a remembered password first, else asks."""
        address = address or self.account_combo.currentData()
        if not address:
            return
        engine = self.bridge.engine
        if engine.directory is None or engine.store is None:
            self.message.show_error("Start the engine to read mail.")
            return
        self.message.show_info(f"Opening {address}…")
        self.bridge.call(remembered_password, self.secrets, engine.directory, address,
                         on_result=lambda pw: self._unlock(address, pw) if pw else self._ask_password(address),
                         on_error=self.message.show_error, owner=self)

    def _ask_password(self, address: str) -> None:
        self.message.clear_message()
        if self.password_dialog is not None:
            self.password_dialog.close()
        dialog = PasswordDialog(address, self)
        self.password_dialog = dialog
        dialog.submitted.connect(lambda pw, remember: self._check_password(dialog, address, pw, remember))
        dialog.finished.connect(lambda _r: self._dialog_closed(dialog))
        dialog.open()

    def _dialog_closed(self, dialog: PasswordDialog) -> None:
        if self.password_dialog is dialog:
            self.password_dialog = None
        dialog.deleteLater()

    def _check_password(self, dialog: PasswordDialog, address: str, password: str, remember: bool) -> None:
        def checked(ok: bool) -> None:
            if not ok:
                dialog.wrong()
                return
            dialog.accept()
            self._unlock(address, password)
            if remember:
                self._remember(address, password, allow_file=False)

        self.bridge.call(verify_password, self.bridge.engine.directory, address, password,
                         on_result=checked, on_error=dialog.wrong, owner=dialog)

    def _remember(self, address: str, password: str, *, allow_file: bool) -> None:
        def stored(result: tuple[str, str]) -> None:
            where, why = result
            if where == "keyring":
                self.message.show_info(f"The password of {address} is remembered in the system keyring.")
            elif where == "file":
                self.message.show_info(f"The password of {address} is remembered in {self.secrets.file_path} "
                                       "(readable only by your user account).")
            else:
                self._ask_file_fallback(address, password, why)

        self.bridge.call(_remember_or_explain, self.secrets, address, password, allow_file,
                         on_result=stored, on_error=self.message.show_error, owner=self)

    def _ask_file_fallback(self, address: str, password: str, why: str) -> None:
        """The same choice as the settings' smarthost password: a file only if the person says so."""
        self._ask(
            "Remember the password in a file?",
            f"The password of {address} cannot go into the system keyring: {why}.",
            f"Postroom can keep it in {self.secrets.file_path} instead, readable only by your user account "
            "(anyone who can log in as you, or read your backups, could read it).",
            "Store in file",
            lambda: self._remember(address, password, allow_file=True),
            destructive=False,
        )

    def forget_saved_password(self) -> None:
        address = self.account_combo.currentData()
        if not address:
            return
        self.bridge.call(forget_password, self.secrets, address,
                         on_result=lambda _r: self.message.show_info(f"No password of {address} is remembered now."),
                         on_error=self.message.show_error, owner=self)

    def _unlock(self, address: str, password: str) -> None:
        self.bridge.call(self.bridge.engine.store.mailbox, address,
                         on_result=lambda box: self._opened(address, password, box),
                         on_error=self.message.show_error, owner=self)

    def _opened(self, address: str, password: str, mailbox: Mailbox) -> None:
        self.account, self.password, self.mailbox = address, password, mailbox
        self.folder = ""
        self.current = None
        self.folder_model.set_folders(address, [])
        self.list_model.open(None, "")
        self.reading.clear()
        index = self.account_combo.findData(address)
        if index >= 0:
            self.account_combo.setCurrentIndex(index)
        self.message.show_info(f"{address} is open.")
        self._update_actions()
        self.refresh_folders(select=INBOX)

    # --- folders -------------------------------------------------------------------------------------

    def refresh_folders(self, select: str | None = None) -> None:
        if self.mailbox is None or self.account is None:
            return
        account = self.account
        self.bridge.submit(load_folders(self.mailbox),
                           lambda rows: self._show_folders(account, rows, select),
                           self.message.show_error, owner=self)

    def _show_folders(self, account: str, rows: list[Any], select: str | None) -> None:
        if account != self.account:
            return
        self.folder_model.set_folders(account, rows)
        self.folder_view.expandAll()
        wanted = select or self.folder
        if wanted and self.folder_model.row_for(wanted) is None:
            wanted = INBOX
        if wanted and (select or wanted != self.folder):
            index = self.folder_model.index_of(wanted)
            if index.isValid():
                self.folder_view.setCurrentIndex(index)
        elif self.folder:
            current = self.folder_model.index_of(self.folder)
            if current.isValid() and self.folder_view.currentIndex() != current:
                self.folder_view.selectionModel().setCurrentIndex(
                    current, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _folder_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        name = current.data(FolderTreeModel.NameRole) if current.isValid() else ""
        if not name or name == self.folder or self.mailbox is None:
            return
        self.open_folder(name)

    def open_folder(self, name: str) -> None:
        assert self.mailbox is not None
        self.folder = name
        self.current = None
        self._wanted_uid = None
        self.reading.clear()
        self.search_box.blockSignals(True)
        self.search_box.clear()
        self.search_box.blockSignals(False)
        self.list_model.open(self.mailbox, name)
        self.count_label.setText("")
        self._update_actions()

    def selected_folder(self) -> str:
        index = self.folder_view.currentIndex()
        return str(index.data(FolderTreeModel.NameRole) or "") if index.isValid() else ""

    def ask_new_folder(self) -> None:
        if self.mailbox is None:
            return
        parent = self.folder_model.row_for(self.selected_folder())
        # Inside the selected folder when it is an ordinary one; at the top next to INBOX, Sent, Trash...
        suggestion = f"{parent.name}/" if parent is not None and parent.special_use is None else ""
        self._ask_text("New folder", "Name of the new folder (use / for a folder inside another):",
                       suggestion, lambda name: self._folder_op(actions.create_folder(self._box(), name),
                                                                 f"Folder {name} created.", select=name))

    def ask_rename_folder(self) -> None:
        name = self.selected_folder()
        if self.mailbox is None or not name or name == INBOX:
            return
        self._ask_text("Rename folder", f"New name of {one_line(name)}:", name,
                       lambda new: self._folder_op(actions.rename_folder(self._box(), name, new),
                                                   f"Folder renamed to {new}.", select=new))

    def ask_delete_folder(self) -> None:
        name = self.selected_folder()
        if self.mailbox is None or not name or name == INBOX:
            return
        row = self.folder_model.row_for(name)
        count = row.messages if row else 0
        self._ask(f"Delete the folder {one_line(name)}?",
                  f"Its {count} message{'s' if count != 1 else ''} will be deleted for good.",
                  "Folders inside it are kept.", "Delete folder",
                  lambda: self._folder_op(actions.delete_folder(self._box(), name),
                                          f"Folder {name} deleted.", select=INBOX))

    def _folder_op(self, coro: Any, done: str, select: str | None = None) -> None:
        def ok(_result: Any) -> None:
            self.message.show_info(done)
            if select == INBOX:
                self.folder = ""
            self.refresh_folders(select=select)

        self.bridge.submit(coro, ok, self.message.show_error, owner=self)

    def _box(self) -> Mailbox:
        assert self.mailbox is not None
        return self.mailbox

    # --- message list --------------------------------------------------------------------------------

    def _apply_search(self) -> None:
        text = self.search_box.text().strip()
        if text:
            self.count_label.setText("Searching…")
        self.list_model.set_search(text)

    def _sort_indicator_changed(self, section: int, order: Qt.SortOrder) -> None:
        """The flag and attachment columns do not sort (the index has no such order): put the arrow back."""
        if section in MessageListModel.SORT_KEYS:
            self._sort_shown = (section, order)
            return
        header = self.list_view.header()
        header.blockSignals(True)
        header.setSortIndicator(*self._sort_shown)
        header.blockSignals(False)

    def _threads_toggled(self, on: bool) -> None:
        self.list_model.set_threaded(on)
        self.list_view.setSortingEnabled(not on)
        if not on:
            self.list_view.header().setSortIndicator(MessageListModel.DATE, Qt.SortOrder.DescendingOrder)

    def _list_loaded(self) -> None:
        n = self.list_model.rowCount()
        words = f"{n} message{'s' if n != 1 else ''}"
        self.count_label.setText(f"{words} found" if self.list_model.search else words)
        uid = self._wanted_uid if self._wanted_uid is not None else (self.current.uid if self.current else None)
        row = self.list_model.row_of(uid) if uid is not None else None
        if row is None and self._select_row_after_reload is not None and n:
            row = min(self._select_row_after_reload, n - 1)
        self._select_row_after_reload = None
        if row is not None:
            self._select_row(row)

    def _list_data_changed(self, top: QModelIndex, bottom: QModelIndex, _roles: Any = None) -> None:
        """A row the person selected before its page had arrived: show it now."""
        current = self.list_view.currentIndex()
        if current.isValid() and self.current is None and top.row() <= current.row() <= bottom.row():
            uid = self.list_model.uid_at(current.row())
            if uid is not None and uid != self._wanted_uid:
                self.show_uid(uid)

    def _select_row(self, row: int) -> None:
        index = self.list_model.index(row, MessageListModel.SUBJECT)
        self.list_view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.list_view.scrollTo(index)

    def _message_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        uid = self.list_model.uid_at(current.row())
        if uid is not None:
            self.show_uid(uid)

    def show_uid(self, uid: int) -> None:
        """Reads message `uid` of the current folder (off the GUI thread) and shows it."""
        if self.mailbox is None or not self.folder:
            return
        if self.current is not None and self.current.uid == uid and self.current.folder == self.folder:
            return
        self._wanted_uid = uid
        self._reading_token += 1
        token = self._reading_token
        authserv_id = self.bridge.engine.config.hostname
        self.bridge.submit(actions.load_message(self.mailbox, self.folder, uid, authserv_id),
                           lambda loaded: self._show_loaded(token, loaded),
                           lambda text: self._read_failed(token, text), owner=self)

    def _read_failed(self, token: int, text: str) -> None:
        if token == self._reading_token:
            self.reading.clear(f"This message cannot be shown: {text}")

    def _show_loaded(self, token: int, loaded: actions.LoadedMessage) -> None:
        if token != self._reading_token or loaded.folder != self.folder:
            return
        self.current = loaded
        self.reading.show_message(loaded.view, loaded.raw, loaded.part, text_html=loaded.text_html,
                                  allow_remote=self._remote_allowed_for(loaded.view.sender_key))
        self._update_actions()
        row = self.list_model.row_of(loaded.uid)
        summary = self.list_model.summary_at(row) if row is not None else None
        if summary is not None and SEEN not in summary.flags and self.mailbox is not None:
            self.bridge.submit(actions.set_flag(self.mailbox, self.folder, [loaded.uid], SEEN, True),
                               None, self.message.show_error, owner=self)

    def selected_uids(self) -> list[int]:
        rows = {i.row() for i in self.list_view.selectionModel().selectedRows()}
        if not rows and self.list_view.currentIndex().isValid():
            rows = {self.list_view.currentIndex().row()}
        return sorted(uid for r in rows if (uid := self.list_model.uid_at(r)) is not None)

    def next_message(self) -> None:
        self._step(1)

    def previous_message(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        count = self.list_model.rowCount()
        if not count:
            return
        current = self.list_view.currentIndex()
        row = current.row() + delta if current.isValid() else 0
        self._select_row(max(0, min(count - 1, row)))
        self.list_view.setFocus()

    def focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    # --- acting on messages ----------------------------------------------------------------------------

    def _flags_of(self, uids: list[int]) -> list[frozenset[str]]:
        out = []
        for uid in uids:
            row = self.list_model.row_of(uid)
            summary = self.list_model.summary_at(row) if row is not None else None
            out.append(summary.flags if summary is not None else frozenset())
        return out

    def toggle_read(self) -> None:
        uids = self.selected_uids()
        if uids:
            all_read = all(SEEN in f for f in self._flags_of(uids))
            self._flag(uids, SEEN, not all_read)

    def toggle_flag(self) -> None:
        uids = self.selected_uids()
        if uids:
            all_flagged = all(FLAGGED in f for f in self._flags_of(uids))
            self._flag(uids, FLAGGED, not all_flagged)

    def _flag(self, uids: list[int], flag: str, on: bool) -> None:
        if self.mailbox is None:
            return
        self.bridge.submit(actions.set_flag(self.mailbox, self.folder, uids, flag, on),
                           lambda _r: self.list_model.refresh(), self.message.show_error, owner=self)

    def _fill_move_menu(self) -> None:
        self.move_menu.clear()
        for name in self.folder_model.names():
            if name != self.folder:
                action = self.move_menu.addAction(one_line(name))
                action.triggered.connect(functools.partial(self.move_selected, name))

    def move_selected(self, target: str) -> None:
        uids = self.selected_uids()
        if uids:
            self._move(self.folder, uids, target)

    def _dropped(self, source: str, target: str, uids: list[int]) -> None:
        self._move(source, uids, target)

    def _move(self, source: str, uids: list[int], target: str) -> None:
        if self.mailbox is None:
            return
        self._remember_position()
        self.bridge.submit(actions.move(self.mailbox, source, uids, target),
                           lambda n: self._after_change(f"Moved {n} message{'s' if n != 1 else ''} to {target}."),
                           self.message.show_error, owner=self)

    def _remember_position(self) -> None:
        current = self.list_view.currentIndex()
        self._select_row_after_reload = current.row() if current.isValid() else None
        self.current = None
        self._wanted_uid = None

    def _after_change(self, text: str) -> None:
        self.message.show_info(text)
        self.reading.clear()
        self._update_actions()
        self.list_model.refresh()
        self.refresh_folders()

    def trash_folder(self) -> str:
        return self.folder_model.special("\\Trash") or "Trash"

    def delete_selected(self) -> None:
        """Into Trash; in Trash, for good after a question."""
        uids = self.selected_uids()
        if not uids or self.mailbox is None:
            return
        trash = self.trash_folder()
        n = len(uids)
        what = f"{n} message{'s' if n != 1 else ''}"
        if self.folder == trash:
            folder = self.folder
            self._ask(f"Delete {what} for good?", "They are removed from the disk; this cannot be undone.",
                      "", "Delete for good", lambda: self._remove(folder, uids, what))
            return
        self._remember_position()
        self.bridge.submit(actions.move_to_trash(self.mailbox, self.folder, uids, trash),
                           lambda _n: self._after_change(f"Moved {what} to {trash}."),
                           self.message.show_error, owner=self)

    def _remove(self, folder: str, uids: list[int], what: str) -> None:
        if self.mailbox is None:
            return
        self._remember_position()
        self.bridge.submit(actions.remove(self.mailbox, folder, uids),
                           lambda _n: self._after_change(f"Deleted {what} for good."),
                           self.message.show_error, owner=self)

    # --- reading: remote content, links, attachments -------------------------------------------------

    def _remote_senders(self) -> set[str]:
        value = self.settings.value(REMOTE_SENDERS_KEY, [])
        if isinstance(value, str):
            return {value.lower()} if value else set()
        return {str(v).lower() for v in value} if isinstance(value, list) else set()

    def _remote_allowed_for(self, sender: str) -> bool:
        return bool(sender) and sender.lower() in self._remote_senders()

    def _load_remote(self, always: bool) -> None:
        if always and self.current is not None and self.current.view.sender_key:
            senders = self._remote_senders() | {self.current.view.sender_key}
            self.settings.setValue(REMOTE_SENDERS_KEY, sorted(senders))
            self.settings.sync()
        self.reading.allow_remote()

    def open_link(self, url: QUrl) -> None:
        """Only after a click, only web and mail links, only in the system's own programs."""
        if url.scheme().lower() in LINK_SCHEMES:
            QDesktopServices.openUrl(url)
        else:
            self.message.show_error(f"Links of the kind “{escape_unsafe(url.scheme())}:” are not opened.")

    def _save_folder(self) -> str:
        saved = str(self.settings.value(SAVE_DIR_KEY, "") or "")
        return saved if saved and Path(saved).is_dir() else str(Path.home())

    def save_attachment(self, attachment: AttachmentInfo) -> None:
        """A save dialog with the cleaned name; nothing is ever opened."""
        if self.current is None:
            return
        loaded = self.current
        dialog = QFileDialog(self, "Save attachment", self._save_folder())
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.selectFile(attachment.save_name)
        dialog.fileSelected.connect(lambda path: self._write_attachment(loaded, attachment, path))
        self._open_file_dialog(dialog)

    def save_all_attachments(self) -> None:
        if self.current is None:
            return
        loaded = self.current
        dialog = QFileDialog(self, "Save all attachments into", self._save_folder())
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(lambda path: self._write_all(loaded, path))
        self._open_file_dialog(dialog)

    def _open_file_dialog(self, dialog: QFileDialog) -> None:
        if self.file_dialog is not None:
            self.file_dialog.close()
        self.file_dialog = dialog
        dialog.finished.connect(lambda _r: self._file_dialog_closed(dialog))
        dialog.open()

    def _file_dialog_closed(self, dialog: QFileDialog) -> None:
        if self.file_dialog is dialog:
            self.file_dialog = None
        dialog.deleteLater()

    def _write_attachment(self, loaded: actions.LoadedMessage, attachment: AttachmentInfo, chosen: str) -> None:
        path = actions.target_path(chosen, attachment.save_name)
        self.settings.setValue(SAVE_DIR_KEY, str(path.parent))
        self.bridge.submit(actions.save_part(loaded.message, attachment.part, path),
                           lambda p: self.message.show_info(f"Saved {p.name} in {p.parent}."),
                           self.message.show_error, owner=self)

    def _write_all(self, loaded: actions.LoadedMessage, folder: str) -> None:
        parts = [(a.part, a.save_name) for a in loaded.view.attachments if not a.inline]
        self.settings.setValue(SAVE_DIR_KEY, folder)
        self.bridge.submit(actions.save_parts(loaded.message, parts, Path(folder)),
                           lambda paths: self.message.show_info(f"Saved {len(paths)} attachments in {folder}."),
                           self.message.show_error, owner=self)

    # --- writing -------------------------------------------------------------------------------------

    def compose_new(self) -> ComposeDialog | None:
        return self.compose(Draft())

    def compose_reply(self, to_all: bool) -> None:
        if self.current is not None and self.account is not None:
            self.compose(reply_draft(self.current.view, self.current.message, self.account, to_all=to_all),
                         answered=(self.current.folder, self.current.uid))

    def compose_forward(self) -> None:
        if self.current is not None:
            self.compose(forward_draft(self.current.view, self.current.raw))

    def compose(self, draft: Draft, answered: tuple[str, int] | None = None) -> ComposeDialog | None:
        """Opens a message window; sending goes the way "Send test message" goes, plus a copy in Sent."""
        if self.account is None or self.mailbox is None:
            self.message.show_error("Open an account first: mail is sent from it, with its password.")
            return None
        dialog = ComposeDialog(self.account, draft, self)
        account, password, mailbox = self.account, self.password, self.mailbox
        sent = self.folder_model.special("\\Sent") or "Sent"
        self.compose_dialogs.append(dialog)

        def send(edited: Draft) -> None:
            def ok(result: SendResult) -> None:
                dialog.done_sending(result.words, True)
                self.message.show_info(result.words)

            self.bridge.submit(actions.send_draft(self.bridge.engine, mailbox, account, password, edited, sent,
                                                  answered),
                               ok, lambda text: dialog.done_sending(f"Not sent: {text}", False), owner=dialog)

        def closed(_r: int) -> None:
            if dialog in self.compose_dialogs:
                self.compose_dialogs.remove(dialog)
            dialog.deleteLater()

        dialog.send.connect(send)
        dialog.finished.connect(closed)
        dialog.show()
        return dialog

    # --- send test message ---------------------------------------------------------------------------

    def open_send_test(self) -> None:
        if self.account is None:
            self.message.show_error("Open an account first: the test is sent from it, with its password.")
            return
        if self.send_dialog is not None:
            self.send_dialog.raise_()
            return
        dialog = SendTestDialog(self.account, self)
        self.send_dialog = dialog
        account, password = self.account, self.password
        dialog.send.connect(lambda to: self._send_test(dialog, account, password, to))

        def closed(_r: int) -> None:
            if self.send_dialog is dialog:
                self.send_dialog = None
            dialog.deleteLater()

        dialog.finished.connect(closed)
        dialog.open()

    def _send_test(self, dialog: SendTestDialog, account: str, password: str, recipient: str) -> None:
        self.bridge.submit(send_test_message(self.bridge.engine, account, password, recipient),
                           lambda result: dialog.done_sending(result.words, True),
                           lambda text: dialog.done_sending(f"Not sent: {text}", False), owner=dialog)

    # --- engine events -------------------------------------------------------------------------------

    def _engine_event(self, event: MessageStored | MailboxChanged) -> None:
        if self.account is None or event.account.lower() != self.account.lower():
            return
        self._folders_soon.trigger()
        if event.folder is None or event.folder == self.folder:
            self._list_soon.trigger()

    def refresh(self) -> None:
        """The window's Refresh (F5)."""
        self.refresh_accounts()
        self.refresh_folders()
        self.list_model.refresh()

    # --- helpers -------------------------------------------------------------------------------------

    def _update_actions(self) -> None:
        has_account = self.account is not None
        has_accounts = self.account_combo.count() > 0
        self.open_button.setEnabled(has_accounts)
        self.forget_button.setEnabled(has_accounts)
        self.send_test_button.setEnabled(has_account)
        has_message = has_account and self.current is not None
        self.new_button.setEnabled(has_account)
        for button in (self.reply_button, self.reply_all_button, self.forward_button):
            button.setEnabled(has_message)
        for widget in (self.new_folder_button, self.rename_folder_button, self.delete_folder_button,
                       self.search_box, self.threads_box, self.read_button, self.flag_button,
                       self.move_button, self.delete_button):
            widget.setEnabled(has_account)

    def _ask(self, question: str, detail: str, more: str, verb: str, then: Any, *,
             destructive: bool = True) -> None:
        """A question without a nested event loop (QMessageBox.open)."""
        if self.question is not None:
            self.question.close()
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question)
        box.setWindowTitle(verb)
        box.setTextFormat(Qt.TextFormat.PlainText)       # folder names and addresses, never markup
        box.setText(question)
        box.setInformativeText(" ".join(t for t in (detail, more) if t))
        yes = box.addButton(verb, QMessageBox.ButtonRole.DestructiveRole if destructive
                            else QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        self.question = box
        self.question_yes = yes

        def answered(_result: int) -> None:
            clicked = box.clickedButton()
            if self.question is box:
                self.question = None
            box.deleteLater()
            if clicked is yes:
                then()

        box.finished.connect(answered)
        box.open()

    def _ask_text(self, title: str, label: str, text: str, then: Any) -> None:
        if self.input_dialog is not None:
            self.input_dialog.close()
        dialog = QInputDialog(self)
        dialog.setWindowTitle(title)
        dialog.setLabelText(label)
        dialog.setTextValue(text)
        self.input_dialog = dialog

        def chosen(value: str) -> None:
            value = value.strip().strip("/")
            if value:
                then(value)

        def closed(_r: int) -> None:
            if self.input_dialog is dialog:
                self.input_dialog = None
            dialog.deleteLater()

        dialog.textValueSelected.connect(chosen)
        dialog.finished.connect(closed)
        dialog.open()

