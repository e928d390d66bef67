"""One window per data directory: a second `postroom` hands over to the first instead of fighting for ports.

The running app listens on a QLocalServer whose name is derived from the data directory's real path; a new
instance that can connect to it sends "show" and exits.  A stale socket left by a crash is removed, since
nobody answers on it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500
SHOW = b"show\n"


def server_name(data_dir: Path) -> str:
    key = hashlib.sha256(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()[:16]
    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "")
    return f"postroom-{user}-{key}"


def notify_running(data_dir: Path) -> bool:
    """True when another instance serves this data directory (and has been asked to show itself).

    Runs before any window exists, so the short blocking waits here stall nothing.
    """
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_dir))
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(SHOW)
    socket.flush()
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class SingleInstance(QObject):
    """Listens for later instances; emits `showRequested` when one starts."""

    showRequested = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(data_dir)
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._accept)
        self._sockets: list[QLocalSocket] = []

    def listen(self) -> bool:
        if self._server.listen(self.name):
            return True
        # Nobody answered in notify_running, so whatever holds the name is a leftover from a crash.
        QLocalServer.removeServer(self.name)
        return self._server.listen(self.name)

    def close(self) -> None:
        for socket in self._sockets:
            socket.abort()
        self._sockets.clear()
        self._server.close()

    def _accept(self) -> None:
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            # Kept here and closed by us: the server owns the socket objects, so nobody deletes them directly.
            self._sockets.append(socket)
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))

    def _forget(self, socket: QLocalSocket) -> None:
        if socket in self._sockets:
            self._sockets.remove(socket)

    def _read(self, socket: QLocalSocket) -> None:
        if bytes(socket.readAll().data()).startswith(SHOW.strip()):
            self.showRequested.emit()
