"""DKIM keys on disk (0600, date-named selectors, rotation and pruning), `postroom dkim`, `postroom
dns-records` and the DNS-records API the desktop panel uses, checked against a real DNS server."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.auth import Directory
from engine.cli import main
from engine.config import Config, DeliverySettings, DNSSettings, ListenAddress
from engine.dns_records import DIFFERENT, ERROR, MISSING, PRESENT, dns_records
from engine.mailauth.keys import DKIMKeyError, KeyStore
from engine.mailauth.records import spf_value

from .conftest import FAST_HASH, DNSZone

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def test_new_keys_are_an_ed25519_and_rsa_pair_named_by_date_and_private(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    made = store.new("Home.Test", now=NOW)
    assert [(s.selector, s.algorithm) for s in made] == [("pr20261127e", "ed25519"), ("pr20261127r", "rsa")]
    folder = tmp_path / "dkim" / "home.test"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert [k.selector.algorithm for k in store.signing_keys("home.test")] == ["ed25519", "rsa"]
    assert made[1].dns_value.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")       # 2048-bit SubjectPublicKeyInfo
    with pytest.raises(DKIMKeyError, match="rotate"):
        store.new("home.test")


def test_rotation_retires_the_old_pair_until_its_retention_ends(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    old = store.new("home.test", now=NOW)
    new = store.rotate("home.test", retention=86400.0, now=NOW + 60)
    assert [s.selector for s in new] == ["pr20261127-2e", "pr20261127-2r"]    # same day: a second generation
    assert {k.selector.selector for k in store.signing_keys("home.test")} == {s.selector for s in new}
    assert not (tmp_path / "dkim" / "home.test" / f"{old[0].selector}.key").exists()  # retired: no secret kept
    assert len(store.published("home.test", now=NOW + 3600)) == 4
    assert store.prune("home.test", now=NOW + 3600) == []
    assert [s.selector for s in store.prune("home.test", now=NOW + 2 * 86400)] == [s.selector for s in old]
    assert len(store.selectors("home.test")) == 2


def test_a_domain_name_cannot_escape_the_key_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        KeyStore(tmp_path).new("../../etc")


@pytest.fixture
def data_dir(tmp_path: Path, zone: DNSZone) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    directory = Directory(data / "state.sqlite", hasher=FAST_HASH)
    directory.add_domain("home.test")
    directory.close()
    (data / "postroom.toml").write_text(
        f'hostname = "mx.home.test"\n[dns]\nnameservers = ["127.0.0.1:{zone.port}"]\ntimeout = "1s"\n')
    return data


def test_cli_dkim_new_shows_the_records_and_list_shows_the_selectors(data_dir: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "dkim", "new", "home.test"]) == 0
    out = capsys.readouterr().out
    assert "._domainkey.home.test.  TXT  \"v=DKIM1; k=ed25519; p=" in out
    assert main(["--data-dir", str(data_dir), "dkim", "new", "elsewhere.test"]) == 1
    assert "not a local domain" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir), "dkim", "rotate", "home.test"]) == 0
    assert "published until" in capsys.readouterr().out
    assert main(["--data-dir", str(data_dir), "dkim", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["state"] for r in rows) == ["active", "active", "retired", "retired"]


def test_dns_records_lists_and_checks_spf_dkim_and_dmarc(data_dir: Path, zone: DNSZone,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    store = KeyStore(data_dir)
    store.new("home.test")
    zone.publish_keys(store, "home.test")
    zone.txt("home.test", "v=spf1 mx -all")
    zone.txt("_dmarc.home.test", "v=DMARC1; p=reject")             # not what we recommend
    zone.mx("home.test", "mx.home.test")

    assert main(["--data-dir", str(data_dir), "dns-records", "home.test", "--format", "json"]) == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows[("TXT", "home.test")]["status"] == PRESENT
    assert rows[("TXT", "_dmarc.home.test")]["status"] == DIFFERENT
    assert rows[("TXT", "_dmarc.home.test")]["value"] == "v=DMARC1; p=quarantine; rua=mailto:postmaster@home.test"
    assert rows[("TXT", "_dmarc.home.test")]["found"] == "v=DMARC1; p=reject"
    dkim_rows = [r for (kind, name), r in rows.items() if "._domainkey." in name]
    assert len(dkim_rows) == 2 and {r["status"] for r in dkim_rows} == {PRESENT}
    assert rows[("MX", "home.test")]["status"] == PRESENT

    assert main(["--data-dir", str(data_dir), "dns-records", "home.test", "--check"]) == 2
    assert "DIFFERENT" in capsys.readouterr().out


def test_dns_records_say_when_the_servers_own_name_is_not_fully_qualified(
        data_dir: Path, zone: DNSZone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "dns-records", "home.test"]) == 0
    assert "not a fully qualified name" not in capsys.readouterr().out
    config = (data_dir / "postroom.toml").read_text().replace('"mx.home.test"', '"mailbox"')
    (data_dir / "postroom.toml").write_text(config)
    assert main(["--data-dir", str(data_dir), "dns-records", "home.test"]) == 0
    out = capsys.readouterr().out
    assert "10 mailbox." in out
    assert "hostname 'mailbox' is not a fully qualified name" in out and 'hostname = "mail.home.test"' in out


def test_retired_selectors_stay_listed_until_their_time_is_over(data_dir: Path) -> None:
    # Nothing answers on port 9: every lookup fails, which is shown as such, never as present.
    config = Config(data_dir=data_dir, hostname="mx.home.test",
                    dns=DNSSettings(nameservers=(("127.0.0.1", 9),), timeout=0.2))
    store = KeyStore(data_dir)
    store.new("home.test")
    store.rotate("home.test", retention=3600.0)
    records = asyncio.run(dns_records(config, "home.test"))
    dkim = [r for r in records if "._domainkey." in r.name]
    assert len(dkim) == 4 and {r.status for r in dkim} <= {MISSING, ERROR}
    later = store.published("home.test", now=time.time() + 7200)
    assert [s.state for s in later] == ["active", "active"]


def test_spf_names_the_smarthost_when_mail_leaves_through_one(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    assert spf_value(config) == "v=spf1 mx -all"
    via = replace(config, delivery=DeliverySettings(smarthost=ListenAddress("smtp.eu.mailer.test", 587)))
    assert spf_value(via) == "v=spf1 mx include:mailer.test -all"
    by_ip = replace(config, delivery=DeliverySettings(smarthost=ListenAddress("192.0.2.25", 25)))
    assert spf_value(by_ip) == "v=spf1 mx ip4:192.0.2.25 -all"
