"""The outbound queue: durable spool and queue rows, delivery scheduler and workers, bounces, and the
admin API (list, retry, delete, bounce, open) that the CLI and the desktop call.

On disk: `spool/<queue id>` holds each message as accepted (fsynced before its rows commit);
`state.sqlite` holds `queue_messages` (one row per message) and `queue_recipients` (status, attempts,
next attempt, last error per recipient).  Delivery uses engine.dns for routes and engine.smtp.client.
"""

from engine.queue.admin import QueueAdmin
from engine.queue.delivery import Deliverer, Job, Outcome
from engine.queue.model import QueueError, QueueItem, RecipientState
from engine.queue.queue import Queue
from engine.queue.scheduler import Scheduler

__all__ = ["Deliverer", "Job", "Outcome", "Queue", "QueueAdmin", "QueueError", "QueueItem", "RecipientState",
           "Scheduler"]
