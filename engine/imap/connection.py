"""One IMAP client connection: lines and literals in, response bytes out, TLS upgrade in place.

An asyncio Protocol rather than streams because STARTTLS must throw away plaintext a client pipelined
behind it (RFC 3501 §6.2.1, the CVE-2011-0411 injection) and a StreamReader offers no public way to empty
its buffer; owning the buffer also lets an over-long line be skipped to its end so the session lives on.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

READ_HIGH_WATER = 256 * 1024    # stop reading the socket while this much unread input waits


class LineTooLong(Exception):
    """A line longer than allowed; the rest of it has been skipped.  `head` is its first octets (for a tag)."""

    def __init__(self, head: bytes) -> None:
        super().__init__("line too long")
        self.head = head


class ConnectionClosed(Exception):
    """The client went away (EOF or reset)."""


class Connection(asyncio.Protocol):
    """Buffered reading of lines and exact-size literals, and flow-controlled writing, over one transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._discarding = False
        self._discard_head = b""
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self.closed = asyncio.Event()
        self.on_connected: Callable[[Connection], None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.on_connected is not None:
            callback, self.on_connected = self.on_connected, None
            callback(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()
        if len(self._buffer) > READ_HIGH_WATER and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._readable.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._readable.set()
        self._writable.set()
        self.closed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- what the session uses ----------------------------------------------------------------------

    @property
    def peer(self) -> tuple[str, int]:
        info = self.transport.get_extra_info("peername") if self.transport is not None else None
        if not info:
            return ("", 0)
        return (str(info[0]), int(info[1]))

    @property
    def is_tls(self) -> bool:
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is not None

    def _resume(self) -> None:
        if self._reading_paused and len(self._buffer) <= READ_HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def _more(self) -> None:
        if self._eof:
            raise ConnectionClosed
        self._readable.clear()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        await self._readable.wait()

    async def readline(self, limit: int) -> bytes:
        """The next line without its CRLF (bare LF accepted).  LineTooLong when it exceeds `limit` octets,
        raised once the whole line has been skipped, so the next call reads the next command."""
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                line = bytes(self._buffer[:nl])
                del self._buffer[:nl + 1]
                self._resume()
                if self._discarding:
                    self._discarding = False
                    raise LineTooLong(self._discard_head)
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) + 2 > limit:
                    raise LineTooLong(line[:100])
                return line
            if len(self._buffer) > limit:
                if not self._discarding:
                    self._discard_head = bytes(self._buffer[:100])
                self._discarding = True
                self._buffer.clear()
                self._resume()
            await self._more()

    def buffered_line_ready(self) -> bool:
        return b"\n" in self._buffer

    async def read_exact(self, size: int) -> bytes:
        """Exactly `size` octets (a literal's contents)."""
        while len(self._buffer) < size:
            if self._eof:
                raise ConnectionClosed
            # let the buffer grow to the literal's size: the caller has already checked it is allowed
            self._readable.clear()
            if self._reading_paused and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            await self._readable.wait()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._resume()
        return data

    def has_pending_input(self) -> bool:
        return bool(self._buffer)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Server-side TLS upgrade; pipelined plaintext is dropped before the handshake starts."""
        assert self.transport is not None
        await self.drain()
        self._buffer.clear()
        self._discarding = False
        self._reading_paused = False
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(self.transport, self, context, server_side=True,
                                   ssl_handshake_timeout=timeout)
        if new is None:
            raise ConnectionClosed
        self.transport = new

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
