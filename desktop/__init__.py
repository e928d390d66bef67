"""Postroom's desktop app (PySide6 + qasync): the window over the engine, which runs in its own thread.

Importing this package first works around a PySide6 6.12.0 reference-counting bug (see `_pin_singletons`).
"""

from __future__ import annotations

import ctypes
import sys


def _pin_singletons() -> None:
    """Makes None, True and False immortal on CPython < 3.12, as 3.12 itself does.

    PySide6 6.12.0 drops one reference to None each time an invalid QVariant reaches Python or a Python
    override returns None for a QVariant (every `data()` call for a role a model does not handle), and
    does the same to True/False on some paths.  CPython 3.11 starts with a few thousand references to
    None, so a table view painting for a few seconds drives the count to zero and the process aborts
    with "Fatal Python error: none_dealloc" (reproduced here: 1,000 `QStandardItemModel.data()` calls on
    an empty cell lower `sys.getrefcount(None)` by exactly 1,000).  Adding 2**40 references makes the
    count unreachable; the objects are never freed anyway.  Remove once PySide6 fixes the converter.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40


_pin_singletons()
