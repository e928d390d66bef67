"""A line-oriented server connection as an asyncio Protocol, shared by the IMAP and POP3 listeners.

Why a Protocol rather than asyncio streams: STARTTLS/STLS must throw away whatever plaintext a client
pipelined behind the command (RFC 3501 §6.2.1, RFC 2595 §4; the injection attack CVE-2011-0411), and a
StreamReader offers no public way to empty its buffer.  Owning the buffer also lets an over-long line be
skipped to its end so the session lives on instead of being dropped.

Why one module: both protocols need exactly the same buffering, flow control, EOF handling and TLS
upgrade, and two copies drift apart (a fix to one would silently miss the other).  What differs is small
and stays with each protocol as class attributes or subclass methods: how much unread input to hold,
whether to widen the write buffer, whether a plain socket stays half-open after the client's EOF, and
IMAP's literals.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Self, cast


class LineTooLong(Exception):
    """A line longer than allowed; the rest of it has already been skipped.

    `head` is its first octets, so a protocol that tags commands (IMAP) can still answer with the tag.
    """

    def __init__(self, head: bytes = b"") -> None:
        super().__init__("line too long")
        self.head = head


class ConnectionClosed(Exception):
    """The client went away (EOF or reset) before what was asked for arrived."""


class LineConnection(asyncio.Protocol):
    """Buffered line reading and flow-controlled writing over one transport (plain or TLS)."""

    # Stop reading from the socket while this much unread input waits (pipelined commands), so a client
    # that pipelines without reading replies cannot grow our memory; resume below half of it.
    read_high_water: int = 256 * 1024
    # When set, the transport's write-buffer high-water mark (asyncio's default is 64 KiB).
    write_high_water: int | None = None
    # After the client's EOF on a plain connection, keep our side open so replies to commands already
    # received still reach it.  TLS cannot stay half-open, and asyncio says so, whatever this is.
    half_open_after_eof: bool = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._discarding = False        # inside an over-long line: drop input up to the next LF
        self._discard_head = b""
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self.closed = asyncio.Event()
        # Set by the listener: called once with this connection when the transport (and any implicit
        # TLS) is up.
        self.on_connected: Callable[[Self], None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self: Self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports have the whole Transport API without the base class.
        self.transport = cast(asyncio.Transport, transport)
        self._configure(self.transport)
        if self.on_connected is not None:
            callback, self.on_connected = self.on_connected, None
            callback(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()
        if len(self._buffer) > self.read_high_water and self.transport is not None \
                and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._readable.set()
        return True if self.half_open_after_eof and not self.is_tls else None

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
                    raise LineTooLong(self._discard_head)
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) + 2 > limit:
                    raise LineTooLong(line[:100])
                return line
            if len(self._buffer) > limit or self._discarding:
                if not self._discarding:
                    self._discard_head = bytes(self._buffer[:100])
                self._discarding = True
                self._buffer.clear()
                self._maybe_resume_reading()
            if timeout is None:
                await self._more()
                continue
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + timeout
            async with asyncio.timeout_at(deadline):
                await self._more()

    async def _more(self) -> None:
        """Waits for more input; reading resumes even above the high-water mark, since the caller
        needs more than is buffered (and has already bounded how much)."""
        if self._eof:
            raise ConnectionClosed
        self._readable.clear()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        await self._readable.wait()

    def _maybe_resume_reading(self) -> None:
        if self._reading_paused and len(self._buffer) <= self.read_high_water // 2 \
                and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _configure(self, transport: asyncio.Transport) -> None:
        if self.write_high_water is not None:
            transport.set_write_buffer_limits(high=self.write_high_water)

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
        """Upgrades to TLS as the server side, discarding pipelined plaintext first.

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
        self._configure(new)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
