"""The whole app: first run opens the wizard, the window has every tab (Mailboxes as a slot), closing asks
once whether to keep serving, a second instance hands over to the first; and a screenshot of every panel."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from conftest import LOOPBACK
from desktop_support import PASSWORD, on_engine
from PySide6.QtWidgets import QMessageBox

from desktop.app import PostroomApp
from desktop.main_window import CLOSE_ACTION_KEY, PANELS
from desktop.single_instance import SingleInstance, notify_running
from engine.runtime import EngineThread

if TYPE_CHECKING:
    from desktop.panels.dashboard import DashboardPanel
    from desktop.panels.delivery_log import DeliveryLogPanel
    from desktop.panels.domains import DomainsPanel
    from desktop.panels.queue import QueuePanel


def test_first_run_wizard_then_every_panel_screenshot(qtbot: Any, data_dir: Path,
                                                      screenshots_dir: Path) -> None:
    app = PostroomApp(data_dir, listen=dict(LOOPBACK))
    try:
        window = app.window
        qtbot.addWidget(window)
        window.resize(1200, 800)
        app.begin()
        qtbot.waitUntil(lambda: app.wizard is not None and app.wizard.isVisible(), timeout=10000)
        app.wizard.grab().save(str(screenshots_dir / "wizard.png"))
        with qtbot.waitSignal(app.engineStarted, timeout=20000):
            app.wizard.reject()                        # set up later: the engine starts anyway

        engine, thread = app.engine, app.engine_thread
        on_engine(thread, engine.directory.add_domain, "example.test")
        on_engine(thread, engine.directory.add_account, "alice@example.test", PASSWORD)
        on_engine(thread, engine.store.create_account, "alice@example.test")
        host, port = engine.address_of("smtp")
        with smtplib.SMTP(host, port, timeout=10) as client:
            for i in range(3):
                client.sendmail(f"sender{i}@elsewhere.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhi\r\n")
        thread.submit(engine.queue.enqueue("alice@example.test", ["bob@unreachable.test"],
                                           b"Subject: stuck\r\n\r\nx\r\n")).result(10)

        titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        assert titles == [title for title, _module, _cls in PANELS]
        queue = cast("QueuePanel", window.panels["QueuePanel"])
        qtbot.waitUntil(lambda: queue.model.total() == 1 and "Waiting" in (queue.model.index(0, 6).data() or ""),
                        timeout=10000)
        log = cast("DeliveryLogPanel", window.panels["DeliveryLogPanel"])
        qtbot.waitUntil(lambda: log.model.rowCount() >= 3, timeout=5000)
        dashboard = cast("DashboardPanel", window.panels["DashboardPanel"])
        qtbot.waitUntil(lambda: dashboard.counter_labels["received"].text() == "3", timeout=5000)
        domains = cast("DomainsPanel", window.panels["DomainsPanel"])
        qtbot.waitUntil(lambda: domains.domain == "example.test", timeout=5000)
        domains.tabs.setCurrentIndex(2)
        qtbot.waitUntil(lambda: domains.records.rowCount() > 0, timeout=10000)
        domains.tabs.setCurrentIndex(0)

        saved = []
        for index, (title, _module, cls) in enumerate(PANELS):
            window.tabs.setCurrentIndex(index)
            qtbot.wait(50)                                   # let the tab lay itself out before grabbing
            name = cls.removesuffix("Panel").lower() + ".png"
            assert window.grab().save(str(screenshots_dir / name)), title
            saved.append(name)
            if cls == "DomainsPanel":
                domains.tabs.setCurrentIndex(2)
                window.grab().save(str(screenshots_dir / "dns_records.png"))
                domains.tabs.setCurrentIndex(0)
        print(f"\nscreenshots of every panel in {screenshots_dir}")
        assert all((screenshots_dir / name).stat().st_size > 0 for name in saved)
    finally:
        app.shutdown()


def test_closing_asks_once_and_remembers(qtbot: Any, data_dir: Path) -> None:
    app = PostroomApp(data_dir, listen=dict(LOOPBACK), run_wizard=False)
    try:
        window = app.window
        qtbot.addWidget(window)
        app.begin()
        qtbot.waitExposed(window)
        window.close()
        assert window.isVisible(), "nothing closes before the question is answered"
        box = window.close_question
        assert box is not None and box.isVisible()
        keep = next(b for b in box.buttons() if b.text() == "Keep serving")
        keep.click()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
        assert app.settings.value(CLOSE_ACTION_KEY) == "background"
        assert app.engine_thread.loop.is_running(), "the engine keeps serving"

        window.bring_forward()
        qtbot.waitExposed(window)
        window.close()
        assert window.close_question is None, "asked only once"
        assert not window.isVisible()
    finally:
        app.shutdown()


def test_quit_from_the_question_stops_the_engine(qtbot: Any, data_dir: Path) -> None:
    app = PostroomApp(data_dir, listen=dict(LOOPBACK), run_wizard=False)
    qtbot.addWidget(app.window)
    with qtbot.waitSignal(app.engineStarted, timeout=20000):
        app.begin()
    app.window.close()
    box = app.window.close_question
    assert box is not None
    quit_button = next(b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole)
    with qtbot.waitSignal(app.finished, timeout=20000):
        quit_button.click()
    assert not app.engine.running
    assert not app.engine_thread._thread.is_alive()


def test_the_app_delivers_in_its_own_process_unless_the_settings_ask_for_an_agent(qtbot: Any,
                                                                                  data_dir: Path) -> None:
    """The delivery agent made the window stall under a burst of mail (bench/gui_stall.py): the app's
    engine runs without one when postroom.toml leaves [delivery] local_process out."""
    app = PostroomApp(data_dir, listen=dict(LOOPBACK), run_wizard=False)
    qtbot.addWidget(app.window)
    with qtbot.waitSignal(app.engineStarted, timeout=20000) as started:
        app.begin()
    assert started.args == [""]
    assert app.engine.running and app.engine._agent is None
    app.shutdown()


def test_a_second_instance_brings_the_first_forward(qtbot: Any, tmp_path: Path) -> None:
    first = SingleInstance(tmp_path)
    assert first.listen()
    try:
        with qtbot.waitSignal(first.showRequested, timeout=5000):
            assert notify_running(tmp_path)
        assert not notify_running(tmp_path / "elsewhere"), "another data directory is another server"
    finally:
        first.close()


def test_the_about_box_names_the_version_and_bundled_licences(qtbot: Any, engine_thread: EngineThread,
                                                               tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from desktop.bridge import EngineBridge
    from desktop.main_window import MainWindow
    from engine import __version__

    bridge = EngineBridge(engine_thread)
    window = MainWindow(bridge, QSettings(str(tmp_path / "desktop.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    text = window.about_text()
    assert f"Postroom {__version__}" in text
    assert "PySide6" in text and "LGPL" in text
    bridge.close()
    window.allow_close()
