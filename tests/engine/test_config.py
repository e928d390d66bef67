"""Settings: postroom.toml is validated whole, and every mistake names its key and line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import (
    ConfigError,
    ListenAddress,
    default_hostname,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    parse_listen,
    parse_size,
)


def test_a_missing_file_means_standard_ports_and_safe_limits(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.listen["smtp"] == ListenAddress("0.0.0.0", 25)
    assert config.listen["imaps"] == ListenAddress("0.0.0.0", 993)
    assert config.limits.message_size == 25 * 1024 * 1024
    assert config.limits.recipients == 100
    assert config.delivery.retry_schedule[0] == 300


def test_a_full_file_is_read(tmp_path: Path) -> None:
    text = """
hostname = "mx.example.test"
[listen]
smtp = "127.0.0.1:2525"
imap = ""
imaps = "[::1]:2993"
[limits]
message_size = "10MiB"
recipients = 5
[dns]
nameservers = ["127.0.0.1:5353", "::1"]
timeout = "2s"
[delivery]
retry_schedule = "2s,2s"
max_queue_lifetime = "5d"
remote_port = 2526
"""
    config = parse_config(text, tmp_path)
    assert config.hostname == "mx.example.test"
    assert config.listen["smtp"] == ListenAddress("127.0.0.1", 2525)
    assert config.listen["imap"] is None
    assert config.listen["imaps"] == ListenAddress("::1", 2993)
    assert config.listen["pop3"] == ListenAddress("0.0.0.0", 110)
    assert config.limits.message_size == 10 * 1024 * 1024
    assert config.dns.nameservers == (("127.0.0.1", 5353), ("::1", 53))
    assert config.delivery.retry_schedule == (2.0, 2.0)
    assert config.delivery.max_queue_lifetime == 5 * 86400
    assert config.delivery.remote_port == 2526


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('hostname = "a.test"\nbogus = 1\n', "postroom.toml:2: bogus: unknown setting"),
        ('[limits]\nrecipients = 5\nmesage_size = "1M"\n', "postroom.toml:3: limits.mesage_size: unknown setting"),
        ('[limits]\nrecipients = 0\n', "postroom.toml:2: limits.recipients: expected a whole number"),
        ('[delivery]\nmax_queue_lifetime = "5 days"\n', "postroom.toml:2: delivery.max_queue_lifetime:"),
        ('[listen]\nsmtp = "localhost"\n', "postroom.toml:2: listen.smtp:"),
        ('hostname = "bad host"\n', "postroom.toml:1: hostname:"),
        ("[limits\n", "postroom.toml: not valid TOML"),
        ('[tls]\ncert = "/x.pem"\n', "tls.key: set both"),
        ('hostname = "a.test"\n\n[lsiten]\nsmtp = ":2525"\n', "postroom.toml:3: lsiten: unknown setting"),
    ],
)
def test_mistakes_are_one_line_naming_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_load_reports_the_real_path(tmp_path: Path) -> None:
    (tmp_path / "postroom.toml").write_text("[limits]\nwhat = 1\n")
    with pytest.raises(ConfigError, match=r"postroom\.toml:2: limits\.what"):
        load_config(tmp_path)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("5d", 432000),
                                                ("250ms", 0.25), ("2w", 1209600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@given(st.integers(min_value=1, max_value=10**7))
def test_duration_spelling_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_sizes_and_listen_addresses() -> None:
    assert parse_size("25MiB") == 25 * 1024 * 1024
    assert parse_size(1000) == 1000
    assert parse_listen("") is None
    assert parse_listen(":2525") == ListenAddress("0.0.0.0", 2525)
    with pytest.raises(ValueError):
        parse_listen("127.0.0.1:99999")


def test_the_default_host_name_is_the_machines_name_not_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # /etc/hosts often maps the machine's own name to 127.0.0.1 localhost, so getfqdn() says "localhost".
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "localhost")
    monkeypatch.setattr(socket, "gethostname", lambda: "mailbox")
    assert default_hostname() == "mailbox"
    assert parse_config("", Path("/nonexistent")).hostname == "mailbox"
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "mailbox.office.example")
    assert default_hostname() == "mailbox.office.example"
