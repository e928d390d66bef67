"""Python's cyclic garbage collection, moved onto the GUI thread while the window exists.

The collector normally runs in whichever thread happens to allocate when a generation's threshold is
crossed: with the engine embedded that is usually the engine's loop or one of its worker threads.  When such
a collection frees a cycle that holds Qt wrappers (a closed dialog, a panel's lambda), PySide6 cannot
delete the C++ widget from that thread and posts the deletion to the main thread, where it runs later
against an object Qt may already have destroyed with its parent.  Clean test runs crashed exactly there
(`Shiboken::BindingManager::runDeletionInMainThread`, a segfault in QtWidgets, 4 runs of 4 with fresh
byte-code caches, whose imports allocate enough in the engine thread to trigger collections).

So while the GUI runs, automatic collection is off and a timer on the GUI thread applies the same
generation thresholds Python would.  Cycles made by the engine are still collected, only on this thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

# Often enough that garbage never piles up for long (a young-generation pass costs microseconds).
INTERVAL_MS = 250


class GuiThreadCollector(QObject):
    """Created on the GUI thread; `stop()` (or destroying it) hands collection back to Python."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Collects the oldest generation whose count passed its threshold, as the interpreter would.

        Returns the number of unreachable objects found (0 when nothing was due)."""
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                return gc.collect(generation)
        return 0

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
