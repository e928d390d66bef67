"""Fixtures for routing tests: a loopback DNS server with a zone each test writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_loopback() -> ModuleType:
    """The shared loopback peers (tests/engine/queue/loopback.py); test directories are not packages."""
    name = "postroom_tests_loopback"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "queue" / "loopback.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
