"""The engine's event loop: uvloop where it is installed, asyncio's selector loop otherwise.

Why uvloop: every SMTP message is seven round trips on its own connection, and with many sessions the
engine's process is CPU-bound in the loop's transport and scheduling code, which uvloop runs in C on
libuv.  Measured with bench/smtp_throughput.py (5,000 messages of 4 KiB, same run, 3 interleaved rounds):
20 sessions 1,171 msg/s on uvloop against 852 on the selector loop, 1.16 against 1.62 CPU ms per
message; 1 session 407 against 354 msg/s.

Why a factory and not a policy: the desktop app runs qasync, whose global policy makes every
`asyncio.new_event_loop()` a Qt loop (DESIGN.md); the engine always builds its own loop with this.

`POSTROOM_EVENT_LOOP=asyncio` picks the standard loop, to rule uvloop out while chasing a problem.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

ENVIRONMENT = "POSTROOM_EVENT_LOOP"


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get(ENVIRONMENT, "").strip().lower() in ("asyncio", "selector", "standard"):
        return None
    try:
        import uvloop
    except ImportError:           # not built for this platform (Windows), or left out of the install
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for the engine (or anything that should run as the engine does)."""
    factory = _uvloop_factory()
    return factory() if factory is not None else asyncio.SelectorEventLoop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What the log and `postroom serve` call the loop: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
