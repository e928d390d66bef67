"""Postroom's mail engine: SMTP in and out, IMAP, POP3, the store and the logs, on one asyncio loop.

This package's top level is the public API that the desktop app, the CLI and the tests use; everything in
sub-packages is internal to the engine.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("postroom")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
