"""The delivery log: one row per thing that happened to a message, kept as data for the GUI, CLI and export.

Rows live in the `log_entries` table of `state.sqlite` (indexed by time, sender, recipient, event and
queue id); protocol servers and the queue append through `DeliveryLog.record`, readers filter with
`query`/`count`, and every new row is published as `DeliveryLogged` on the event bus.
"""

from engine.log.delivery_log import DeliveryLog
from engine.log.entry import DIRECTIONS, EVENTS, LogEntry, LogFilter

__all__ = ["DIRECTIONS", "EVENTS", "DeliveryLog", "LogEntry", "LogFilter"]
