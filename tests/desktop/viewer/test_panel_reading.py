"""Reading mail in the viewer: charsets decoded, HTML shown without remote content or scripts, attachments
saved byte for byte under plain names, bounces explained, screenshots for a person to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import viewer_samples as samples
from conftest import MemoryKeyring, RecordingHTTPServer
from desktop_support import PASSWORD, on_engine
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWebEngineCore import QWebEngineScript
from viewer_driver import ALICE, WAIT, deliver, make_panel, open_account, select_subject, wait_rows

from desktop.bridge import EngineBridge
from desktop.panels.mailbox_viewer import MailboxViewerPanel
from desktop.viewer.reading import ReadingPane
from desktop.viewer.webview import MessageWebView
from engine.runtime import Engine, EngineThread


def js(qtbot: Any, panel: MailboxViewerPanel, script: str) -> Any:
    box: list[Any] = []
    web = cast(MessageWebView, panel.reading.web)      # js() is only called once an HTML body is shown
    web.page().runJavaScript(script, QWebEngineScript.ScriptWorldId.ApplicationWorld, box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=WAIT)
    return box[0]


def opened(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path, backend: Any,
           *messages: bytes) -> MailboxViewerPanel:
    for data in messages:
        deliver(running, data)
    panel: MailboxViewerPanel = make_panel(qtbot, bridge, tmp_path, backend)
    open_account(qtbot, panel, PASSWORD)
    wait_rows(qtbot, panel, len(messages))
    return panel


def test_charsets_and_encodings_are_decoded(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path,
                                            keyring_backend: MemoryKeyring, screenshots_dir: Path) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend,
                   samples.plain_text(), samples.latin1(), samples.koi8r())
    select_subject(qtbot, panel, "Café crème")
    assert panel.reading.from_label.text() == "François Pérez <francois@remote.test>"
    assert "Un café crème, s'il vous plaît." in panel.reading.text_view.toPlainText()

    select_subject(qtbot, panel, "Привет")
    assert "Привет, Алиса! Как дела?" in panel.reading.text_view.toPlainText()

    select_subject(qtbot, panel, "Grüße aus Köln — ein Test")
    assert panel.reading.body_kind == ReadingPane.BODY_TEXT
    html = panel.reading.text_view.toHtml()
    assert 'href="https://example.org/page?x=1"' in html           # the link is clickable
    panel.grab().save(str(screenshots_dir / "viewer-plain-text.png"))

    panel.reading.headers_button.click()
    assert "Content-Transfer-Encoding: quoted-printable" in panel.reading.headers_view.toPlainText()
    panel.reading.source_button.click()
    assert "=C3=BC" in panel.reading.source_view.toPlainText() or "Gr=C3=BC" in panel.reading.source_view.toPlainText()


def test_newsletter_loads_nothing_remote_and_runs_no_script(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                            tmp_path: Path, keyring_backend: MemoryKeyring,
                                                            http_server: RecordingHTTPServer,
                                                            screenshots_dir: Path) -> None:
    remote = http_server.url("/img.png")
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.newsletter(remote))
    select_subject(qtbot, panel, "Our weekly newsletter")
    reading = panel.reading
    assert reading.body_kind == ReadingPane.BODY_HTML and reading.web is not None
    # The inline logo (cid:) is shown: the page has rendered its images.
    qtbot.waitUntil(lambda: js(qtbot, panel, "document.getElementById('logo') && "
                                             "document.getElementById('logo').naturalWidth") == 1, timeout=WAIT)
    assert js(qtbot, panel, "document.getElementById('headline').textContent") == "This week"
    assert reading.web.title() != "script ran" and js(qtbot, panel, "document.title") != "script ran"
    assert http_server.requests == []
    assert reading.remote_bar.isVisible()
    assert "1 item from 127.0.0.1" in reading.remote_label.text()
    assert reading.load_always_button.text() == "Always for news@shop.test"
    assert [a.name for a in reading.attachments()] == []       # the inline logo is not listed
    panel.grab().save(str(screenshots_dir / "viewer-newsletter-blocked.png"))

    # The control: once allowed, the same image is fetched, so the server above would have seen it.
    reading.load_once_button.click()
    qtbot.waitUntil(lambda: http_server.requests == ["/img.png"], timeout=WAIT)
    assert not reading.remote_bar.isVisible()


def test_always_for_this_sender_is_remembered(qtbot: Any, bridge: EngineBridge, running: Engine,
                                              tmp_path: Path, keyring_backend: MemoryKeyring,
                                              http_server: RecordingHTTPServer) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.newsletter(http_server.url("/a.png")))
    select_subject(qtbot, panel, "Our weekly newsletter")
    panel.reading.load_always_button.click()
    qtbot.waitUntil(lambda: http_server.requests == ["/a.png"], timeout=WAIT)
    assert panel._remote_allowed_for("news@shop.test")
    assert not panel._remote_allowed_for("other@shop.test")


def test_links_open_in_the_system_browser_only(qtbot: Any, bridge: EngineBridge, running: Engine,
                                               tmp_path: Path, keyring_backend: MemoryKeyring,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    opened_urls: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened_urls.append(url.toString())))
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.plain_text())
    panel.open_link(QUrl("https://example.org/page"))
    panel.open_link(QUrl("file:///etc/passwd"))
    assert opened_urls == ["https://example.org/page"]
    assert "not opened" in panel.message.text()


def test_attachments_save_byte_identical_under_plain_names(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                           tmp_path: Path, keyring_backend: MemoryKeyring,
                                                           screenshots_dir: Path) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.with_attachments())
    select_subject(qtbot, panel, "The report you asked for")
    reading = panel.reading
    listed = reading.attachments()
    assert [a.name for a in listed] == ["report.pdf", "../../.bashrc", "invoice[U+202E]fdp.exe"]
    texts = [reading.attachment_list.item(i).text() for i in range(reading.attachment_list.count())]
    assert texts[0].startswith("report.pdf  —  application/pdf, ")
    assert "\u202e" not in "".join(texts)
    panel.grab().save(str(screenshots_dir / "viewer-attachments.png"))

    target = tmp_path / "downloads"
    target.mkdir()
    for attachment, expected_name in ((listed[0], "report.pdf"), (listed[1], "bashrc")):
        panel.save_attachment(attachment)
        qtbot.waitUntil(lambda: panel.file_dialog is not None and panel.file_dialog.isVisible(), timeout=WAIT)
        dialog = panel.file_dialog
        assert dialog is not None
        dialog.setDirectory(str(target))
        dialog.selectFile(attachment.save_name)
        assert Path(dialog.selectedFiles()[0]).name == expected_name
        dialog.accept()
        qtbot.waitUntil(lambda n=expected_name: (target / n).exists(), timeout=WAIT)
    assert (target / "report.pdf").read_bytes() == samples.PDF
    assert (target / "bashrc").read_bytes() == b"alias rm='rm -rf /'\n"
    assert sorted(p.name for p in target.iterdir()) == ["bashrc", "report.pdf"]
    assert not (tmp_path / ".bashrc").exists() and not (Path.home() / ".bashrc.postroom-partial").exists()


def test_save_all_never_overwrites(qtbot: Any, bridge: EngineBridge, running: Engine, tmp_path: Path,
                                   keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.with_attachments())
    select_subject(qtbot, panel, "The report you asked for")
    target = tmp_path / "all"
    target.mkdir()
    (target / "report.pdf").write_bytes(b"older file")
    panel.save_all_attachments()
    qtbot.waitUntil(lambda: panel.file_dialog is not None and panel.file_dialog.isVisible(), timeout=WAIT)
    assert panel.file_dialog is not None
    panel.file_dialog.fileSelected.emit(str(target))
    qtbot.waitUntil(lambda: "Saved 3 attachments" in panel.message.text(), timeout=WAIT)
    assert sorted(p.name for p in target.iterdir()) == ["bashrc", "invoicefdp.exe", "report (2).pdf", "report.pdf"]
    assert (target / "report.pdf").read_bytes() == b"older file"
    assert (target / "report (2).pdf").read_bytes() == samples.PDF
    assert (target / "invoicefdp.exe").exists() and (target / "bashrc").exists()


def test_a_bounce_shows_failed_recipients_and_reasons_first(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                            tmp_path: Path, keyring_backend: MemoryKeyring,
                                                            screenshots_dir: Path) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.bounce())
    select_subject(qtbot, panel, "Undelivered Mail Returned to Sender")
    reading = panel.reading
    assert reading.dsn_frame.isVisible()
    text = reading.dsn_label.text()
    assert text.startswith("Delivery failed to nobody@remote.test (your message “Lunch on Friday?”).")
    assert "nobody@remote.test: could not be delivered — permanent: the mailbox does not exist — " \
           "550 5.1.1 <nobody@remote.test>: Recipient address rejected: User unknown" in text
    assert "slow@remote.test: is delayed" in text
    panel.grab().save(str(screenshots_dir / "viewer-bounce.png"))


def test_spoofed_sender_is_shown_with_its_real_address(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                       tmp_path: Path,
                                                       keyring_backend: MemoryKeyring) -> None:
    panel = opened(qtbot, bridge, running, tmp_path, keyring_backend, samples.spoofing())
    subject = "Your account [U+202E]gnp.exe"
    select_subject(qtbot, panel, subject)
    reading = panel.reading
    assert reading.from_label.text() == "support@bank.test <attacker@evil.test>"
    assert reading.warning_label.isVisible() and "attacker@evil.test" in reading.warning_label.text()
    # The sender's own "Authentication-Results: evil.test; spf=pass ... bank.test" is ignored; what is
    # shown is what this server checked on arrival.
    text = reading.auth_label.text()
    assert text and "bank.test" not in text and "✔" not in text


def test_own_authentication_results_are_shown_in_words(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                       engine_thread: EngineThread, tmp_path: Path,
                                                       keyring_backend: MemoryKeyring) -> None:
    # As stored by this server on an earlier arrival (over SMTP it would replace the header with its own).
    on_engine(engine_thread, running.store.deliver, [ALICE], samples.authenticated(running.config.hostname))
    panel = make_panel(qtbot, bridge, tmp_path, keyring_backend)
    open_account(qtbot, panel, PASSWORD)
    wait_rows(qtbot, panel, 1)
    select_subject(qtbot, panel, "Checked")
    text = panel.reading.auth_label.text()
    assert "✔ SPF: pass — sent from the sending server, which remote.test's SPF allows to send for it." in text
    assert "✘ DKIM: fail" in text and "✘ DMARC: fail" in text
