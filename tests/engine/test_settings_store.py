"""SettingsStore: a few keys of postroom.toml change, everything a person wrote stays, and a value the
engine would refuse is refused before anything is written."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from engine.config import CONFIG_NAME, ConfigError, ListenAddress, load_config
from engine.settings_store import SettingsStore, apply_changes, config_values, listen_changes

HAND_WRITTEN = textwrap.dedent("""\
    # My mail server.  Do not touch without asking Kim.
    hostname = "mx.example.test"   # the name in our MX record

    [listen]
    # only loopback while testing
    smtp = "127.0.0.1:2525"
    imap = ""

    [limits]
    recipients = 20      # mailing lists go through the list server
    message_size = "10MiB"
    """)


def write(data_dir: Path, text: str) -> Path:
    path = data_dir / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name != CONFIG_NAME)


def test_changing_keys_keeps_every_comment_and_untouched_key(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    config = SettingsStore(tmp_path).save({"limits.recipients": 50, "hostname": "mx.new.test"})
    text = path.read_text()
    for line in HAND_WRITTEN.splitlines():
        if "#" in line:
            assert line[line.index("#"):] in text, line
    assert 'smtp = "127.0.0.1:2525"' in text and 'message_size = "10MiB"' in text
    assert text.index("[listen]") < text.index("[limits]"), "tables keep their order"
    assert config.limits.recipients == 50 and config.hostname == "mx.new.test"
    reloaded = load_config(tmp_path)
    assert reloaded == config
    assert reloaded.listen["smtp"] == ListenAddress("127.0.0.1", 2525)
    assert reloaded.limits.message_size == 10 * 1024 * 1024


def test_a_missing_table_is_added_and_none_removes_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    store = SettingsStore(tmp_path)
    store.save({"delivery.smarthost": "relay.example.test:587", "delivery.smarthost_tls": "starttls"})
    assert "[delivery]" in path.read_text()
    assert load_config(tmp_path).delivery.smarthost == ListenAddress("relay.example.test", 587)

    config = store.save({"limits.recipients": None, "tls.cert": None})      # tls table absent: no-op
    assert config.limits.recipients == 100, "a removed key takes its default again"
    assert "recipients" not in path.read_text()
    assert "[tls]" not in path.read_text()


def test_an_invalid_value_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    before = path.stat()
    store = SettingsStore(tmp_path)
    for changes, words in (({"limits.recipients": 0}, "limits.recipients: expected a whole number"),
                           ({"listen.smtp": "nowhere"}, "listen.smtp"),
                           ({"delivery.smarthost_tls": "maybe"}, "expected one of required, starttls, implicit"),
                           ({"limits.bogus": 1}, "limits.bogus: unknown setting"),
                           ({"hostname": "not a host name"}, "hostname")):
        with pytest.raises(ConfigError) as caught:
            store.save(changes)
        message = str(caught.value)
        assert words in message, message
        assert "\n" not in message, "one line a person can act on"
        assert message.startswith(CONFIG_NAME), message
    assert path.read_text() == HAND_WRITTEN
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert leftovers(tmp_path) == []


def test_the_error_names_the_line_of_the_bad_key(tmp_path: Path) -> None:
    write(tmp_path, HAND_WRITTEN)
    with pytest.raises(ConfigError, match=rf"^{CONFIG_NAME}:10: limits\.recipients: "):
        SettingsStore(tmp_path).save({"limits.recipients": -3})


def test_a_file_that_is_not_toml_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "hostname = \n[[[")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        SettingsStore(tmp_path).save({"hostname": "mx.example.test"})
    assert "\n" not in str(caught.value)
    assert path.read_text() == "hostname = \n[[["


def test_the_file_is_replaced_by_one_rename_keeping_its_mode(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    path.chmod(0o640)
    old_inode = path.stat().st_ino
    with path.open(encoding="utf-8") as reader:           # someone reading the old file meanwhile
        SettingsStore(tmp_path).save({"limits.recipients": 7})
        assert reader.read() == HAND_WRITTEN, "a reader sees the whole old file, never half a new one"
    assert path.stat().st_ino != old_inode, "a new file renamed into place, not rewritten in place"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, HAND_WRITTEN)

    def full_disk(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.settings_store.os.replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        SettingsStore(tmp_path).save({"limits.recipients": 7})
    assert path.read_text() == HAND_WRITTEN
    assert leftovers(tmp_path) == []


def test_a_first_save_creates_a_private_commented_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    SettingsStore(data_dir).save({"hostname": "mx.example.test", "listen.smtp": "127.0.0.1:2525"})
    path = data_dir / CONFIG_NAME
    assert path.read_text().startswith("# Postroom settings.")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(data_dir).listen["smtp"] == ListenAddress("127.0.0.1", 2525)


def test_preview_validates_without_writing(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    text, config = SettingsStore(tmp_path).preview({"limits.recipients": 42})
    assert "recipients = 42" in text and "# mailing lists go through the list server" in text
    assert config.limits.recipients == 42
    assert path.read_text() == HAND_WRITTEN


def test_every_setting_shown_can_be_written_back_unchanged(tmp_path: Path) -> None:
    write(tmp_path, HAND_WRITTEN + '\n[dns]\nnameservers = ["127.0.0.1:5353", "[::1]:53"]\ntimeout = "3s"\n')
    config = load_config(tmp_path)
    assert SettingsStore(tmp_path).save(config_values(config)) == config
    assert load_config(tmp_path) == config


def test_apply_changes_is_a_pure_function_of_text() -> None:
    assert apply_changes('a = 1\n', {}) == 'a = 1\n'
    assert 'hostname = "x.test"' in apply_changes("", {"hostname": "x.test"})


def test_listen_changes_knows_only_the_standard_services() -> None:
    assert listen_changes({"smtp": "127.0.0.1:25", "imap": ""}) == {"listen.smtp": "127.0.0.1:25",
                                                                    "listen.imap": ""}
    with pytest.raises(ConfigError, match=r"unknown service.*gopher"):
        listen_changes({"gopher": "127.0.0.1:70"})
