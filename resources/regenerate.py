"""Writes resources/ from the one icon and desktop entry defined in desktop/install.py, so they never drift.

Run: .venv/bin/python resources/regenerate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from desktop.install import ICON_SVG, desktop_entry, render_icon_png  # noqa: E402

SIZES = (16, 24, 32, 48, 64, 128, 256)


def main() -> None:
    icons = HERE / "icons"
    icons.mkdir(exist_ok=True)
    (icons / "postroom.svg").write_text(ICON_SVG, encoding="utf-8")
    for size in SIZES:
        (icons / f"postroom-{size}.png").write_bytes(render_icon_png(size))
    (HERE / "postroom.desktop").write_text(desktop_entry(), encoding="utf-8")
    print(f"wrote {icons} and {HERE / 'postroom.desktop'}")


if __name__ == "__main__":
    main()
