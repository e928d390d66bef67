"""The admin command line: every command works on a data dir, errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

COMMANDS = [[], ["serve"], ["domain"], ["domain", "add"], ["account"], ["account", "add"], ["account", "passwd"],
            ["alias"], ["alias", "add"]]


def run(data: Path, *args: str, stdin: str = "", capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["--data-dir", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def call(*args: str, stdin: str = "") -> tuple[int, str, str]:
        return run(tmp_path, *args, stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)

    return call


def test_domains_accounts_and_aliases_round_trip(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("domain", "add", "Example.TEST")[0] == 0
    assert cli("domain", "list")[1].split() == ["example.test"]
    code, out, _ = cli("account", "add", "alice@example.test", "--password-stdin", stdin="pw one\n")
    assert code == 0 and "alice@example.test" in out
    maildir = tmp_path / "mail" / "example.test" / "alice"
    assert (maildir / "new").is_dir() and (maildir / ".Sent" / "cur").is_dir()
    code, out, _ = cli("account", "list", "--format", "json")
    assert json.loads(out) == [{"address": "alice@example.test", "enabled": True, "quota": None}]
    assert cli("account", "passwd", "alice@example.test", "--password-stdin", stdin="pw two\n")[0] == 0
    assert cli("alias", "add", "sales@example.test", "alice@example.test")[0] == 0
    assert cli("alias", "list")[1].strip() == "sales@example.test -> alice@example.test"
    assert cli("alias", "remove", "sales@example.test")[0] == 0
    assert cli("account", "disable", "alice@example.test")[0] == 0
    assert "(disabled)" in cli("account", "list")[1]
    assert cli("account", "remove", "alice@example.test")[0] == 0
    assert maildir.is_dir(), "mail stays on disk unless --delete-mail"
    assert cli("domain", "remove", "example.test")[0] == 0


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (("account", "add", "bob@nowhere.test", "--password-stdin"), "pw\n", "nowhere.test"),
        (("account", "add", "bob@example.test", "--password-stdin"), "\n", "empty"),
        (("domain", "add", "not a domain"), "", "not a domain"),
        (("alias", "remove", "ghost@example.test"), "", "ghost@example.test"),
        (("serve", "--listen", "smtp"), "", "SERVICE=HOST:PORT"),
        (("serve", "--listen", "ftp=127.0.0.1:21"), "", "SERVICE=HOST:PORT"),
    ],
)
def test_errors_are_one_line_and_exit_1(cli, args: tuple[str, ...], stdin: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    cli("domain", "add", "example.test")
    code, _, err = cli(*args, stdin=stdin)
    assert code == 1
    assert err.startswith("postroom: error: ") and err.count("\n") == 1
    assert needle in err


def test_a_password_is_never_read_from_a_non_terminal_without_the_flag(cli) -> None:  # type: ignore[no-untyped-def]
    cli("domain", "add", "example.test")
    code, _, err = cli("account", "add", "bob@example.test", stdin="pw\n")
    assert code == 1 and "--password-stdin" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("account", "add", "bob@nowhere.test"), "no domain nowhere.test"),
        (("account", "add", "alice@example.test"), "account alice@example.test already exists"),
        (("account", "add", "info@example.test"), "info@example.test is already an alias"),
        (("account", "add", "bob"), "not an address"),
        (("account", "passwd", "ghost@example.test"), "no account ghost@example.test"),
    ],
)
def test_what_stands_in_the_way_is_said_before_any_password_is_asked_for(  # type: ignore[no-untyped-def]
        cli, args: tuple[str, ...], needle: str) -> None:
    # No --password-stdin and no terminal: reaching the prompt would fail with "no terminal" instead.
    cli("domain", "add", "example.test")
    cli("account", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    cli("alias", "add", "info@example.test", "alice@example.test")
    code, _, err = cli(*args)
    assert code == 1 and needle in err and "terminal" not in err


@pytest.mark.parametrize("args", COMMANDS)
def test_every_command_has_help(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: postroom")


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("postroom ")


def test_the_window_without_a_display_is_a_clear_error_not_a_qt_abort(  # type: ignore[no-untyped-def]
        cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")       # Windows and macOS always give Qt a display
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = cli()
    assert code == 1 and "no display" in err and "postroom serve" in err
