"""The HTML view's own defences, each tested without the others: JavaScript off, remote requests blocked
by the interceptor, inline cid: parts served, links handed over instead of followed."""

from __future__ import annotations

from typing import Any

import viewer_samples as samples
from conftest import RecordingHTTPServer
from PySide6.QtCore import QUrl
from PySide6.QtWebEngineCore import QWebEnginePage, QWebEngineScript

from desktop.viewer.html import SCHEME
from desktop.viewer.webview import MessageWebView, PartSource, _Document


def shown(qtbot: Any, html: str, *, allow_remote: bool = False, cids: dict[str, int] | None = None,
          parts: PartSource | None = None) -> MessageWebView:
    view = MessageWebView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    with qtbot.waitSignal(view.loadFinished, timeout=20000):
        view.show_html(html, cids or {}, parts or (lambda n: (_ for _ in ()).throw(KeyError(n))),
                       allow_remote=allow_remote)
    return view


def run_js(qtbot: Any, view: MessageWebView, script: str) -> Any:
    """Runs a script in an isolated world (allowed even with page JavaScript off) to inspect the page."""
    box: list[Any] = []
    view.page().runJavaScript(script, QWebEngineScript.ScriptWorldId.ApplicationWorld, box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=10000)
    return box[0]


def test_remote_image_is_blocked_and_reported(qtbot: Any, http_server: RecordingHTTPServer) -> None:
    url = http_server.url("/pixel.gif")
    view = shown(qtbot, f"<p>hi</p><img src='{url}'>")
    assert view.last_html is not None and view.last_html.remote == (url,)
    assert run_js(qtbot, view, "document.images[0].complete && document.images[0].naturalWidth") == 0
    assert http_server.requests == []


def test_remote_image_loads_only_when_allowed(qtbot: Any, http_server: RecordingHTTPServer) -> None:
    url = http_server.url("/allowed.gif")
    view = shown(qtbot, f"<img src='{url}'>", allow_remote=True)
    qtbot.waitUntil(lambda: http_server.requests == ["/allowed.gif"], timeout=10000)
    assert view.blocked_urls == []


def test_scripts_do_not_run_even_if_the_sanitiser_missed_one(qtbot: Any) -> None:
    view = shown(qtbot, "<p id='p'>x</p>")
    # Served straight, past the sanitiser and with a policy that would allow inline scripts: only the
    # page's JavaScript setting stands in the way.
    view._handler.documents["raw"] = _Document(
        b"<html><head><title>before</title></head><body><script>document.title='script ran'</script>"
        b"<img src=x onerror=\"document.title='handler ran'\"></body></html>",
        b"script-src 'unsafe-inline'", lambda n: (b"", "image/png"))
    with qtbot.waitSignal(view.loadFinished, timeout=20000):
        view.load(QUrl(f"{SCHEME}:/raw/doc"))
    assert view.title() == "before"
    assert run_js(qtbot, view, "document.title") == "before"


def test_inline_cid_image_is_served_from_the_message(qtbot: Any) -> None:
    view = shown(qtbot, "<img id='logo' src='cid:logo@shop.test'>", cids={"logo@shop.test": 3},
                 parts=lambda n: (samples.PNG, "image/png") if n == 3 else (_ for _ in ()).throw(KeyError(n)))
    qtbot.waitUntil(lambda: run_js(qtbot, view, "document.getElementById('logo').naturalWidth") == 1,
                    timeout=10000)


def test_a_part_that_is_not_an_image_is_not_served(qtbot: Any) -> None:
    view = shown(qtbot, "<img id='x' src='cid:page@x'>", cids={"page@x": 1},
                 parts=lambda n: (b"<script>alert(1)</script>", "text/html"))
    assert run_js(qtbot, view, "document.getElementById('x').naturalWidth") == 0
    assert "part/1" not in view._handler.served


def test_link_click_is_reported_not_followed(qtbot: Any) -> None:
    view = shown(qtbot, "<a id='a' href='https://example.org/x' style='display:block;width:300px;"
                        "height:100px'>link</a>")
    clicked: list[QUrl] = []
    view.linkClicked.connect(clicked.append)
    page = view.page()
    accepted = page.acceptNavigationRequest(QUrl("https://example.org/x"),
                                            QWebEnginePage.NavigationType.NavigationTypeLinkClicked, True)
    assert accepted is False
    assert [u.toString() for u in clicked] == ["https://example.org/x"]
    # Any other navigation away from the message is refused too.
    assert page.acceptNavigationRequest(QUrl("https://example.org/"),
                                        QWebEnginePage.NavigationType.NavigationTypeOther, True) is False


def test_context_menu_offers_nothing_that_opens_or_saves(qtbot: Any) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QMenu

    view = shown(qtbot, "<p>text</p><a href='https://example.org/'>link</a>")
    view.contextMenuEvent(QContextMenuEvent(QContextMenuEvent.Reason.Mouse, QPoint(10, 10), QPoint(10, 10)))
    menu = view.findChildren(QMenu)[-1]
    assert [a.text() for a in menu.actions()] == ["Copy", "Select all"]
    menu.close()
