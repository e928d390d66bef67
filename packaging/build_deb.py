"""Lays out the Debian package tree around the PyInstaller bundle and builds the .deb with dpkg-deb.

Run by `make -C packaging deb` after the bundle exists; needs no network.  The package's version is the one in
pyproject.toml; its Depends are the system libraries the bundle links against but does not carry, found by
asking ldd about every ELF file in the bundle and dpkg which package owns each library.

    python packaging/build_deb.py --bundle packaging/dist/postroom --out packaging/dist
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LINUX = HERE / "linux"
sys.path.insert(0, str(ROOT))

from desktop.install import APP_ID, desktop_entry, write_icons  # noqa: E402

PACKAGE = "postroom"
PREFIX = Path("opt/postroom")

# Libraries some Qt plugin links against that the build machine may not have installed (so ldd cannot say
# where they would come from): the Debian package that ships each soname.
SONAME_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libwayland-client.so.0": "libwayland-client0",
    "libgtk-3.so.0": "libgtk-3-0",
    "libgdk-3.so.0": "libgtk-3-0",
    "libpulse.so.0": "libpulse0",
}
# Plugins Qt skips when their libraries are missing: what only they need is recommended, not required.
# (The GTK platform theme: GTK-style dialogs and colours on GNOME-like desktops.)
OPTIONAL_PLUGINS = {"libqgtk3.so"}
# Tools the maintainer scripts call.
SCRIPT_DEPENDS = ["passwd"]

LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")


def project_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def release_date() -> str:
    """The date of the last commit (stable across rebuilds), or today's outside a git checkout."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).date().isoformat()
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%cs"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return datetime.date.today().isoformat()


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def owning_package(path: str) -> str | None:
    """Which installed Debian package ships a library (trying the /usr-merged spellings of its path)."""
    real = os.path.realpath(path)
    candidates = {path, real}
    for p in (path, real):
        candidates.add(p.removeprefix("/usr") if p.startswith("/usr/") else "/usr" + p)
    for candidate in candidates:
        result = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":", 1)[0].strip()
    return None


def system_dependencies(bundle: Path) -> tuple[list[str], list[str], list[str]]:
    """(depends, recommends, unknown sonames): what the bundle's ELF files need from the system.

    The bundle's own copies are found at run time through the bootloader's library path, not RPATH, so a
    soname counts as bundled when a file of that name is in the bundle, whatever ldd resolves it to here.
    """
    bundled = {p.name for p in bundle.rglob("*") if p.is_file() or p.is_symlink()}
    needed: dict[str, str] = {}        # soname -> where ldd found it here (or "not found")
    required: set[str] = set()         # sonames that something other than an optional plugin needs
    for path in sorted(bundle.rglob("*")):
        if not path.is_file() or path.is_symlink() or not is_elf(path):
            continue
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            match = LDD_LINE.match(line)
            if match and match.group(1) not in bundled:
                needed.setdefault(match.group(1), match.group(2))
                if path.name not in OPTIONAL_PLUGINS:
                    required.add(match.group(1))
    depends: set[str] = set()
    recommends: set[str] = set()
    unknown: list[str] = []
    for soname, where in sorted(needed.items()):
        package = None if where == "not found" else owning_package(where)
        package = package or SONAME_PACKAGES.get(soname)
        if package is None:
            unknown.append(soname)
        else:
            (depends if soname in required else recommends).add(package.split(":")[0])
    glibc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libc6"], capture_output=True,
                           text=True).stdout
    minimum = re.match(r"\d+\.\d+", glibc)
    versioned = [f"libc6 (>= {minimum.group(0)})" if p == "libc6" and minimum else p
                 for p in sorted(depends | set(SCRIPT_DEPENDS))]
    return versioned, sorted(recommends - depends), unknown


def fill(template: Path, **values: str) -> str:
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise SystemExit(f"{template}: no value for {', '.join(leftover)}")
    return text


def write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    path.chmod(mode)


def normalise_modes(tree: Path) -> None:
    """Directories 0755, files 0644 or 0755 when executable: the service user must read the whole bundle."""
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def licence_list(bundle: Path) -> str:
    """What the built bundle itself reports as bundled (so the list matches what ships)."""
    result = subprocess.run([str(bundle / PACKAGE), "licences"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    if result.returncode != 0:
        raise SystemExit(f"the bundle does not run: {result.stderr.strip()}")
    return result.stdout


def build(bundle: Path, out: Path, compression: str) -> Path:
    version = project_version()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stage = HERE / "build" / "deb" / f"{PACKAGE}_{version}_{arch}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)

    shutil.copytree(bundle, stage / PREFIX, symlinks=True)
    write(stage / "usr/bin/postroom", (LINUX / "postroom.sh").read_text(encoding="utf-8"), 0o755)
    write(stage / f"usr/share/applications/{APP_ID}.desktop", desktop_entry(["postroom"]))
    write_icons(stage / "usr/share/icons/hicolor")
    write(stage / f"usr/share/metainfo/{APP_ID}.metainfo.xml",
          fill(LINUX / "metainfo.xml.in", APP_ID=APP_ID, VERSION=version, DATE=release_date()))
    write(stage / "lib/systemd/system/postroom.service", (LINUX / "postroom.service").read_text(encoding="utf-8"))
    doc = stage / "usr/share/doc" / PACKAGE
    write(doc / "copyright", fill(LINUX / "copyright.in", LICENCES=licence_list(bundle)))
    write(doc / "README.Debian", (LINUX / "README.Debian").read_text(encoding="utf-8"))
    normalise_modes(stage)

    depends, recommends, unknown = system_dependencies(stage / PREFIX)
    for soname in unknown:
        print(f"build_deb: warning: no Debian package known for {soname}; add it to SONAME_PACKAGES",
              file=sys.stderr)
    installed_kib = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
    debian = stage / "DEBIAN"
    control = fill(LINUX / "control.in", VERSION=version, ARCH=arch, INSTALLED_SIZE=str(installed_kib),
                   DEPENDS=", ".join(depends), RECOMMENDS=", ".join(recommends) or "hicolor-icon-theme")
    write(debian / "control", control)
    for script in ("postinst", "prerm", "postrm"):
        write(debian / script, (LINUX / script).read_text(encoding="utf-8"), 0o755)

    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{version}_{arch}.deb"
    kind, _, level = compression.partition(":")
    command = ["dpkg-deb", "--root-owner-group", f"-Z{kind}", "--build", str(stage), str(deb)]
    if level:
        command.insert(2, f"-z{level}")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"built {deb} ({deb.stat().st_size // (1024 * 1024)} MiB, installs {installed_kib // 1024} MiB)")
    return deb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=HERE / "dist" / PACKAGE)
    parser.add_argument("--out", type=Path, default=HERE / "dist")
    parser.add_argument("--compression", default="zstd:6",
                        help="dpkg-deb compressor[:level] (gzip, xz, zstd); zstd:6 is fast, xz:6 20%% smaller and slow")
    args = parser.parse_args()
    if not (args.bundle / PACKAGE).is_file():
        raise SystemExit(f"no bundle at {args.bundle}: run `make -C packaging bundle` first")
    build(args.bundle.resolve(), args.out.resolve(), args.compression)


if __name__ == "__main__":
    main()
