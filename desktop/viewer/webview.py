"""The HTML message view: QtWebEngine with JavaScript off, every remote request blocked, links to the browser.

Each shown message is served from our own URL scheme (`postroom-msg:/<random token>/doc`, its inline
parts at `.../part/<n>`) by a scheme handler on one shared off-the-record profile, so nothing touches the
disk and a message can name only its own parts (the token is unguessable).  A per-page request
interceptor blocks everything that is not our scheme or a data: URL — unless the person allowed remote
content for this message — and reports what it blocked.  Navigation is refused: a click on a link is
handed to the panel, which opens it in the system browser (QDesktopServices).

`prepare_webengine()` must run before the first QtWebEngine object exists (best: before QApplication);
importing this module does it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from PySide6.QtCore import QBuffer, QByteArray, QCoreApplication, QIODevice, QObject, QUrl, Signal
from PySide6.QtGui import QAction, QContextMenuEvent, QGuiApplication
from PySide6.QtWebEngineCore import (
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineSettings,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
    QWebEngineUrlRequestJob,
    QWebEngineUrlScheme,
    QWebEngineUrlSchemeHandler,
)
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QMenu, QWidget

from desktop.viewer.html import SCHEME, SafeHtml, content_security_policy, sanitize_html

PartSource = Callable[[int], tuple[bytes, str]]
# What a message may load from itself: pictures, fonts and style sheets (never documents or scripts).
SERVABLE_PREFIXES = ("image/", "font/", "text/css")
ALWAYS_ALLOWED_SCHEMES = {SCHEME, "data", "about"}
REMOTE_SCHEMES = {"http", "https"}

_registered = False


def prepare_webengine() -> None:
    """Registers `postroom-msg:` with QtWebEngine (idempotent; must precede the first profile)."""
    global _registered
    if _registered:
        return
    # Chromium refuses to start its sandbox as root and QtWebEngine then aborts the whole process.  As root
    # (a service box, a CI runner) run without it: scripts are off and remote requests blocked anyway.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
        if "--no-sandbox" not in flags.split():
            os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = f"{flags} --no-sandbox".strip()
    scheme = QWebEngineUrlScheme(SCHEME.encode())
    scheme.setSyntax(QWebEngineUrlScheme.Syntax.Path)
    # No LocalScheme flag: it would also stop the remote images that a person chose to load.  Blocking
    # by default is the interceptor's and the CSP's job.
    scheme.setFlags(QWebEngineUrlScheme.Flag(0))
    QWebEngineUrlScheme.registerScheme(scheme)
    _registered = True


prepare_webengine()


@dataclass
class _Document:
    html: bytes
    csp: bytes
    parts: PartSource


class MessageSchemeHandler(QWebEngineUrlSchemeHandler):
    """Serves registered documents and their parts; anything else is "not found"."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.documents: dict[str, _Document] = {}
        self.served: list[str] = []          # paths served, newest last (kept short; for tests and logs)

    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        pieces = job.requestUrl().path().strip("/").split("/")
        document = self.documents.get(pieces[0]) if pieces else None
        if document is None:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        headers = {QByteArray(b"X-Content-Type-Options"): QByteArray(b"nosniff"),
                   QByteArray(b"Content-Security-Policy"): QByteArray(document.csp)}
        if pieces[1:] == ["doc"]:
            body, ctype = document.html, "text/html;charset=utf-8"
        elif len(pieces) == 3 and pieces[1] == "part" and pieces[2].isdigit():
            try:
                body, ctype = document.parts(int(pieces[2]))
            except (KeyError, ValueError):
                job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
                return
            if not ctype.lower().startswith(SERVABLE_PREFIXES):
                job.fail(QWebEngineUrlRequestJob.Error.RequestDenied)
                return
        else:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        self.served.append("/".join(pieces[1:]))
        del self.served[:-50]
        job.setAdditionalResponseHeaders(headers)
        buffer = QBuffer(job)
        buffer.setData(QByteArray(body))
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        job.reply(ctype.encode(), buffer)


_profile: QWebEngineProfile | None = None
_handler: MessageSchemeHandler | None = None


def shared_profile() -> tuple[QWebEngineProfile, MessageSchemeHandler]:
    """One off-the-record profile for all message views (no cache or cookies on disk), owned by the app
    so that it outlives every page (a profile deleted before its pages is a crash waiting to happen)."""
    global _profile, _handler
    if _profile is None or _handler is None:
        prepare_webengine()
        profile = QWebEngineProfile(QCoreApplication.instance())
        profile.setHttpCacheType(QWebEngineProfile.HttpCacheType.MemoryHttpCache)
        profile.setPersistentCookiesPolicy(QWebEngineProfile.PersistentCookiesPolicy.NoPersistentCookies)
        profile.setSpellCheckEnabled(False)
        handler = MessageSchemeHandler(profile)
        profile.installUrlSchemeHandler(SCHEME.encode(), handler)
        _profile, _handler = profile, handler
    return _profile, _handler


def harden(settings: QWebEngineSettings) -> None:
    """JavaScript and everything that could reach out or escape the view, off."""
    attr = QWebEngineSettings.WebAttribute
    for name, on in (
        (attr.JavascriptEnabled, False),
        (attr.JavascriptCanOpenWindows, False),
        (attr.JavascriptCanAccessClipboard, False),
        (attr.JavascriptCanPaste, False),
        (attr.AllowWindowActivationFromJavaScript, False),
        (attr.PluginsEnabled, False),
        (attr.PdfViewerEnabled, False),
        (attr.LocalStorageEnabled, False),
        (attr.LocalContentCanAccessRemoteUrls, False),
        (attr.LocalContentCanAccessFileUrls, False),
        (attr.AllowRunningInsecureContent, False),
        (attr.DnsPrefetchEnabled, False),
        (attr.HyperlinkAuditingEnabled, False),
        (attr.WebGLEnabled, False),
        (attr.Accelerated2dCanvasEnabled, False),
        (attr.ScreenCaptureEnabled, False),
        (attr.NavigateOnDropEnabled, False),
        (attr.AutoLoadIconsForPage, False),
        (attr.TouchIconsEnabled, False),
        (attr.FullScreenSupportEnabled, False),
        (attr.ErrorPageEnabled, False),
        (attr.FocusOnNavigationEnabled, False),
        (attr.AutoLoadImages, True),          # our own cid: parts; remote ones are stopped below
    ):
        settings.setAttribute(name, on)


