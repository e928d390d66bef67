"""Installing for one user from source: `postroom --install-desktop-entry`, and the licence list.

Fast: nothing here builds a package; each test writes into its own temporary XDG data directory.
"""

from __future__ import annotations

import configparser
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest

from desktop import install
from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_install_writes_the_menu_entry_and_every_icon_size_into_the_xdg_data_home(tmp_path: Path) -> None:
    written = install.install_desktop_entry(tmp_path, ["/opt/My Apps/postroom"])

    entry_path = tmp_path / "applications" / f"{install.APP_ID}.desktop"
    assert written[0] == entry_path
    entry = read_entry(entry_path)
    assert entry["Exec"] == '"/opt/My Apps/postroom"'
    assert entry["Icon"] == install.ICON_NAME
    assert entry["Categories"] == "Network;Email;"
    hicolor = tmp_path / "icons" / "hicolor"
    assert (hicolor / "scalable/apps" / f"{install.ICON_NAME}.svg").read_text() == install.ICON_SVG
    for size in install.ICON_SIZES:
        assert png_size(hicolor / f"{size}x{size}/apps/{install.ICON_NAME}.png") == (size, size)
    assert len(written) == 2 + len(install.ICON_SIZES)
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry_path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_installing_twice_replaces_the_files_and_leaves_no_temporary_ones(tmp_path: Path) -> None:
    install.install_desktop_entry(tmp_path, ["/usr/bin/postroom"])
    install.install_desktop_entry(tmp_path, ["/usr/local/bin/postroom"])

    assert read_entry(tmp_path / "applications" / f"{install.APP_ID}.desktop")["Exec"] == "/usr/local/bin/postroom"
    assert not list(tmp_path.rglob(".*.tmp"))


def test_exec_arguments_are_quoted_and_escaped_as_the_desktop_entry_spec_says() -> None:
    text = install.desktop_entry(["/home/ann/my bin/postroom", "--data-dir", "/srv/mail$1", "100%"])
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    # Reserved characters force double quotes; inside them $ takes a backslash, which the string escaping
    # doubles; a literal % is written %%.
    assert exec_line == r'Exec="/home/ann/my bin/postroom" --data-dir "/srv/mail\\$1" 100%%'


def test_an_unwritable_data_home_is_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(install.InstallError, match="cannot write to"):
        install.install_desktop_entry(blocker, ["/usr/bin/postroom"])


def test_cli_flag_installs_for_the_current_user_with_the_absolute_program_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))

    assert main(["--install-desktop-entry"]) == 0

    entry = read_entry(tmp_path / "applications" / f"{install.APP_ID}.desktop")
    program = entry["Exec"].split()[0].strip('"')
    assert Path(program).is_absolute()  # a desktop session's PATH may lack ~/.local/bin
    assert "application menu" in capsys.readouterr().out


def test_relative_xdg_data_home_is_ignored_as_the_base_directory_spec_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert install.xdg_data_home() == Path.home() / ".local" / "share"


def test_bundled_licences_name_postroom_python_qt_and_the_runtime_dependencies_only() -> None:
    rows = install.bundled_licences()
    by_name = {name.lower(): (version, licence) for name, version, licence in rows}

    with open(ROOT / "pyproject.toml", "rb") as f:
        assert rows[0][:2] == ("postroom", tomllib.load(f)["project"]["version"])
    assert rows[1][0] == "Python" and rows[2][0] == "Qt"
    for dependency in ("pyside6", "aiosmtpd", "keyring", "cryptography", "argon2-cffi", "qasync"):
        version, licence = by_name[dependency]
        assert version and licence and licence != "unknown", dependency
    for test_only in ("pytest", "hypothesis", "mypy", "ruff"):  # extras are not shipped
        assert test_only not in by_name


def test_licences_command_prints_one_component_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["licences"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["postroom", install.bundled_licences()[0][1]]
    assert len(lines) == len(install.bundled_licences())
