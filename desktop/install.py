"""Desktop integration for one user, and what the packages ship: menu entry, icon, bundled licences.

`postroom --install-desktop-entry` writes the menu entry and icons into the user's XDG data directory,
so `pipx install .` gives a complete desktop app without root.  The .deb build (packaging/build_deb.py)
uses the same entry text and the same icon, so both installs look alike.  The icon and the entry template
live in this module, not in loose files, so they survive being installed from a wheel.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

APP_ID = "org.postroom.Postroom"
"""Reverse-DNS id shared by the .desktop file name, the AppStream component and the icon name."""

ICON_NAME = APP_ID
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
"""hicolor sizes rendered from the SVG; 16-512 covers menus, docks and software centres."""

# The application icon, drawn for Postroom: a letter tray (the post room) holding an envelope, and a green
# "server running" light.  Plain SVG 1.1 so that QSvgRenderer (SVG Tiny) and librsvg both draw it.
ICON_SVG = """\
<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512" viewBox="0 0 512 512">
  <title>Postroom</title>
  <defs>
    <linearGradient id="tile" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#3d7bd9"/>
      <stop offset="1" stop-color="#1f4f9e"/>
    </linearGradient>
    <linearGradient id="paper" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#ffffff"/>
      <stop offset="1" stop-color="#e4ebf5"/>
    </linearGradient>
    <linearGradient id="tray" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#f2b84b"/>
      <stop offset="1" stop-color="#d98e1f"/>
    </linearGradient>
  </defs>
  <rect x="24" y="24" width="464" height="464" rx="96" ry="96" fill="url(#tile)"/>
  <rect x="104" y="118" width="304" height="212" rx="18" ry="18" fill="url(#paper)"/>
  <path d="M 112 132 L 256 244 L 400 132" fill="none" stroke="#9fb3d1" stroke-width="18"
        stroke-linecap="round" stroke-linejoin="round"/>
  <path d="M 72 288 L 160 288 L 184 330 L 328 330 L 352 288 L 440 288 L 440 392 Q 440 416 416 416
           L 96 416 Q 72 416 72 392 Z" fill="url(#tray)"/>
  <path d="M 72 288 L 160 288 L 184 330 L 328 330 L 352 288 L 440 288" fill="none" stroke="#b36f10"
        stroke-width="8" stroke-linejoin="round"/>
  <circle cx="408" cy="104" r="44" fill="#1f4f9e"/>
  <circle cx="408" cy="104" r="32" fill="#45c763"/>
</svg>
"""

# freedesktop.org Desktop Entry Specification; Version 1.4 because desktop-file-validate 0.26 (Debian 12)
# rejects 1.5, and nothing here needs 1.5. Email needs a main category (Network) beside it.
_DESKTOP_TEMPLATE = """\
[Desktop Entry]
Type=Application
Version=1.4
Name=Postroom
GenericName=Mail Server
Comment=Run your own mail server and watch it work: SMTP, IMAP and POP3
Keywords=mail;email;smtp;imap;pop3;server;maildir;
Exec={exec}
TryExec={try_exec}
Icon={icon}
Terminal=false
Categories=Network;Email;
StartupNotify=true
StartupWMClass=postroom
"""

# Desktop Entry Specification §"The Exec key": these characters force an argument into double quotes.
_EXEC_RESERVED = re.compile(r"""[\s"'\\><~|&;$*?#()`]""")


class InstallError(Exception):
    """Why the desktop entry could not be installed, in one line."""


def _exec_argument(arg: str) -> str:
    """Quotes one Exec argument per the Desktop Entry Specification (quoting, then string escaping)."""
    arg = arg.replace("%", "%%")
    if _EXEC_RESERVED.search(arg):
        arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
    # The whole value is also a "string" value, whose own escape for a backslash is \\.
    return arg.replace("\\", "\\\\")


def desktop_entry(command: list[str] | None = None) -> str:
    """The .desktop file text; `command` is the argv that starts the app (default: `postroom` on PATH)."""
    argv = command or ["postroom"]
    return _DESKTOP_TEMPLATE.format(exec=" ".join(_exec_argument(a) for a in argv),
                                    try_exec=_exec_argument(argv[0]), icon=ICON_NAME)


def render_icon_png(size: int) -> bytes:
    """The icon as a PNG of size x size pixels, drawn with Qt's SVG renderer (no QApplication needed)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(ICON_SVG.encode()))
    if not renderer.isValid():
        raise InstallError("the built-in icon is not valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # PySide6 6.12 accepts only str here at run time, though its stubs say bytes.
    image.save(buffer, "PNG")  # type: ignore[call-overload]
    buffer.close()
    return bytes(data.data())


def write_icons(hicolor: Path) -> list[Path]:
    """Writes the scalable SVG and every PNG size into a hicolor theme directory; returns the files."""
    written: list[Path] = []
    svg = hicolor / "scalable" / "apps" / f"{ICON_NAME}.svg"
    _write(svg, ICON_SVG.encode())
    written.append(svg)
    for size in ICON_SIZES:
        png = hicolor / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        _write(png, render_icon_png(size))
        written.append(png)
    return written


def _write(path: Path, data: bytes) -> None:
    """Writes through a temporary name so a menu never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def xdg_data_home() -> Path:
    """$XDG_DATA_HOME, or ~/.local/share when unset or not absolute (XDG Base Directory Specification)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".local" / "share"


def launch_command() -> list[str]:
    """How the menu should start this very installation, as an absolute argv.

    A pipx install puts `postroom` in ~/.local/bin, which a desktop session often lacks on its PATH; so the
    entry names the running program by absolute path rather than trusting PATH.
    """
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: the executable is the program
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "postroom" and script.is_file():
        return [str(script.resolve())]
    found = shutil.which("postroom")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "engine.cli"]


def install_desktop_entry(data_home: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Adds Postroom to the current user's application menu; returns every file written."""
    base = data_home or xdg_data_home()
    entry = base / "applications" / f"{APP_ID}.desktop"
    try:
        written = write_icons(base / "icons" / "hicolor")
        _write(entry, desktop_entry(command or launch_command()).encode())
    except OSError as exc:
        raise InstallError(f"cannot write to {base}: {exc.strerror or exc}") from None
    # Menus notice new entries by the directory's change time; touching hicolor makes icon caches
    # that some desktops keep for the user's theme look again.
    os.utime(base / "icons" / "hicolor")
    return [entry, *written]


def cmd_install_desktop_entry(args: argparse.Namespace) -> int:
    """`postroom --install-desktop-entry`: what it wrote, one path a line."""
    try:
        written = install_desktop_entry()
    except InstallError as exc:
        print(f"postroom: error: {exc}", file=sys.stderr)
        return 1
    print(f"Postroom is in your application menu ({written[0]}).")
    print(f"Icons: {written[1].parent.parent.parent} ({len(written) - 1} files).")
    print("To remove it: delete those files (find ~/.local/share -name "
          f"'{APP_ID}*').")
    return 0


# --- licences --------------------------------------------------------------------------------------

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _field(dist: metadata.Distribution, key: str) -> str:
    values = dist.metadata.get_all(key) or []
    return str(values[0]).strip() if values else ""


def _licence_of(dist: metadata.Distribution) -> str:
    """The shortest honest licence statement the metadata offers (SPDX expression first)."""
    expression = _field(dist, "License-Expression")
    if expression:
        return expression
    text = _field(dist, "License")
    if text and "\n" not in text and len(text) <= 80 and text.upper() != "UNKNOWN":
        return text
    classifiers = [c.split(" :: ")[-1] for c in (dist.metadata.get_all("Classifier") or [])
                   if c.startswith("License :: ") and c.count(" :: ") >= 2]
    if classifiers:
        return " / ".join(classifiers)
    return text.splitlines()[0][:80] if text else "unknown"


def bundled_licences() -> list[tuple[str, str, str]]:
    """(name, version, licence) for Postroom, Python, Qt and every installed runtime dependency, by name.

    Walks the requirements of the `postroom` distribution recursively, leaving out optional extras and
    anything not installed here (e.g. Windows-only packages), so the list is what this copy actually runs.
    """
    import platform

    rows: dict[str, tuple[str, str, str]] = {}
    pending = ["postroom"]
    while pending:
        name = pending.pop()
        key = _normalise(name)
        if key in rows:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        rows[key] = (_field(dist, "Name") or name, dist.version, _licence_of(dist))
        for requirement in dist.requires or []:
            if _EXTRA_MARKER.search(requirement):  # optional extras are not part of a plain install
                continue
            match = _NAME.match(requirement)
            if match:
                pending.append(match.group(1))
    ordered = sorted(rows.values(), key=lambda row: (row[0].lower() != "postroom", row[0].lower()))
    ordered.insert(1 if ordered else 0, ("Python", platform.python_version(), "PSF-2.0"))
    qt = rows.get("pyside6-essentials") or rows.get("pyside6")
    if qt is not None:
        ordered.insert(2, ("Qt", qt[1].split(".post")[0], "LGPL-3.0-only"))
    return ordered


def cmd_licences(args: argparse.Namespace) -> int:
    """`postroom licences`: the same list the About box shows, for headless installs."""
    rows = bundled_licences()
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, version, licence in rows:
        print(f"{name:{width}}  {version:14}  {licence}")
    return 0


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `postroom licences` (engine/cli.py asks this module for its commands)."""
    p = sub.add_parser("licences", help="list the bundled components with their versions and licences")
    p.set_defaults(handler=cmd_licences)
