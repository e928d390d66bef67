"""How long the installed Postroom takes to put its window on screen, cold and warm, under Xvfb.

"Window on screen" is the moment X reports a viewable top-level window whose title contains "Postroom"
(the main window, or the setup wizard on a first run).  "Cold" drops the kernel's page cache first (root
only), as after a reboot; the warm runs follow at once.  Stdlib only; needs Xvfb and xwininfo
(`make -C packaging startup-time` installs them).

    python3 packaging/startup_time.py [--program /usr/bin/postroom] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOW = re.compile(r"^\s+(0x[0-9a-f]+) \"([^\"]*Postroom[^\"]*)\"", re.MULTILINE)


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a display number it chooses itself (-displayfd), so parallel runs never collide."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        xvfb.kill()
        raise SystemExit("Xvfb did not start")
    return xvfb, f":{number}"


def viewable_window(display: str) -> str | None:
    env = {**os.environ, "DISPLAY": display}
    tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, env=env).stdout
    for match in WINDOW.finditer(tree):
        info = subprocess.run(["xwininfo", "-id", match.group(1)], capture_output=True, text=True, env=env).stdout
        if "IsViewable" in info:
            return match.group(2)
    return None


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def one_run(program: str, display: str, home: Path, deadline: float) -> tuple[float | None, str, str]:
    """(seconds to a viewable window or None, its title, stderr); the app is stopped afterwards."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    started = time.monotonic()
    app = subprocess.Popen([program, "--data-dir", str(home / "data")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    seconds: float | None = None
    title = ""
    try:
        while time.monotonic() - started < deadline and app.poll() is None:
            found = viewable_window(display)
            if found:
                seconds, title = time.monotonic() - started, found
                break
            time.sleep(0.02)
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
        try:
            _, err = app.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            _, err = app.communicate()
    return seconds, title, err.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default="/usr/bin/postroom")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    for tool in ("Xvfb", "xwininfo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install xvfb x11-utils")
    xvfb, display = start_xvfb()
    failures = 0
    try:
        with tempfile.TemporaryDirectory(prefix="postroom-start-") as tmp:
            for run in range(args.runs):
                cold = run == 0 and drop_caches()
                home = Path(tmp) / f"run{run}"
                home.mkdir()
                seconds, title, err = one_run(args.program, display, home, args.deadline)
                kind = "cold" if cold else "warm"
                if seconds is None:
                    failures += 1
                    print(f"run {run + 1} ({kind}): no window within {args.deadline:.0f} s\n{err}")
                else:
                    print(f"run {run + 1} ({kind}): window {title!r} after {seconds:.2f} s")
                if "Traceback" in err:
                    failures += 1
                    print(err)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
