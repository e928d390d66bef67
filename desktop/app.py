"""The desktop app: QApplication on a qasync loop, the engine on its own loop in its own thread, one window.

`postroom` with no command lands in `main(data_dir)`.  Start-up order: hand over to an instance already
running for this data directory if there is one; otherwise show the window at once, look (off the GUI
thread) whether the data directory has a domain yet, run the setup wizard if not, then start the engine.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from desktop.bridge import EngineBridge
from desktop.collector import GuiThreadCollector
from desktop.main_window import MainWindow
from desktop.resources import app_icon, stylesheet
from desktop.single_instance import SingleInstance, notify_running
from engine.config import ListenAddress
from engine.runtime import Engine, EngineThread, ListenerState

log = logging.getLogger(__name__)

DESKTOP_SETTINGS = "desktop.ini"     # window and close-policy choices, per data directory


def needs_setup(engine: Engine) -> bool:
    """First run: no domain yet.  Blocking (opens state.sqlite); runs in the engine's worker thread."""
    engine.open()
    return not engine.directory.list_domains()


async def start_engine(engine: Engine) -> list[ListenerState]:
    """Fills in secrets kept outside postroom.toml (keyring, off the GUI thread), then starts."""
    from engine.secrets import SecretStore, with_secrets

    await asyncio.to_thread(engine.open)
    config = await asyncio.to_thread(with_secrets, engine.config, SecretStore(engine.data_dir))
    if config is not engine.config:
        await engine.apply_config(config)
    if engine.running:
        return engine.status()
    return await engine.start()


def freeze_startup_objects() -> None:
    """Takes everything built so far (modules, Qt wrappers, the window, the engine) out of the cyclic
    garbage collector's sight.

    A full collection walks every tracked object while holding the GIL, so neither the window nor the
    engine runs meanwhile.  With PySide6, the engine and the window loaded that is about 65,000 objects:
    40 ms on an idle machine, 200-500 ms measured in bench/gui_stall.py on a busy one.  Objects made at
    start-up live as long as the process anyway; `gc.freeze` (Python 3.7+) moves them to a generation the
    collector never scans.  Collecting first keeps start-up garbage out of the frozen set.
    """
    gc.collect()
    gc.freeze()


def desktop_settings(data_dir: Path) -> QSettings:
    return QSettings(str(Path(data_dir) / DESKTOP_SETTINGS), QSettings.Format.IniFormat)


