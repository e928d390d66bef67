"""One IMAP client connection: lines and literals in, response bytes out, TLS upgrade in place.

The shared line connection (engine.lineconn) does the buffering, flow control and STARTTLS with discard of
pipelined plaintext (RFC 3501 §6.2.1); IMAP adds reading literals of an announced size (RFC 3501 §4.3).
"""

from __future__ import annotations

from engine.lineconn import ConnectionClosed, LineConnection, LineTooLong

__all__ = ["READ_HIGH_WATER", "Connection", "ConnectionClosed", "LineTooLong"]

READ_HIGH_WATER = 256 * 1024    # stop reading the socket while this much unread input waits


class Connection(LineConnection):
    """Buffered reading of lines and exact-size literals, and flow-controlled writing, over one transport.

    The socket closes as soon as the client half-closes: IMAP has nothing to say after the client's EOF.
    """

    read_high_water = READ_HIGH_WATER

    def buffered_line_ready(self) -> bool:
        return b"\n" in self._buffer

    async def read_exact(self, size: int) -> bytes:
        """Exactly `size` octets (a literal's contents)."""
        while len(self._buffer) < size:
            # let the buffer grow to the literal's size: the caller has already checked it is allowed
            await self._more()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._maybe_resume_reading()
        return data

    def has_pending_input(self) -> bool:
        return bool(self._buffer)
