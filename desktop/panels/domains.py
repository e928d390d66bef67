"""Domains and accounts: local domains, their accounts (password, quota, enabled), aliases and catch-all,
and the DNS records each domain should publish, checked live.

Every change is one engine call through the bridge; the engine's own validation message (DirectoryError)
is shown in place under the form that caused it.  The lists reload on DirectoryChanged, so changes made
with the CLI appear here too.
"""

from __future__ import annotations

import functools
from typing import Any

from PySide6.QtCore import QStringListModel, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.models.simple import RowsModel
from desktop.widgets.common import Debouncer, MessageLine, format_size
from engine.config import parse_size
from engine.runtime import Engine


def add_account(engine: Engine, address: str, password: str, quota: int | None) -> str:
    """Directory entry and mailbox together, as the CLI does (blocking: runs in a worker thread)."""
    account = engine.directory.add_account(address, password, quota=quota)
    engine.store.create_account(account.address)
    return str(account.address)


def remove_account(engine: Engine, address: str) -> None:
    """Removes the login; the mail files stay on disk (as `postroom account remove` without --delete-mail)."""
    account = engine.directory.get_account(address)
    engine.directory.remove_account(address)
    if account is not None:
        engine.store.remove_account(account.address, delete_files=False)


def domain_contents(engine: Engine, domain: str) -> tuple[list[Any], list[Any]]:
    """(accounts, aliases) of one domain."""
    accounts = engine.directory.list_accounts(domain)
    aliases = [a for a in engine.directory.list_aliases() if a.source.rpartition("@")[2] == domain]
    return accounts, aliases


def _table(model: RowsModel, name: str) -> QTableView:
    view = QTableView()
    view.setObjectName(name)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.verticalHeader().hide()
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.setAlternatingRowColors(True)
    return view