class PostroomApp(QObject):
    """Owns the engine thread, the bridge, the window and the tray icon for one data directory."""

    engineStarted = Signal(str)      # "" on success, else why not in words
    finished = Signal()

    def __init__(self, data_dir: Path, *, listen: dict[str, ListenAddress | None] | None = None,
                 run_wizard: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_wizard = run_wizard
        # No delivery agent unless the settings ask for one: the window stays responsive under a burst.
        self.engine = Engine(self.data_dir, listen=listen, delivery_agent=False)
        # Not `self.thread`: that would hide QObject.thread().
        self.engine_thread = EngineThread(self.engine)
        self.engine_thread.start()
        self.bridge = EngineBridge(self.engine_thread, self)
        self.settings = desktop_settings(self.data_dir)
        self.tray: QSystemTrayIcon | None = None
        self.wizard: Any = None
        tray_ok = QSystemTrayIcon.isSystemTrayAvailable()
        self.window = MainWindow(self.bridge, self.settings, tray_available=tray_ok)
        self.window.quitRequested.connect(self.quit)
        self.window.hiddenToBackground.connect(self._hidden)
        if tray_ok:
            self._make_tray()
        self._closing = False

    # --- start ---------------------------------------------------------------------------------------

    def begin(self) -> None:
        self.window.show()
        if self.run_wizard:
            self.bridge.call(needs_setup, self.engine, on_result=self._setup_checked,
                             on_error=self._engine_failed)
        else:
            self.start()

    def _setup_checked(self, needed: bool) -> None:
        if needed:
            self.open_wizard()
        else:
            self.start()

    def open_wizard(self) -> None:
        from desktop.wizard import SetupWizard

        self.wizard = SetupWizard(self.bridge, self.window)
        self.wizard.setupFinished.connect(self._wizard_done)
        self.wizard.rejected.connect(self.start)
        self.wizard.open()             # window-modal without a nested event loop

    def _wizard_done(self, error: str) -> None:
        if error:
            self.window.show_error(error)
        self.start()

    def start(self) -> None:
        self.bridge.submit(start_engine(self.engine), self._started, self._engine_failed)

    def _started(self, states: list[ListenerState]) -> None:
        freeze_startup_objects()        # the engine's listeners and stores are loaded now
        failed = [s.reason for s in states if s.state == "failed"]
        self._tell_dashboard(None)
        if failed:
            self.window.show_error("Some listeners could not start: " + "; ".join(failed))
        self.engineStarted.emit("")

    def _engine_failed(self, error: str) -> None:
        self._tell_dashboard(error)
        self.window.show_error(error)
        self.engineStarted.emit(error)

    def _tell_dashboard(self, error: str | None) -> None:
        dashboard = self.window.panels.get("DashboardPanel")
        hook = getattr(dashboard, "engine_started", None)
        if callable(hook):
            hook(error)

    # --- tray ----------------------------------------------------------------------------------------

    def _make_tray(self) -> None:
        tray = QSystemTrayIcon(app_icon(), self)
        tray.setToolTip("Postroom mail server")
        menu = QMenu()
        show = QAction("Show Postroom", menu)
        show.triggered.connect(self.window.bring_forward)
        quit_action = QAction("Quit (stop serving)", menu)
        quit_action.triggered.connect(self.window.request_quit)
        menu.addAction(show)
        menu.addSeparator()
        menu.addAction(quit_action)
        tray.setContextMenu(menu)
        self._tray_menu = menu
        tray.activated.connect(lambda reason: self.window.bring_forward()
                               if reason == QSystemTrayIcon.ActivationReason.Trigger else None)
        tray.show()
        self.tray = tray

    def _hidden(self) -> None:
        if self.tray is not None:
            self.tray.showMessage("Postroom is still serving mail",
                                  "Use the tray icon to open the window or to quit.",
                                  QSystemTrayIcon.MessageIcon.Information, 4000)

    # --- quit ----------------------------------------------------------------------------------------

    def quit(self) -> None:
        """Stops the engine on its own loop, then ends; the window goes away at once."""
        if self._closing:
            return
        self._closing = True
        self.window.allow_close()
        self.window.hide()
        if self.tray is not None:
            self.tray.hide()

        async def stop() -> None:
            if self.engine.running:
                await self.engine.stop()

        self.bridge.submit(stop(), lambda _r: self._finish(), lambda _e: self._finish())

    def _finish(self) -> None:
        self.shutdown()
        self.finished.emit()

    def shutdown(self) -> None:
        """Closes everything this object started (also used by tests)."""
        self.bridge.close()
        self.engine_thread.shutdown()
        if self.wizard is not None:
            self.wizard.deleteLater()
            self.wizard = None
        self.window.allow_close()
        self.window.close()
        self.window.deleteLater()


def _desktop_file_name() -> str:
    """The .desktop id, so Wayland compositors match the window to its menu entry and icon."""
    try:
        from desktop.install import APP_ID
    except ImportError:
        return "postroom"
    return str(APP_ID)


def main(data_dir: Path) -> int:
    """`postroom` with no command: the window and the embedded engine until the person quits."""
    import qasync

    from desktop.viewer.webview import prepare_webengine

    # QtWebEngine's URL schemes (and its GL sharing) must be set up before the QApplication exists.
    prepare_webengine()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Postroom")
    app.setApplicationDisplayName("Postroom")
    app.setDesktopFileName(_desktop_file_name())
    app.setWindowIcon(app_icon())
    app.setStyleSheet(stylesheet())
    # We decide when to quit: closing the window may leave the server running in the tray.
    app.setQuitOnLastWindowClosed(False)

    data_dir = Path(data_dir).expanduser()
    if notify_running(data_dir):
        print(f"postroom: already running for {data_dir}; its window was brought forward")
        return 0
    instance = SingleInstance(data_dir)
    if not instance.listen():
        log.warning("could not claim the single-instance socket %s", instance.name)

    collector = GuiThreadCollector(app)      # before the engine thread exists (see desktop/collector.py)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    controller = PostroomApp(data_dir)
    instance.showRequested.connect(controller.window.bring_forward)
    done = asyncio.Event()
    controller.finished.connect(done.set)
    app.aboutToQuit.connect(done.set)
    controller.begin()
    freeze_startup_objects()            # the window is built; again once the engine has started
    try:
        with loop:
            loop.run_until_complete(done.wait())
    finally:
        instance.close()
        if not controller._closing:
            controller.shutdown()
        collector.stop()
    return 0
