"""The hook through which later features (DKIM signing, SPF/DKIM/DMARC checks) see each accepted message.

`Services.inbound_filters` holds coroutine functions; after DATA the server awaits each in turn with an
`InboundMessage`, and each returns None (pass it on unchanged), new message bytes (e.g. with an
Authentication-Results or DKIM-Signature header prepended), or a `Reply` that refuses the message.
A filter that raises gets the message a 451 4.3.0 (try again later) and a logged traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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


FilterResult = bytes | Reply | None
InboundFilter = Callable[[InboundMessage], Awaitable[FilterResult]]
