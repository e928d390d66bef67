"""Runs every benchmark in bench/ one after another and prints their tables (`make bench`).

Each benchmark measures Postroom beside a named baseline in the same run (Postfix, Dovecot, a bare aiosmtpd
handler, a plain aiosmtplib loop) and prints ratios; disk timings here vary by ±30%, so only ratios from one run
mean anything.  The Debian baselines are installed first when missing (root only; loopback ports only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINES = {"smtp-source": "postfix", "dovecot": "dovecot-imapd dovecot-pop3d"}
ORDER = ["smtp_throughput.py", "store_deliver.py", "queue_throughput.py", "imap_vs_dovecot.py",
         "pop3_vs_dovecot.py", "mailauth_cost.py", "gui_stall.py"]


def install_baselines() -> None:
    missing = [pkg for cmd, pkg in BASELINES.items()
               if shutil.which(cmd) is None and not Path("/usr/sbin", cmd).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        print(f"missing baselines ({' '.join(missing)}): install them with apt-get to compare against", flush=True)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *" ".join(missing).split()],
                   check=False, env=env)


def main() -> int:
    install_baselines()
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    failed = []
    for name in ORDER + sorted(p.name for p in HERE.glob("*.py") if p.name not in ORDER and p.name != "run_all.py"):
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} (load average {os.getloadavg()[0]:.1f}) ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], env=env, timeout=1800)
        print(f"--- {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print("benchmarks that failed or missed their target:", ", ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
