"""Finds the app's icon and stylesheet in `resources/`: beside the packages in a source tree, under
<prefix>/share/postroom/ when installed from a wheel."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon


def _resources_dir() -> Path:
    """The source tree's resources/, else the copy a wheel installed under <prefix>/share/postroom."""
    source = Path(__file__).resolve().parent.parent / "resources"
    if source.is_dir():
        return source
    for prefix in (sys.prefix, sys.base_prefix, getattr(sys, "_MEIPASS", "")):
        if prefix and (installed := Path(prefix) / "share" / "postroom" / "resources").is_dir():
            return installed
    return source


RESOURCES = _resources_dir()
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def resource(*parts: str) -> Path:
    return RESOURCES.joinpath(*parts)


@cache
def app_icon() -> QIcon:
    """The PNG sizes for small places (tray, taskbar), the SVG for everything else."""
    icon = QIcon()
    for size in ICON_SIZES:
        png = resource("icons", f"postroom-{size}.png")
        if png.exists():
            icon.addFile(str(png))
    svg = resource("icons", "postroom.svg")
    if svg.exists():
        icon.addFile(str(svg))
    return icon


def stylesheet() -> str:
    try:
        return resource("postroom.qss").read_text(encoding="utf-8")
    except OSError:
        return ""
