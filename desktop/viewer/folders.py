"""The account's folder tree: names by hierarchy, unread counts, special-use icons, and message drops.

Folder names are IMAP names with "/" as the separator (engine.interfaces.FolderInfo); special-use
attributes are RFC 6154's.  Dropping message rows (desktop.models.messages.MIME_TYPE) on a folder emits
`messagesDropped`; the panel does the move through the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QMimeData, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QFont, QIcon, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QApplication, QStyle

from desktop.models.messages import MIME_TYPE, decode_drag
from desktop.viewer.text import one_line, tooltip
from engine.interfaces import Mailbox

Index = QModelIndex | QPersistentModelIndex
INBOX = "INBOX"
SEPARATOR = "/"

# RFC 6154 special-use -> (freedesktop icon name, fallback standard pixmap, order in the tree)
SPECIAL = {
    "\\Inbox": ("mail-folder-inbox", QStyle.StandardPixmap.SP_DriveHDIcon, 0),
    "\\Drafts": ("document-edit", QStyle.StandardPixmap.SP_FileDialogDetailedView, 1),
    "\\Sent": ("mail-folder-sent", QStyle.StandardPixmap.SP_ArrowRight, 2),
    "\\Archive": ("folder-documents", QStyle.StandardPixmap.SP_DirIcon, 3),
    "\\Junk": ("mail-mark-junk", QStyle.StandardPixmap.SP_MessageBoxWarning, 4),
    "\\Trash": ("user-trash", QStyle.StandardPixmap.SP_TrashIcon, 5),
}


@dataclass(frozen=True)
class FolderRow:
    name: str                   # IMAP name, "/"-separated
    special_use: str | None
    messages: int
    unseen: int


def _folder_rows(mailbox: Mailbox) -> list[FolderRow]:
    rows = []
    for info in mailbox.folders():
        try:
            status = mailbox.status(info.name)
        except Exception:       # vanished between the two calls: skip, the next refresh is right
            continue
        special = "\\Inbox" if info.name == INBOX else info.special_use
        rows.append(FolderRow(info.name, special, status.messages, status.unseen))
    return rows


async def load_folders(mailbox: Mailbox) -> list[FolderRow]:
    return await asyncio.to_thread(_folder_rows, mailbox)


def display_name(name: str) -> str:
    leaf = name.rsplit(SEPARATOR, 1)[-1]
    return "Inbox" if name == INBOX else one_line(leaf)


def sort_key(row: FolderRow) -> tuple[int, str]:
    order = SPECIAL[row.special_use][2] if row.special_use in SPECIAL and SEPARATOR not in row.name else 10
    return order, row.name.casefold()


def folder_icon(special_use: str | None) -> QIcon:
    if special_use in SPECIAL:
        theme, fallback, _ = SPECIAL[special_use]
        style = QApplication.style()
        return QIcon.fromTheme(theme, style.standardIcon(fallback))
    return QIcon.fromTheme("folder", QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon))


class FolderTreeModel(QStandardItemModel):
    """One item per folder (placeholders for missing parents); the folder's name in NameRole."""

    NameRole = Qt.ItemDataRole.UserRole + 1
    SpecialRole = Qt.ItemDataRole.UserRole + 2
    UnseenRole = Qt.ItemDataRole.UserRole + 3

    messagesDropped = Signal(str, str, list)      # source folder, target folder, uids

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.account = ""
        self._items: dict[str, QStandardItem] = {}
        self._rows: dict[str, FolderRow] = {}

    def set_folders(self, account: str, rows: Sequence[FolderRow]) -> None:
        """Updates counts in place when the folders are the same; rebuilds the tree when they are not."""
        by_name = {r.name: r for r in rows}
        if account == self.account and set(by_name) == set(self._rows):
            for name, row in by_name.items():
                if row != self._rows[name]:
                    self._rows[name] = row
                    self._decorate(self._items[name], row)
            return
        self.account = account
        self.clear()
        self._items.clear()
        self._rows = dict(by_name)
        for row in sorted(rows, key=lambda r: (r.name.count(SEPARATOR), sort_key(r))):
            self._place(row)

    def _place(self, row: FolderRow) -> None:
        parent_name, sep, _leaf = row.name.rpartition(SEPARATOR)
        parent = self.invisibleRootItem()
        if sep:
            parent = self._items.get(parent_name) or self._placeholder(parent_name)
        item = QStandardItem()
        item.setEditable(False)
        item.setData(row.name, self.NameRole)
        item.setData(row.special_use, self.SpecialRole)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDropEnabled)
        self._decorate(item, row)
        parent.appendRow(item)
        self._items[row.name] = item

    def _placeholder(self, name: str) -> QStandardItem:
        """A parent that is not a folder itself (made by another program): shown, not selectable."""
        parent_name, sep, _ = name.rpartition(SEPARATOR)
        parent = (self._items.get(parent_name) or self._placeholder(parent_name)) if sep \
            else self.invisibleRootItem()
        item = QStandardItem(display_name(name))
        item.setEditable(False)
        item.setData("", self.NameRole)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        parent.appendRow(item)
        self._items[name] = item
        return item

    def _decorate(self, item: QStandardItem, row: FolderRow) -> None:
        name = display_name(row.name)
        item.setText(f"{name} ({row.unseen})" if row.unseen else name)
        item.setData(row.unseen, self.UnseenRole)
        font = QFont()
        font.setBold(row.unseen > 0)
        item.setFont(font)
        item.setIcon(folder_icon(row.special_use))
        item.setToolTip(tooltip(f"{one_line(row.name)}: {row.messages} messages, {row.unseen} unread"))

    # --- lookups -------------------------------------------------------------------------------------

    def index_of(self, name: str) -> QModelIndex:
        item = self._items.get(name)
        return item.index() if item is not None and item.data(self.NameRole) else QModelIndex()

    def row_for(self, name: str) -> FolderRow | None:
        return self._rows.get(name)

    def names(self) -> list[str]:
        return sorted(self._rows)

    def special(self, special_use: str) -> str | None:
        """The folder with this special use (e.g. "\\\\Trash"), if the account has one."""
        return next((r.name for r in self._rows.values() if r.special_use == special_use), None)

    # --- dropping messages ---------------------------------------------------------------------------

    def mimeTypes(self) -> list[str]:
        return [MIME_TYPE]

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                        parent: Index) -> bool:
        # row == -1: dropped onto the folder itself, not between two folders.
        target = parent.data(self.NameRole) if parent.isValid() and row == -1 else ""
        drag = decode_drag(data)
        return bool(target) and drag is not None and drag[0] == self.account and drag[1] != target

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                     parent: Index) -> bool:
        if not self.canDropMimeData(data, action, row, column, parent):
            return False
        drag = decode_drag(data)
        assert drag is not None
        _account, source, uids = drag
        if uids:
            self.messagesDropped.emit(source, str(parent.data(self.NameRole)), uids)
        return True