class DomainsPanel(QWidget):
    title = "Domains & accounts"

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.confirm_box: QMessageBox | None = None
        self.loaded = False

        # --- domains (left)
        self.domains = QStringListModel(self)
        self.domain_view = QListView()
        self.domain_view.setObjectName("domains")
        self.domain_view.setModel(self.domains)
        self.domain_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.domain_view.selectionModel().currentChanged.connect(lambda *_: self._domain_chosen())
        self.new_domain = QLineEdit()
        self.new_domain.setObjectName("new_domain")
        self.new_domain.setPlaceholderText("example.org")
        self.new_domain.returnPressed.connect(self.add_domain)
        self.add_domain_button = QPushButton("Add domain")
        self.add_domain_button.clicked.connect(self.add_domain)
        self.remove_domain_button = QPushButton("Remove domain…")
        self.remove_domain_button.clicked.connect(self.remove_domain)
        self.domain_message = MessageLine()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(QLabel("Domains"))
        left_layout.addWidget(self.domain_view, 1)
        row = QHBoxLayout()
        row.addWidget(self.new_domain, 1)
        row.addWidget(self.add_domain_button)
        left_layout.addLayout(row)
        left_layout.addWidget(self.remove_domain_button)
        left_layout.addWidget(self.domain_message)

        # --- accounts
        self.accounts = RowsModel(("Address", "State", "Quota"), status_column=1, parent=self)
        self.account_view = _table(self.accounts, "accounts")
        self.account_local = QLineEdit()
        self.account_local.setObjectName("account_local")
        self.account_local.setPlaceholderText("name")
        self.account_domain = QLabel("@")
        self.account_password = QLineEdit()
        self.account_password.setObjectName("account_password")
        self.account_password.setPlaceholderText("password")
        self.account_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.account_quota = QLineEdit()
        self.account_quota.setObjectName("account_quota")
        self.account_quota.setPlaceholderText("quota, e.g. 2GiB (empty: none)")
        self.add_account_button = QPushButton("Add account")
        self.add_account_button.clicked.connect(self.add_account)
        self.password_button = QPushButton("Set password")
        self.password_button.setToolTip("Give the selected account the password typed above")
        self.password_button.clicked.connect(self.reset_password)
        self.quota_button = QPushButton("Set quota")
        self.quota_button.clicked.connect(self.set_quota)
        self.enable_button = QPushButton("Disable")
        self.enable_button.clicked.connect(self.toggle_enabled)
        self.remove_account_button = QPushButton("Remove…")
        self.remove_account_button.clicked.connect(self.remove_account)
        self.account_message = MessageLine()
        accounts_tab = QWidget()
        a_layout = QVBoxLayout(accounts_tab)
        a_layout.addWidget(self.account_view, 1)
        form = QHBoxLayout()
        form.addWidget(self.account_local, 1)
        form.addWidget(self.account_domain)
        form.addWidget(self.account_password, 1)
        form.addWidget(self.account_quota, 1)
        form.addWidget(self.add_account_button)
        a_layout.addLayout(form)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Selected account:"))
        for button in (self.password_button, self.quota_button, self.enable_button, self.remove_account_button):
            actions.addWidget(button)
        actions.addStretch(1)
        a_layout.addLayout(actions)
        a_layout.addWidget(self.account_message)
        self.account_view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        # --- aliases
        self.aliases = RowsModel(("Alias", "Delivers to"), parent=self)
        self.alias_view = _table(self.aliases, "aliases")
        self.alias_local = QLineEdit()
        self.alias_local.setObjectName("alias_local")
        self.alias_local.setPlaceholderText("name (empty: catch-all for the whole domain)")
        self.alias_domain = QLabel("@")
        self.alias_targets = QLineEdit()
        self.alias_targets.setObjectName("alias_targets")
        self.alias_targets.setPlaceholderText("deliver to: one or more addresses, comma-separated")
        self.add_alias_button = QPushButton("Add alias")
        self.add_alias_button.clicked.connect(self.add_alias)
        self.remove_alias_button = QPushButton("Remove alias")
        self.remove_alias_button.clicked.connect(self.remove_alias)
        self.alias_message = MessageLine()
        aliases_tab = QWidget()
        l_layout = QVBoxLayout(aliases_tab)
        l_layout.addWidget(self.alias_view, 1)
        form = QHBoxLayout()
        form.addWidget(self.alias_local, 1)
        form.addWidget(self.alias_domain)
        form.addWidget(self.alias_targets, 2)
        form.addWidget(self.add_alias_button)
        form.addWidget(self.remove_alias_button)
        l_layout.addLayout(form)
        l_layout.addWidget(self.alias_message)

        # --- DNS records
        self.records = RowsModel(("Type", "Name", "Publish this value", "In DNS now", "Found"), status_column=3,
                                 parent=self)
        self.record_view = _table(self.records, "dns_records")
        self.record_view.horizontalHeader().resizeSection(0, 60)
        self.record_view.horizontalHeader().resizeSection(1, 200)
        self.record_view.horizontalHeader().resizeSection(2, 320)
        self.record_view.horizontalHeader().resizeSection(3, 90)
        self.check_button = QPushButton("Check DNS now")
        self.check_button.clicked.connect(self.check_dns)
        self.copy_button = QPushButton("Copy value")
        self.copy_button.setToolTip("Copy the selected record's value (Ctrl+C)")
        self.copy_button.clicked.connect(self.copy_record)
        self.copy_all_button = QPushButton("Copy all as zone lines")
        self.copy_all_button.clicked.connect(self.copy_all_records)
        QShortcut(QKeySequence.StandardKey.Copy, self.record_view, self.copy_record)
        self.dns_message = MessageLine()
        dns_tab = QWidget()
        d_layout = QVBoxLayout(dns_tab)
        d_layout.addWidget(QLabel("Publish these records at your DNS provider. The check asks DNS live."))
        d_layout.addWidget(self.record_view, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.copy_all_button)
        buttons.addStretch(1)
        d_layout.addLayout(buttons)
        d_layout.addWidget(self.dns_message)
        self.record_list: list[Any] = []
        self._records_domain: str | None = None
        self._pending_select: str | None = None

        self.tabs = QTabWidget()
        self.tabs.addTab(accounts_tab, "Accounts")
        self.tabs.addTab(aliases_tab, "Aliases")
        self.tabs.addTab(dns_tab, "DNS records")
        self.tabs.currentChanged.connect(lambda _i: self._maybe_check_dns())

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        QShortcut(QKeySequence("Ctrl+N"), self, self.new_domain.setFocus)
        self._reload_soon = Debouncer(self.refresh, 200, self)
        bridge.directoryChanged.connect(self._reload_soon.trigger)
        self._update_buttons()
        self.refresh()

    # --- state -------------------------------------------------------------------------------------

    @property
    def domain(self) -> str | None:
        index = self.domain_view.currentIndex()
        return str(index.data()) if index.isValid() else None

    def _directory(self) -> Any:
        return self.bridge.engine.directory

    def _call(self, func: Any, *args: Any, message: MessageLine, done: str = "",
              then: Any = None) -> None:
        message.clear_message()

        def ok(result: Any) -> None:
            if done:
                message.show_info(done.replace("{result}", str(result)))
            if then is not None:
                then(result)
            self.refresh()

        self.bridge.call(func, *args, on_result=ok, on_error=message.show_error, owner=self)

    def refresh(self) -> None:
        def listed(names: list[str]) -> None:
            current = self._pending_select or self.domain
            self._pending_select = None
            self.domains.setStringList(names)
            self.loaded = True
            if names:
                row = names.index(current) if current in names else 0
                self.domain_view.setCurrentIndex(self.domains.index(row))
            self._domain_chosen()

        def opened(_r: Any) -> None:
            self.bridge.call(self._directory().list_domains, on_result=listed,
                             on_error=self.domain_message.show_error, owner=self)

        if self._directory() is None:
            self.bridge.call(self.bridge.engine.open, on_result=opened, on_error=self.domain_message.show_error,
                             owner=self)
        else:
            opened(None)

    def _domain_chosen(self) -> None:
        domain = self.domain
        self.account_domain.setText(f"@{domain}" if domain else "@")
        self.alias_domain.setText(f"@{domain}" if domain else "@")
        self._update_buttons()
        if domain is None:
            self.accounts.set_rows([])
            self.aliases.set_rows([])
            self.records.set_rows([])
            return
        self.bridge.call(functools.partial(domain_contents, self.bridge.engine, domain),
                         on_result=lambda r: self._show_contents(domain, *r),
                         on_error=self.account_message.show_error, owner=self)
        if self._records_domain != domain:
            self.records.set_rows([])
            self.record_list = []
        self._maybe_check_dns()

    def _show_contents(self, domain: str, accounts: list[Any], aliases: list[Any]) -> None:
        if domain != self.domain:
            return
        self.accounts.set_rows(
            [(a.address, "enabled" if a.enabled else "disabled", format_size(a.quota) if a.quota else "none")
             for a in accounts], keys=accounts)
        self.aliases.set_rows([(a.source if not a.source.startswith("@") else f"{a.source} (catch-all)",
                                ", ".join(a.targets)) for a in aliases], keys=aliases)
        self._update_buttons()

    def _selected_account(self) -> Any:
        rows = self.account_view.selectionModel().selectedRows()
        return self.accounts.key(rows[0].row()) if rows else None

    def _update_buttons(self) -> None:
        has_domain = self.domain is not None
        account = self._selected_account()
        self.remove_domain_button.setEnabled(has_domain)
        for button in (self.add_account_button, self.add_alias_button, self.check_button):
            button.setEnabled(has_domain)
        for button in (self.password_button, self.quota_button, self.enable_button, self.remove_account_button):
            button.setEnabled(account is not None)
        self.enable_button.setText("Enable" if account is not None and not account.enabled else "Disable")

    # --- domains -----------------------------------------------------------------------------------

    def add_domain(self) -> None:
        name = self.new_domain.text().strip()
        if not name:
            self.domain_message.show_error("Type the domain name first, e.g. example.org.")
            return

        def added(stored: str) -> None:
            self.new_domain.clear()
            self._pending_select = stored

        self._call(self._directory().add_domain, name, message=self.domain_message,
                   done="Added {result}. Publish its DNS records (see the DNS records tab).", then=added)

    def remove_domain(self) -> None:
        domain = self.domain
        if domain is None:
            return
        self._confirm(f"Remove {domain}?", "Its accounts and aliases go too. Mail files stay on disk.",
                      "Remove", lambda: self._call(functools.partial(self._directory().remove_domain, domain,
                                                                     force=True),
                                                   message=self.domain_message, done=f"Removed {domain}."))

    # --- accounts ----------------------------------------------------------------------------------

    def _quota(self, message: MessageLine) -> tuple[bool, int | None]:
        text = self.account_quota.text().strip()
        if not text or text.lower() == "none":
            return True, None
        try:
            return True, parse_size(text)
        except ValueError as exc:
            message.show_error(f"Quota: {exc}")
            return False, None

    def add_account(self) -> None:
        domain = self.domain
        if domain is None:
            return
        local = self.account_local.text().strip()
        if not local:
            self.account_message.show_error("Type the account name (the part before @).")
            return
        ok, quota = self._quota(self.account_message)
        if not ok:
            return

        def added(_address: str) -> None:
            self.account_local.clear()
            self.account_password.clear()
            self.account_quota.clear()

        self._call(add_account, self.bridge.engine, f"{local}@{domain}", self.account_password.text(), quota,
                   message=self.account_message, done="Created {result}.", then=added)

    def reset_password(self) -> None:
        account = self._selected_account()
        if account is None:
            return
        self._call(self._directory().set_password, account.address, self.account_password.text(),
                   message=self.account_message, done=f"New password set for {account.address}.",
                   then=lambda _r: self.account_password.clear())

    def set_quota(self) -> None:
        account = self._selected_account()
        if account is None:
            return
        ok, quota = self._quota(self.account_message)
        if ok:
            words = format_size(quota) if quota else "no limit"
            self._call(self._directory().set_quota, account.address, quota, message=self.account_message,
                       done=f"{account.address} now has {words}.")

    def toggle_enabled(self) -> None:
        account = self._selected_account()
        if account is None:
            return
        enable = not account.enabled
        self._call(self._directory().set_enabled, account.address, enable, message=self.account_message,
                   done=f"{account.address} is {'enabled' if enable else 'disabled: it receives no mail and cannot log in'}.")

    def remove_account(self) -> None:
        account = self._selected_account()
        if account is None:
            return
        self._confirm(f"Remove {account.address}?", "It can no longer log in or receive mail. Its mail "
                      "files stay on disk.", "Remove",
                      lambda: self._call(remove_account, self.bridge.engine, account.address,
                                         message=self.account_message, done=f"Removed {account.address}."))

    # --- aliases -----------------------------------------------------------------------------------

    def add_alias(self) -> None:
        domain = self.domain
        if domain is None:
            return
        source = f"{self.alias_local.text().strip()}@{domain}"
        targets = [t.strip() for t in self.alias_targets.text().replace(";", ",").split(",") if t.strip()]

        def added(_r: Any) -> None:
            self.alias_local.clear()
            self.alias_targets.clear()

        self._call(self._directory().add_alias, source, targets, message=self.alias_message,
                   done=f"{source} now delivers to {', '.join(targets)}.", then=added)

    def remove_alias(self) -> None:
        rows = self.alias_view.selectionModel().selectedRows()
        if not rows:
            self.alias_message.show_error("Select the alias to remove.")
            return
        alias = self.aliases.key(rows[0].row())
        self._call(self._directory().remove_alias, alias.source, message=self.alias_message,
                   done=f"Removed {alias.source}.")

    # --- DNS ---------------------------------------------------------------------------------------

    def _maybe_check_dns(self) -> None:
        if self.tabs.currentIndex() == 2 and self.domain is not None:
            self.check_dns()

    def check_dns(self) -> None:
        from engine.dns_records import dns_records

        domain = self.domain
        if domain is None:
            return
        self.check_button.setEnabled(False)
        self.dns_message.show_info(f"Asking DNS about {domain}…")

        def shown(records: list[Any]) -> None:
            self.check_button.setEnabled(True)
            if domain != self.domain:
                return
            self.record_list = records
            self._records_domain = domain
            words = {"present": "present", "missing": "missing", "different": "different", "error": "unknown"}
            self.records.set_rows([(r.kind, r.name, r.value, words.get(r.status, r.status),
                                    r.found if r.status != "missing" else "") for r in records],
                                  keys=records, tips=[r.purpose for r in records])
            missing = sum(r.status != "present" for r in records)
            hostname = self.bridge.engine.config.hostname
            if "." not in hostname:
                # the MX and A rows name this host: they cannot be right until it has a full name
                self.dns_message.show_error(
                    f"This server calls itself {hostname!r}, which is not a fully qualified name: set the "
                    f"host name in Settings (for example mail.{domain}), then check again.")
                return
            self.dns_message.show_info("Everything is published." if not missing else
                                       f"{missing} of {len(records)} records are not as they should be yet.")

        def failed(text: str) -> None:
            self.check_button.setEnabled(True)
            self.dns_message.show_error(text)

        self.bridge.submit(dns_records(self.bridge.engine.config, domain), shown, failed, owner=self)

    def copy_record(self) -> None:
        rows = self.record_view.selectionModel().selectedRows()
        if rows:
            record = self.records.key(rows[0].row())
            QGuiApplication.clipboard().setText(record.value)
            self.dns_message.show_info(f"Copied the {record.kind} value for {record.name}.")

    def copy_all_records(self) -> None:
        lines = []
        for record in self.record_list:
            value = f'"{record.value}"' if record.kind == "TXT" else record.value
            lines.append(f"{record.name}.\t3600\tIN\t{record.kind}\t{value}")
        QGuiApplication.clipboard().setText("\n".join(lines) + "\n")
        self.dns_message.show_info(f"Copied {len(lines)} records in zone-file form.")

    # --- confirmation ------------------------------------------------------------------------------

    def _confirm(self, question: str, detail: str, verb: str, then: Any) -> None:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(verb)
        box.setText(question)
        box.setInformativeText(detail)
        yes = box.addButton(verb, QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        self.confirm_box = box
        self.confirm_yes = yes

        def answered(_result: int) -> None:
            chosen = box.clickedButton() is yes
            self.confirm_box = None
            box.deleteLater()
            if chosen:
                then()

        box.finished.connect(answered)
        box.open()
