"""Delivery status notifications (RFC 3464): composing the bounce or delay warning for a sender, and
reading one back (failed recipients and reasons) for the desktop's message viewer.

Pure functions over bytes and values; delivering a DSN is the queue's business.
"""

from engine.dsn.compose import RecipientStatus, compose_dsn, status_from_reply
from engine.dsn.parse import DSNReport, RecipientReport, is_dsn, parse_dsn

__all__ = ["DSNReport", "RecipientReport", "RecipientStatus", "compose_dsn", "is_dsn", "parse_dsn",
           "status_from_reply"]
