"""The main window: one tab per job (dashboard, domains, queue, log, mailboxes, settings) and the close policy.

Panels are built from the bridge alone; a panel whose module is missing (the mailbox viewer is written
separately) shows a placeholder instead of breaking the window.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from html import escape
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.resources import app_icon

log = logging.getLogger(__name__)

# (tab title, module, class); the order is the order of the tabs and of Ctrl+1..Ctrl+6.
PANELS: tuple[tuple[str, str, str], ...] = (
    ("Dashboard", "desktop.panels.dashboard", "DashboardPanel"),
    ("Domains && accounts", "desktop.panels.domains", "DomainsPanel"),
    ("Queue", "desktop.panels.queue", "QueuePanel"),
    ("Delivery log", "desktop.panels.delivery_log", "DeliveryLogPanel"),
    ("Mailboxes", "desktop.panels.mailbox_viewer", "MailboxViewerPanel"),
    ("Settings", "desktop.panels.settings", "SettingsPanel"),
)

CLOSE_ACTION_KEY = "window/close_action"      # "background" | "quit"


def placeholder(text: str) -> QWidget:
    widget = QWidget()
    widget.setObjectName("placeholder")
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    QVBoxLayout(widget).addWidget(label)
    return widget


class MainWindow(QMainWindow):
    """Emits `quitRequested` when the person wants the app (and the server) to end."""

    quitRequested = Signal()
    hiddenToBackground = Signal()

    def __init__(self, bridge: EngineBridge, settings: QSettings, *,
                 tray_available: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings
        self.tray_available = tray_available
        self._quitting = False
        self.close_question: QMessageBox | None = None
        self.setWindowTitle(f"Postroom — {bridge.engine.data_dir}")
        self.setWindowIcon(app_icon())
        self.resize(1100, 760)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.panels: dict[str, QWidget] = {}
        for title, module, cls in PANELS:
            panel = self._build_panel(title, module, cls)
            self.panels[cls] = panel
            self.tabs.addTab(panel, title)
        self.setCentralWidget(self.tabs)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.statusBar().addPermanentWidget(self.busy)
        bridge.busyChanged.connect(self.busy.setVisible)
        bridge.errorOccurred.connect(self.show_error)
        bridge.engineStateChanged.connect(self._on_engine_state)
        self._build_menu()

    def _build_panel(self, title: str, module: str, cls: str) -> QWidget:
        try:
            panel_class: Callable[..., QWidget] = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            words = title.replace("&&", "&")
            if cls == "MailboxViewerPanel":
                return placeholder("The mailbox viewer is not part of this version yet.")
            return placeholder(f"{words} is not available in this version.")
        try:
            return panel_class(self.bridge)
        except Exception:
            log.exception("building the %s panel failed", title)
            return placeholder(f"The {title.replace('&&', '&')} panel could not be opened; see the log.")

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&Postroom")
        for number, (title, _module, cls) in enumerate(PANELS, start=1):
            action = QAction(title.replace("&&", "&&"), self)
            action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            action.triggered.connect(lambda _=False, c=cls: self.show_panel(c))
            self.addAction(action)
            menu.addAction(action)
        menu.addSeparator()
        refresh = QAction("&Refresh", self)
        refresh.setShortcut(QKeySequence.StandardKey.Refresh)
        refresh.triggered.connect(self.refresh_current)
        menu.addAction(refresh)
        close = QAction("&Close window", self)
        close.setShortcut(QKeySequence.StandardKey.Close)
        close.triggered.connect(self.close)
        menu.addAction(close)
        quit_action = QAction("&Quit (stop serving)", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.request_quit)
        menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About Postroom", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    def about_text(self) -> str:
        """Version and the licences of what the app bundles (one list, shared with `postroom licences`)."""
        from engine import __version__

        try:
            from desktop.install import bundled_licences

            rows = "".join(f"<tr><td>{escape(name)}</td><td>{escape(version)}</td><td>{escape(licence)}</td></tr>"
                           for name, version, licence in bundled_licences())
        except Exception:
            log.exception("listing bundled licences failed")
            rows = ""
        return (f"<h3>Postroom {escape(__version__)}</h3><p>A mail server you run and manage from your desktop.</p>"
                f"<p>Bundled components and their licences:</p><table>{rows}</table>")

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "About Postroom", self.about_text(),
                          QMessageBox.StandardButton.Ok, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setWindowIcon(self.windowIcon())
        box.open()      # not exec(): no nested event loop under qasync

    # --- navigation --------------------------------------------------------------------------------

    def show_panel(self, cls: str) -> QWidget:
        panel = self.panels[cls]
        self.tabs.setCurrentWidget(panel)
        return panel

    def refresh_current(self) -> None:
        refresh = getattr(self.tabs.currentWidget(), "refresh", None)
        if callable(refresh):
            refresh()

    def bring_forward(self) -> None:
        """Another `postroom` was started: show this window instead."""
        self.setWindowState((self.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive)
        self.show()
        self.raise_()
        self.activateWindow()

    def show_error(self, text: str) -> None:
        self.statusBar().showMessage(text, 15_000)

    def _on_engine_state(self, state: str) -> None:
        words = {"starting": "Starting the engine…", "running": "Serving mail.",
                 "stopping": "Stopping the engine…", "stopped": "The engine is stopped."}
        self.statusBar().showMessage(words.get(state, state), 8_000)

    # --- closing -----------------------------------------------------------------------------------

    def request_quit(self) -> None:
        self._quitting = True
        self.quitRequested.emit()

    def allow_close(self) -> None:
        """The app is quitting: the next close really closes."""
        self._quitting = True

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._quitting:
            event.accept()
            return
        choice = self.settings.value(CLOSE_ACTION_KEY, "")
        if choice == "quit":
            event.ignore()
            self.request_quit()
            return
        if choice == "background":
            event.accept()
            self.hiddenToBackground.emit()
            return
        event.ignore()
        self._ask_close_action()

    def _ask_close_action(self) -> None:
        """Asks once (non-modally: no nested event loop) whether closing keeps the server running."""
        if self.close_question is not None:
            self.close_question.raise_()
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Keep serving mail?")
        where = ("in the system tray" if self.tray_available
                 else "in the background (run postroom again to bring this window back)")
        box.setText("Closing the window can leave Postroom serving mail " + where + ".")
        box.setInformativeText("If you quit, mail sent to your domains is not accepted until you start "
                               "Postroom again (other servers will retry for a few days).")
        keep = box.addButton("Keep serving", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Quit", QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        remember = QCheckBox("Remember my choice")
        remember.setChecked(True)
        box.setCheckBox(remember)
        box.setDefaultButton(keep)
        self.close_question = box

        def answered(_result: int) -> None:
            clicked = box.clickedButton()
            self.close_question = None
            box.deleteLater()
            if clicked is cancel or clicked is None:
                return
            action = "background" if clicked is keep else "quit"
            if remember.isChecked():
                self.settings.setValue(CLOSE_ACTION_KEY, action)
                self.settings.sync()
            if action == "background":
                self.hide()
                self.hiddenToBackground.emit()
            else:
                self.request_quit()

        box.finished.connect(answered)
        box.open()


def current_close_action(settings: QSettings) -> Any:
    return settings.value(CLOSE_ACTION_KEY, "")
