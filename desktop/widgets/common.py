"""Small pieces every panel uses: a debounce timer, an inline message line, text helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLabel, QStyledItemDelegate, QStyleOptionViewItem, QToolButton, QWidget


class Debouncer(QObject):
    """Runs `func` once, `delay_ms` after the last `trigger()`: a burst of engine events makes one fetch."""

    def __init__(self, func: Callable[[], None], delay_ms: int = 150, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._func = func
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._func)

    def trigger(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    @property
    def pending(self) -> bool:
        """A run is scheduled and has not happened yet."""
        return self._timer.isActive()

    def flush(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self._func()


class PlainTextDelegate(QStyledItemDelegate):
    """Paints a cell from `text(row, column)` in one call into Python instead of seven.

    Qt's delegate asks the model's data() for seven roles per cell (font, alignment, colours, check state,
    icon, text, background).  From C++ each of those calls must take the GIL back from the engine's
    threads, and while mail pours in that costs milliseconds per take: bench/gui_stall.py timed 40-100 ms
    per repaint of the log table, about half of it waiting between data() calls.  For tables of plain
    text, this fills the style option directly; data() still serves tooltips, tests and accessibility.
    """

    _HAS_DISPLAY = QStyleOptionViewItem.ViewItemFeature.HasDisplay
    _LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
    _RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter

    def __init__(self, text: Callable[[int, int], str], right_aligned: Collection[int] = (),
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self._right = frozenset(right_aligned)

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        column = index.column()
        if isinstance(index, QModelIndex):      # views pass QModelIndex; the stubs allow persistent ones
            option.index = index
        option.features |= self._HAS_DISPLAY
        option.text = self._text(index.row(), column)
        option.displayAlignment = self._RIGHT if column in self._right else self._LEFT
        option.styleObject = None  # type: ignore[assignment]  # as Qt's own: no animations in item views


class MessageLine(QLabel):
    """A one-line message shown in place (validation errors, results), never a traceback."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_error(self, text: str) -> None:
        self.setProperty("kind", "error")
        self._show(text)

    def show_info(self, text: str) -> None:
        self.setProperty("kind", "info")
        self._show(text)

    def _show(self, text: str) -> None:
        self.setText(text)
        self.style().unpolish(self)
        self.style().polish(self)
        self.setVisible(bool(text))

    def clear_message(self) -> None:
        self.setText("")
        self.hide()


def copy_button(text_getter: Callable[[], str], parent: QWidget | None = None) -> QToolButton:
    """A small "Copy" button that puts a value on the clipboard."""
    button = QToolButton(parent)
    button.setText("Copy")
    button.setToolTip("Copy to the clipboard")
    button.clicked.connect(lambda: QGuiApplication.clipboard().setText(text_getter()))
    return button


def format_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def format_time(moment: float | None) -> str:
    if not moment:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def format_relative(moment: float | None, now: float | None = None) -> str:
    """"in 4 min", "2 h ago": when the next attempt is, in words."""
    if not moment:
        return ""
    delta = moment - (now if now is not None else time.time())
    future = delta >= 0
    delta = abs(delta)
    if delta < 60:
        text = f"{int(delta)} s"
    elif delta < 3600:
        text = f"{int(delta // 60)} min"
    elif delta < 86400:
        text = f"{delta / 3600:.1f} h"
    else:
        text = f"{delta / 86400:.1f} d"
    if delta < 1:
        return "now"
    return f"in {text}" if future else f"{text} ago"
