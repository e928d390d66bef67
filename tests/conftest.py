"""Every async test runs on the loop the engine itself runs on (engine/eventloop.py: uvloop where it is
installed), so a difference between uvloop and asyncio's own loop shows up here, not in a user's server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from engine.eventloop import loop_kind, new_event_loop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {loop_kind(): new_event_loop}