class RemoteBlocker(QWebEngineUrlRequestInterceptor):
    """Blocks every request but our scheme and data: (and http/https when allowed), remembering what."""

    blocked = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.allow_remote = False
        self.blocked_urls: list[str] = []

    def reset(self, allow_remote: bool) -> None:
        self.allow_remote = allow_remote
        self.blocked_urls = []

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        scheme = info.requestUrl().scheme().lower()
        if scheme in ALWAYS_ALLOWED_SCHEMES or (self.allow_remote and scheme in REMOTE_SCHEMES):
            return
        info.block(True)
        url = info.requestUrl().toString()
        self.blocked_urls.append(url)
        self.blocked.emit(url)


class MessagePage(QWebEnginePage):
    """Refuses every navigation but loading our own document; reports link clicks instead."""

    linkClicked = Signal(QUrl)

    def __init__(self, profile: QWebEngineProfile, parent: QObject | None = None) -> None:
        super().__init__(profile, parent)
        harden(self.settings())
        self.blocker = RemoteBlocker(self)
        self.setUrlRequestInterceptor(self.blocker)

    def acceptNavigationRequest(self, url: QUrl | str, type: QWebEnginePage.NavigationType,
                                isMainFrame: bool) -> bool:
        target = QUrl(url)
        if type == QWebEnginePage.NavigationType.NavigationTypeLinkClicked:
            self.linkClicked.emit(target)
            return False
        return isMainFrame and target.scheme() == SCHEME and type in (
            QWebEnginePage.NavigationType.NavigationTypeTyped,
            QWebEnginePage.NavigationType.NavigationTypeReload,
            QWebEnginePage.NavigationType.NavigationTypeOther)

    def createWindow(self, type: QWebEnginePage.WebWindowType) -> QWebEnginePage | None:  # type: ignore[override]
        return None         # no pop-ups, no "open in new window"

    def javaScriptConsoleMessage(self, level: QWebEnginePage.JavaScriptConsoleMessageLevel, message: str,
                                 lineNumber: int, sourceID: str) -> None:
        return              # the page runs no scripts; CSP reports would only be noise on stderr


class MessageWebView(QWebEngineView):
    """Shows one sanitised HTML body; `remoteBlocked` tells what was stopped, `linkClicked` what was clicked."""

    remoteBlocked = Signal(str)
    linkClicked = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        profile, self._handler = shared_profile()
        self.message_page = MessagePage(profile, self)
        self.setPage(self.message_page)
        self.message_page.blocker.blocked.connect(self.remoteBlocked)
        self.message_page.linkClicked.connect(self.linkClicked)
        self._token: str | None = None
        self.last_html: SafeHtml | None = None
        # Deleted with its window rather than closed: stop serving its message all the same.
        current = self._current = [""]
        documents = self._handler.documents
        self.destroyed.connect(lambda *_: documents.pop(current[0], None))

    def show_html(self, html: str, cids: dict[str, int], parts: PartSource, *, allow_remote: bool) -> SafeHtml:
        """Sanitises and shows `html`; returns what was shown (with its list of remote resources)."""
        self.forget()
        token = secrets.token_urlsafe(18)

        def part_url(cid: str) -> str | None:
            number = cids.get(cid)
            if number is None:
                number = cids.get(unquote(cid))
            return None if number is None else f"{SCHEME}:/{token}/part/{number}"

        safe = sanitize_html(html, part_url, allow_remote=allow_remote)
        csp = content_security_policy(allow_remote).encode()
        self._handler.documents[token] = _Document(safe.document.encode("utf-8"), csp, parts)
        self._token = self._current[0] = token
        self.last_html = safe
        self.message_page.blocker.reset(allow_remote)
        self.load(QUrl(f"{SCHEME}:/{token}/doc"))
        return safe

    def forget(self) -> None:
        """Stops serving the current message (its parts are no longer reachable)."""
        if self._token is not None:
            self._handler.documents.pop(self._token, None)
            self._token = None

    @property
    def blocked_urls(self) -> list[str]:
        return list(self.message_page.blocker.blocked_urls)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        """Copy and select, nothing that opens, saves or navigates."""
        menu = QMenu(self)
        copy = QAction("Copy", menu)
        copy.triggered.connect(lambda: self.message_page.triggerAction(QWebEnginePage.WebAction.Copy))
        menu.addAction(copy)
        request = self.lastContextMenuRequest()
        link = request.linkUrl() if request is not None else QUrl()
        if link.isValid() and link.scheme() in ("http", "https", "mailto"):
            copy_link = QAction("Copy link address", menu)
            copy_link.triggered.connect(lambda: QGuiApplication.clipboard().setText(link.toString()))
            menu.addAction(copy_link)
        select = QAction("Select all", menu)
        select.triggered.connect(lambda: self.message_page.triggerAction(QWebEnginePage.WebAction.SelectAll))
        menu.addAction(select)
        menu.popup(event.globalPos())

    def closeEvent(self, event: object) -> None:
        self.forget()
        super().closeEvent(event)  # type: ignore[arg-type]
