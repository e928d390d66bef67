"""Viewer test set-up: QtWebEngine under offscreen Qt (no sandbox when root), a loopback HTTP server that
counts requests (to prove that remote content is not loaded), and messages delivered into the engine."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if os.geteuid() == 0:
    # Chromium refuses to run its sandbox as root; the viewer's own defences do not depend on it.
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
    if "--no-sandbox" not in flags:
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (flags + " --no-sandbox").strip()

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import desktop.viewer.webview  # noqa: F401  (registers our URL scheme before any web engine object)

sys.path.insert(0, str(Path(__file__).parent))


class RecordingHTTPServer:
    """A real HTTP server on 127.0.0.1:<ephemeral> that records every path asked for."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.hit = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                outer.hit.set()
                body = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100"
                                     "01000002024401003b")
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="recording-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(autouse=True)
def _delete_widgets_now(qapp: object) -> Iterator[None]:
    """Web pages must be gone before the shared web profile goes (at exit): run the deferred deletes
    of the widgets pytest-qt closed after each test instead of leaving them to an event loop that may
    never run again."""
    yield
    from PySide6.QtCore import QCoreApplication, QEvent

    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()


@pytest.fixture
def http_server() -> Iterator[RecordingHTTPServer]:
    server = RecordingHTTPServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(5)


# --- the engine: as tests/desktop/conftest.py, plus IMAP (flags are checked from an IMAP client) -------

from engine.config import ListenAddress  # noqa: E402
from engine.runtime import Engine, EngineThread  # noqa: E402

VIEWER_LISTEN = {"smtp": ListenAddress("127.0.0.1", 0), "submission": ListenAddress("127.0.0.1", 0),
                 "imap": ListenAddress("127.0.0.1", 0)}


@pytest.fixture
def engine_thread(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[EngineThread]:
    """Parametrize indirectly with a listen table to run other services (e.g. no submission)."""
    listen = getattr(request, "param", VIEWER_LISTEN)
    thread = EngineThread(Engine(data_dir, listen=dict(listen)))
    thread.start()
    yield thread
    thread.shutdown()


class MemoryKeyring:
    """A keyring backend that keeps secrets in memory (engine.secrets.SecretStore takes any backend
    object with keyring's three methods)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def keyring_backend() -> MemoryKeyring:
    return MemoryKeyring()
