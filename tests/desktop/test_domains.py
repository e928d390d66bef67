"""Domains & accounts: add and remove domains, accounts and aliases with the engine's messages in place,
and the DNS records view marking each record present, missing or different against a live DNS zone."""

from __future__ import annotations

import dataclasses
from typing import Any

from desktop_support import PASSWORD, on_engine
from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from desktop.bridge import EngineBridge
from desktop.panels.domains import DomainsPanel
from engine.runtime import Engine, EngineThread


def rows(model: QAbstractItemModel) -> list[list[str]]:
    return [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(model.rowCount())]


def click(qtbot: Any, button: QWidget) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_add_domain_account_alias_and_catch_all(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                 engine_thread: EngineThread, qtmodeltester: Any) -> None:
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.domains.stringList() == ["example.test"], timeout=5000)

    qtbot.keyClicks(panel.new_domain, "second.test")
    click(qtbot, panel.add_domain_button)
    qtbot.waitUntil(lambda: panel.domains.stringList() == ["example.test", "second.test"], timeout=5000)
    qtbot.waitUntil(lambda: panel.domain == "second.test", timeout=5000)
    assert "Added second.test" in panel.domain_message.text()

    qtbot.keyClicks(panel.account_local, "bob")
    qtbot.keyClicks(panel.account_password, PASSWORD)
    qtbot.keyClicks(panel.account_quota, "1GiB")
    click(qtbot, panel.add_account_button)
    qtbot.waitUntil(lambda: rows(panel.accounts) == [["bob@second.test", "enabled", "1.0 GiB"]], timeout=5000)
    assert on_engine(engine_thread, running.directory.authenticate, "bob@second.test", PASSWORD) is not None
    assert running.store.has_account("bob@second.test")
    qtmodeltester.check(panel.accounts)

    qtbot.keyClicks(panel.alias_local, "info")
    qtbot.keyClicks(panel.alias_targets, "bob@second.test")
    click(qtbot, panel.add_alias_button)
    qtbot.waitUntil(lambda: ["info@second.test", "bob@second.test"] in rows(panel.aliases), timeout=5000)
    # The form empties itself once the engine confirms; a live refresh can show the row a moment earlier.
    qtbot.waitUntil(lambda: panel.alias_local.text() == "" and panel.alias_targets.text() == "", timeout=5000)
    qtbot.keyClicks(panel.alias_targets, "bob@second.test")
    click(qtbot, panel.add_alias_button)                    # empty name: the catch-all
    qtbot.waitUntil(lambda: ["@second.test (catch-all)", "bob@second.test"] in rows(panel.aliases), timeout=5000)
    assert on_engine(engine_thread, running.directory.resolve, "anything@second.test") == ["bob@second.test"]


def test_validation_messages_appear_in_place(qtbot: Any, bridge: EngineBridge, running: Engine) -> None:
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.domain == "example.test", timeout=5000)

    qtbot.keyClicks(panel.new_domain, "example.test")
    click(qtbot, panel.add_domain_button)
    qtbot.waitUntil(lambda: "already exists" in panel.domain_message.text(), timeout=5000)

    qtbot.keyClicks(panel.account_local, "alice")
    qtbot.keyClicks(panel.account_password, PASSWORD)
    click(qtbot, panel.add_account_button)
    qtbot.waitUntil(lambda: "already exists" in panel.account_message.text(), timeout=5000)
    assert "Traceback" not in panel.account_message.text()

    panel.account_local.clear()
    qtbot.keyClicks(panel.account_local, "carol")
    panel.account_password.clear()
    click(qtbot, panel.add_account_button)
    qtbot.waitUntil(lambda: "empty password" in panel.account_message.text(), timeout=5000)

    panel.account_quota.setText("lots")
    click(qtbot, panel.add_account_button)
    assert "Quota:" in panel.account_message.text()

    qtbot.keyClicks(panel.alias_targets, "nobody@example.test")
    panel.alias_local.setText("sales")
    click(qtbot, panel.add_alias_button)
    qtbot.waitUntil(lambda: "nobody@example.test" in panel.alias_message.text(), timeout=5000)
    assert panel.alias_message.property("kind") == "error"


def test_reset_password_disable_and_remove_account(qtbot: Any, bridge: EngineBridge, running: Engine,
                                                   engine_thread: EngineThread) -> None:
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: rows(panel.accounts) != [], timeout=5000)
    panel.account_view.selectRow(0)
    qtbot.keyClicks(panel.account_password, "a new long password")
    click(qtbot, panel.password_button)
    qtbot.waitUntil(lambda: "New password set" in panel.account_message.text(), timeout=5000)
    assert on_engine(engine_thread, running.directory.authenticate, "alice@example.test",
                     "a new long password") is not None

    panel.account_view.selectRow(0)
    assert panel.enable_button.text() == "Disable"
    click(qtbot, panel.enable_button)
    qtbot.waitUntil(lambda: rows(panel.accounts)[0][1] == "disabled", timeout=5000)

    panel.account_view.selectRow(0)
    click(qtbot, panel.remove_account_button)
    panel.confirm_yes.click()
    qtbot.waitUntil(lambda: rows(panel.accounts) == [], timeout=5000)


def test_cli_changes_appear_without_a_click(qtbot: Any, bridge: EngineBridge, running: Engine,
                                            engine_thread: EngineThread) -> None:
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.loaded, timeout=5000)
    on_engine(engine_thread, running.directory.add_domain, "third.test")
    qtbot.waitUntil(lambda: "third.test" in panel.domains.stringList(), timeout=5000)


def test_a_host_name_that_is_not_fully_qualified_is_pointed_out_beside_the_records(
        qtbot: Any, bridge: EngineBridge, running: Engine) -> None:
    # what a machine whose name resolves to nothing better gets by default (engine/config.py)
    running.config = dataclasses.replace(running.config, hostname="mailbox")
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.domain == "example.test", timeout=5000)
    panel.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: panel.records.rowCount() > 0, timeout=10000)
    assert rows(panel.records)[0][:3] == ["MX", "example.test", "10 mailbox."]
    text = panel.dns_message.text()
    assert "'mailbox', which is not a fully qualified name" in text and "Settings" in text


def test_dns_records_are_checked_live(qtbot: Any, bridge: EngineBridge, running: Engine,
                                      qtmodeltester: Any) -> None:
    panel = DomainsPanel(bridge)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.domain == "example.test", timeout=5000)
    panel.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: panel.records.rowCount() > 0, timeout=10000)
    table = {(r[0], r[1]): r for r in rows(panel.records)}
    assert table[("MX", "example.test")][3] == "present"
    assert table[("TXT", "example.test")][2] == "v=spf1 mx -all"
    assert table[("TXT", "example.test")][3] == "present"
    dmarc = table[("TXT", "_dmarc.example.test")]
    assert dmarc[2] == "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"
    assert dmarc[3] == "different" and "p=none" in dmarc[4]
    assert table[("CNAME", "autoconfig.example.test")][3] == "missing"
    qtmodeltester.check(panel.records)

    row = [r[1] for r in rows(panel.records)].index("_dmarc.example.test")
    panel.record_view.selectRow(row)
    click(qtbot, panel.copy_button)
    assert QGuiApplication.clipboard().text() == dmarc[2]
