"""Dashboard: is the server up, what is each listener doing, and how much mail went through today.

Everything shown comes from one engine call (`snapshot`) made after a burst of engine events settles, so
500 deliveries in a second cause a handful of refreshes, not 500.  While the dashboard is not on screen
(another tab, or the window in the tray) it asks for nothing and redraws nothing; it catches up when shown.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCharts import QChart, QChartView, QDateTimeAxis, QLineSeries, QValueAxis
from PySide6.QtCore import QDateTime, QEvent, QMargins, QPointF, Qt, QTimer
from PySide6.QtGui import QKeySequence, QPainter, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.listeners import ListenersModel
from desktop.widgets.common import Debouncer, MessageLine
from engine.runtime import Engine, ListenerState

CHART_HOURS = 3
COUNTERS = (
    ("received", "Received"),
    ("relayed", "Relayed"),
    ("deferred", "Deferred"),
    ("bounced", "Bounced"),
    ("rejected", "Rejected"),
)


@dataclass
class Snapshot:
    running: bool
    states: list[ListenerState]
    stats: dict[str, int] | None          # None: no delivery log in this version
    queue_size: int | None                # None: no queue in this version
    per_minute: list[tuple[int, int]] = field(default_factory=list)


async def queue_size(engine: Engine) -> int | None:
    queue = engine.queue
    if queue is None:
        return None
    for name in ("count", "size"):
        func = getattr(queue, name, None)
        if callable(func):
            value = func() if inspect.iscoroutinefunction(func) else asyncio.to_thread(func)
            return int(await value)
    items = queue.list()
    if inspect.isawaitable(items):
        items = await items
    return len(items)


async def snapshot(engine: Engine, since: float) -> Snapshot:
    """What the dashboard shows, gathered on the engine loop (slow parts in worker threads)."""
    stats: dict[str, int] | None = None
    minutes: list[tuple[int, int]] = []
    if engine.log is not None:
        stats = await asyncio.to_thread(engine.log.stats_today)
        minutes = await asyncio.to_thread(engine.log.per_minute, since)
    try:
        size = await queue_size(engine)
    except Exception:
        size = None
    return Snapshot(engine.running, engine.status(), stats, size, minutes)


async def restart(engine: Engine) -> list[ListenerState]:
    if engine.running:
        await engine.stop()
    return await engine.start()


async def stop(engine: Engine) -> None:
    if engine.running:
        await engine.stop()


async def start(engine: Engine) -> list[ListenerState]:
    if engine.running:
        return engine.status()
    return await engine.start()


class DashboardPanel(QWidget):
    title = "Dashboard"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setObjectName("dashboard")
        self._engine_state = "stopped"
        self._busy = False
        self._stale = False              # something changed while hidden: refresh when shown

        # --- engine state and controls
        self.state_label = QLabel("Engine: not started")
        self.state_label.setObjectName("engineState")
        self.start_button = QPushButton("&Start")
        self.stop_button = QPushButton("S&top")
        self.restart_button = QPushButton("&Restart")
        self.start_button.setToolTip("Start serving mail (Ctrl+Shift+S)")
        self.restart_button.setToolTip("Stop and start every listener (Ctrl+Shift+R)")
        self.start_button.clicked.connect(self.start_engine)
        self.stop_button.clicked.connect(self.stop_engine)
        self.restart_button.clicked.connect(self.restart_engine)
        QShortcut(QKeySequence("Ctrl+Shift+S"), self, self.start_engine)
        QShortcut(QKeySequence("Ctrl+Shift+R"), self, self.restart_engine)
        controls = QHBoxLayout()
        controls.addWidget(self.state_label, 1)
        for button in (self.start_button, self.stop_button, self.restart_button):
            controls.addWidget(button)
        self.message = MessageLine()

        # --- listeners
        self.listeners = ListenersModel(self)
        self.listener_view = QTableView()
        self.listener_view.setModel(self.listeners)
        self.listener_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.listener_view.verticalHeader().hide()
        self.listener_view.horizontalHeader().setStretchLastSection(True)
        self.listener_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.listener_view.setWordWrap(True)
        listeners_box = QGroupBox("Listeners")
        QVBoxLayout(listeners_box).addWidget(self.listener_view)

        # --- today's counters
        counters_box = QGroupBox("Today")
        grid = QGridLayout(counters_box)
        self.counter_labels: dict[str, QLabel] = {}
        for column, (key, words) in enumerate((*COUNTERS, ("queue", "In queue"))):
            value = QLabel("–")
            value.setObjectName("counterValue")
            value.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption = QLabel(words)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(value, 0, column)
            grid.addWidget(caption, 1, column)
            self.counter_labels[key] = value

        # --- messages per minute
        self.series = QLineSeries()
        self.series.setName("Messages per minute")
        chart = QChart()
        chart.addSeries(self.series)
        chart.legend().hide()
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.setTitle(f"Messages per minute, last {CHART_HOURS} hours")
        self.axis_x = QDateTimeAxis()
        self.axis_x.setFormat("HH:mm")
        self.axis_x.setTickCount(7)
        self.axis_y = QValueAxis()
        self.axis_y.setLabelFormat("%d")
        self.axis_y.setMin(0)
        chart.addAxis(self.axis_x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.axis_y, Qt.AlignmentFlag.AlignLeft)
        self.series.attachAxis(self.axis_x)
        self.series.attachAxis(self.axis_y)
        self.chart = chart
        self.chart_view = QChartView(chart)
        self.chart_view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.chart_view.setMinimumHeight(180)
        self._apply_palette()

        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.message)
        layout.addWidget(listeners_box, 2)
        layout.addWidget(counters_box)
        layout.addWidget(self.chart_view, 3)

        self._refresh_soon = Debouncer(self.refresh, 300, self)
        bridge.listenerChanged.connect(lambda _e: self._refresh_soon.trigger())
        bridge.deliveryLogged.connect(lambda _e: self._refresh_soon.trigger())
        bridge.queueChanged.connect(lambda _e: self._refresh_soon.trigger())
        bridge.engineStateChanged.connect(self._on_engine_state)
        self._clock = QTimer(self)
        self._clock.setInterval(30_000)      # the chart's window moves even when nothing happens
        self._clock.timeout.connect(self.refresh)
        self._clock.start()
        self._update_buttons()
        self.refresh()

    # --- data --------------------------------------------------------------------------------------

    def refresh(self) -> None:
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        since = time.time() - CHART_HOURS * 3600
        self.bridge.submit(snapshot(self.bridge.engine, since), self._show, self.message.show_error, owner=self)

    def _show(self, snap: Snapshot) -> None:
        self.listeners.set_states(snap.states)
        self.listener_view.resizeRowsToContents()
        if self._engine_state not in ("starting", "stopping"):
            if snap.running:
                self._engine_state = "running"
            elif self._engine_state == "running":
                self._engine_state = "stopped"
        self._update_state_label()
        self._update_buttons()
        for key, _ in COUNTERS:
            label = self.counter_labels[key]
            label.setText("n/a" if snap.stats is None else str(snap.stats.get(key, 0)))
            label.setToolTip("The delivery log is not available in this version" if snap.stats is None else "")
        queue_label = self.counter_labels["queue"]
        queue_label.setText("n/a" if snap.queue_size is None else str(snap.queue_size))
        self._plot(snap.per_minute)

    def _plot(self, minutes: list[tuple[int, int]]) -> None:
        now = int(time.time() // 60 * 60)
        start = now - CHART_HOURS * 3600
        counts = dict(minutes)
        points = [(t, counts.get(t, 0)) for t in range(start, now + 60, 60)]
        self.series.replace([QPointF(t * 1000.0, float(n)) for t, n in points])
        self.axis_x.setRange(QDateTime.fromSecsSinceEpoch(start), QDateTime.fromSecsSinceEpoch(now + 60))
        peak = max((n for _, n in points), default=0)
        self.axis_y.setRange(0, max(5, peak + peak // 5 + 1))

    def _apply_palette(self) -> None:
        dark = self.palette().window().color().lightness() < 128
        self.chart.setTheme(QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight)
        self.chart.setBackgroundVisible(False)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def changeEvent(self, event: Any) -> None:
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "chart"):
            self._apply_palette()
        super().changeEvent(event)

    # --- engine control ----------------------------------------------------------------------------

    def _on_engine_state(self, state: str) -> None:
        self._engine_state = state
        self._update_state_label()
        self._update_buttons()
        self._refresh_soon.trigger()

    def _update_state_label(self) -> None:
        words = {"starting": "starting…", "running": "running", "stopping": "stopping…",
                 "stopped": "stopped", "failed": "failed to start"}
        self.state_label.setText(f"Engine: {words.get(self._engine_state, self._engine_state)}")
        self.state_label.setProperty("state", self._engine_state)
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)

    def _update_buttons(self) -> None:
        running = self._engine_state == "running"
        moving = self._busy or self._engine_state in ("starting", "stopping")
        self.start_button.setEnabled(not running and not moving)
        self.stop_button.setEnabled(running and not moving)
        self.restart_button.setEnabled(not moving)

    def _run(self, coro: Any, done_words: str) -> None:
        self._busy = True
        self._update_buttons()
        self.message.clear_message()

        def ok(result: Any) -> None:
            self._busy = False
            self._update_buttons()
            states = result if isinstance(result, list) else []
            failed = [s for s in states if s.state == "failed"]
            if failed:
                self.message.show_error("Some listeners could not start: " +
                                        "; ".join(s.reason for s in failed))
            elif done_words:
                self.message.show_info(done_words)
            self.refresh()

        def err(text: str) -> None:
            self._busy = False
            if self._engine_state != "running":
                self._engine_state = "failed"
            self._update_state_label()
            self._update_buttons()
            self.message.show_error(f"The engine could not start: {text}")
            self.refresh()

        self.bridge.submit(coro, ok, err, owner=self)

    def start_engine(self) -> None:
        if self.start_button.isEnabled():
            self._run(start(self.bridge.engine), "")

    def stop_engine(self) -> None:
        if self.stop_button.isEnabled():
            self._run(stop(self.bridge.engine), "The engine is stopped; no mail is accepted or sent.")

    def restart_engine(self) -> None:
        if self.restart_button.isEnabled():
            self._run(restart(self.bridge.engine), "")

    def engine_started(self, error: str | None) -> None:
        """Told by the app when its own start-up attempt finished."""
        if error:
            self._engine_state = "failed"
            self.message.show_error(f"The engine could not start: {error}")
        self._update_state_label()
        self._update_buttons()
        self.refresh()
