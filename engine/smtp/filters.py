"""The hook through which later features (DKIM signing, SPF/DKIM/DMARC checks) see each accepted message.

`Services.inbound_filters` holds coroutine functions; after DATA the server awaits each in turn with an
`InboundMessage`, and each returns None (pass it on unchanged), new message bytes (e.g. with an
Authentication-Results or DKIM-Signature header prepended), a `Reply` that refuses the message, or a
`FilterVerdict` that can also send the local copies to another folder (Junk) and add delivery-log fields.
A filter that raises gets the message a 451 4.3.0 (try again later) and a logged traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.smtp.codes import Reply


@dataclass(frozen=True)
class InboundMessage:
    role: str                     # "smtp" | "submission" | "submissions"
    client_ip: str
    helo: str
    sender: str                   # "" for the null reverse-path
    local: tuple[str, ...]        # accounts it will be stored for
    remote: tuple[str, ...]       # addresses it will be queued for
    authenticated_as: str | None
    tls: bool
    message_id: str               # our transaction id, as in the Received: line
    data: bytes                   # the whole message, our Received: line first


@dataclass(frozen=True)
class FilterVerdict:
    """A filter's answer when bytes or a Reply alone do not say enough."""

    data: bytes | None = None           # the message to pass on; None: unchanged
    folder: str | None = None           # local copies go to this folder (e.g. "Junk") instead of INBOX
    reply: Reply | None = None          # refuse the message with this reply
    log: Mapping[str, Any] = field(default_factory=dict)   # extra fields for its delivery-log rows


FilterResult = bytes | Reply | FilterVerdict | None
InboundFilter = Callable[[InboundMessage], Awaitable[FilterResult]]
