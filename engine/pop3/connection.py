"""One client connection as an asyncio Protocol that hands out command lines and takes replies.

Why not asyncio streams: STLS must throw away whatever plaintext the client pipelined behind it (RFC 2595
§4; the STARTTLS injection attack, CVE-2011-0411), and a StreamReader has no public way to empty its
buffer.  Owning the buffer also lets an over-long line be skipped to its end instead of killing the
connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

# Stop reading from the socket while this much unread input waits (pipelined commands), so a client that
# pipelines without reading replies cannot grow our memory.
READ_HIGH_WATER = 64 * 1024
WRITE_HIGH_WATER = 256 * 1024


class LineTooLong(Exception):
    """The client sent a line longer than allowed; the rest of that line has already been skipped."""


class ConnectionClosed(Exception):
    """The client went away (EOF or reset) before a whole line arrived."""


class Connection(asyncio.Protocol):
    """Line-oriented reading and flow-controlled writing over one transport (plain or TLS)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._discarding = False        # inside an over-long line: drop input up to the next LF
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self.closed = asyncio.Event()
        # Set by the listener: called with this connection once the transport (and any implicit TLS) is up.
        self.on_connected: Callable[[Connection], None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Room for a few RETR replies in flight before drain() waits for the client (default is 64 KiB).
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self.on_connected is not None:
            self.on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()
        if len(self._buffer) > READ_HIGH_WATER and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._readable.set()
        # Keep our side open so replies to commands already received (a QUIT) still reach a client that
        # half-closed; the session closes when done.  TLS cannot stay half-open, and asyncio says so.
        return None if self.is_tls else True

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._readable.set()
        self._writable.set()
        self.closed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- what a session uses ------------------------------------------------------------------------

    @property
    def peer(self) -> tuple[str, int]:
        """The client's address and port."""
        info = self.transport.get_extra_info("peername") if self.transport is not None else None
        if not info:
            return ("", 0)
        return (str(info[0]), int(info[1]))

    @property
    def is_tls(self) -> bool:
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is not None

    async def readline(self, limit: int, timeout: float | None = None) -> bytes:
        """The next line without its CRLF (a bare LF is accepted as well).

        Raises LineTooLong when the line, with its CRLF, exceeds `limit` octets — after skipping to its
        end, so the next call reads the following command — ConnectionClosed at end of input, and
        TimeoutError when no whole line has come within `timeout` seconds.  A line already buffered
        (pipelining) is returned without arming any timer.
        """
        deadline: float | None = None
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                line = bytes(self._buffer[:nl])
                del self._buffer[: nl + 1]
                self._maybe_resume_reading()
                if self._discarding:
                    self._discarding = False
                    raise LineTooLong
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) + 2 > limit:
                    raise LineTooLong
                return line
            if len(self._buffer) > limit or self._discarding:
                self._discarding = True
                self._buffer.clear()
                self._maybe_resume_reading()
            if self._eof:
                raise ConnectionClosed
            self._readable.clear()
            if timeout is None:
                await self._readable.wait()
                continue
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + timeout
            async with asyncio.timeout_at(deadline):
                await self._readable.wait()

    def _maybe_resume_reading(self) -> None:
        if self._reading_paused and len(self._buffer) <= READ_HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self, timeout: float | None = None) -> None:
        """Waits while the transport's write buffer is above its high-water mark, at most `timeout`
        seconds (then TimeoutError); returns at once, arming no timer, when there is room."""
        if not self._writable.is_set():
            async with asyncio.timeout(timeout):
                await self._writable.wait()
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Upgrades to TLS as the server side (RFC 2595 §4 STLS), discarding pipelined plaintext first.

        The buffer is cleared and reading paused in one synchronous step inside loop.start_tls, so no
        plaintext byte received before the handshake can be read as if it came over TLS.
        """
        assert self.transport is not None
        await self.drain()
        self._buffer.clear()
        self._discarding = False
        self._reading_paused = False    # loop.start_tls pauses reading, then resumes it itself
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(self.transport, self, context, server_side=True,
                                   ssl_handshake_timeout=timeout)
        if new is None:
            raise ConnectionClosed
        self.transport = new
        new.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
