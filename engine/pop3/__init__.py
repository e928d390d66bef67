"""POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL) over each account's INBOX in the store.

`POP3Listener(services, role)` serves the `pop3` (STLS) and `pop3s` (implicit TLS) ports; a session sees
the INBOX as it was at login and removes the messages it DELE'd only at QUIT, through `Mailbox.remove`.
"""

from engine.pop3.server import POP3Listener

__all__ = ["POP3Listener"]
