"""Calling into an event loop from whichever thread one is on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """fn(*args) now when already on `loop`, else queued onto it; nothing when the loop is gone.

    Transports, futures and asyncio.Event are not thread-safe: CLI-in-process and GUI bridge calls arrive on
    worker threads and must not touch them directly."""
    if loop is None or loop.is_closed():
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
    else:
        with contextlib.suppress(RuntimeError):     # closed between the check and the call
            loop.call_soon_threadsafe(fn, *args)
