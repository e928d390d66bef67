"""The IMAP4rev1/IMAP4rev2 server: command parsing, the per-connection session state machine, FETCH, SEARCH
and IDLE over the store's Mailbox protocol, and the `imap`/`imaps` listeners the runtime starts."""

from engine.imap.server import IMAPListener

__all__ = ["IMAPListener"]
