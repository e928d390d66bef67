"""One POP3 client connection: command lines in, replies out, STLS upgrade in place (RFC 2595 §4).

The shared line connection (engine.lineconn) does the buffering, flow control and the discard of
plaintext pipelined behind STLS; POP3 only tunes it.
"""

from __future__ import annotations

from engine.lineconn import ConnectionClosed, LineConnection, LineTooLong

__all__ = ["READ_HIGH_WATER", "WRITE_HIGH_WATER", "Connection", "ConnectionClosed", "LineTooLong"]

# Stop reading from the socket while this much unread input waits (pipelined commands), so a client that
# pipelines without reading replies cannot grow our memory.
READ_HIGH_WATER = 64 * 1024
# Room for a few RETR replies in flight before drain() waits for the client (asyncio's default is 64 KiB).
WRITE_HIGH_WATER = 256 * 1024


class Connection(LineConnection):
    """Line-oriented reading and flow-controlled writing over one transport (plain or TLS).

    A plain socket stays half-open after the client's EOF so replies to commands already received (a
    QUIT) still reach a client that half-closed; the session closes when done.
    """

    read_high_water = READ_HIGH_WATER
    write_high_water = WRITE_HIGH_WATER
    half_open_after_eof = True
