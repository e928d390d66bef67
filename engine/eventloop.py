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
from collections.abc import Coroutine
from typing import Any, TypeVar

ENVIRONMENT = "POSTROOM_EVENT_LOOP"
_STANDARD = ("asyncio", "selector", "standard")
T = TypeVar("T")


def loop_kind() -> str:
    """"uvloop" or "asyncio": the loop new_event_loop() builds in this environment."""
    if os.environ.get(ENVIRONMENT, "").strip().lower() in _STANDARD:
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:           # not built for this platform (Windows), or left out of the install
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for the engine (or anything that should run as the engine does)."""
    if loop_kind() == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.SelectorEventLoop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the engine's loop: `postroom serve`, the benches' servers, test child processes."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What a running loop is, in loop_kind()'s words (for the log and `postroom serve`)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
