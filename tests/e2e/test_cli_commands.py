"""The `postroom` command line finds every command however the global options are written, although it
imports only the package of the command named (a start-up cost paid on every admin command)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import POSTROOM


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*POSTROOM, *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_commands_of_every_package() -> None:
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for command in ("serve", "domain", "account", "alias", "queue", "log", "dkim", "dns-records"):
        assert command in out.stdout, command


def test_a_command_is_found_after_either_spelling_of_the_data_dir_option(tmp_path: Path) -> None:
    for args in (("--data-dir", str(tmp_path), "queue", "list"), (f"--data-dir={tmp_path}", "log"),
                 ("--data-dir", str(tmp_path), "domain", "list")):
        out = run(*args)
        assert out.returncode == 0, (args, out.stderr)
    assert run("--data-dir", str(tmp_path), "queue", "list").stdout.strip() == "The queue is empty."


def test_an_unknown_command_is_one_usage_error(tmp_path: Path) -> None:
    out = run("--data-dir", str(tmp_path), "qeueu", "list")
    assert out.returncode == 2
    assert "invalid choice: 'qeueu'" in out.stderr and "Traceback" not in out.stderr
