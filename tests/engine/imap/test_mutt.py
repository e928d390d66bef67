"""neomutt, a terminal client, driven through tmux (send-keys in, capture-pane out) over implicit TLS:
open INBOX, read a message, flag one, delete one, sync, and see mail that arrives while it is open."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.interfaces import FLAGGED, SEEN

from .conftest import ALICE, ALICE_PW, IMAPServer, message

pytestmark = pytest.mark.peers

DEADLINE = 15.0


class Terminal:
    """One program in a detached tmux session on a private tmux server (never the user's)."""

    def __init__(self, socket: Path, command: list[str], env: dict[str, str]) -> None:
        self.tmux = ["tmux", "-S", str(socket)]
        subprocess.run([*self.tmux, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "30",
                        *command], check=True, env=env, timeout=10)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *keys], check=True, timeout=10)

    def screen(self) -> str:
        done = subprocess.run([*self.tmux, "capture-pane", "-t", "t", "-p"], capture_output=True, text=True,
                              timeout=10, check=False)
        return done.stdout

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen shows:\n{screen}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=10, check=False)


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def mutt(server: IMAPServer, tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None or shutil.which("neomutt") is None:
        pytest.skip("needs tmux and neomutt (Debian packages tmux, neomutt)")
    rc = tmp_path / "muttrc"
    user = ALICE.replace("@", "%40")
    rc.write_text(f"""set folder="imaps://{user}@localhost:{server.tls_port}/"
set spoolfile="+INBOX"
set imap_pass="{ALICE_PW}"
set ssl_ca_certificates_file="{server.ca_file}"
set header_cache=""
set message_cachedir=""
set mail_check=1
set timeout=1
set sort=unsorted
set delete=yes
set quit=yes
set move=no
set mark_old=no
set wait_key=no
set record=""
set crypt_use_gpgme=no
set autocrypt=no
set help=no
""")
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "LANG": "C.UTF-8"}
    term = Terminal(tmp_path / "tmux.sock", ["neomutt", "-n", "-F", str(rc)], env)
    try:
        yield term
    finally:
        term.close()


def test_neomutt_reads_flags_deletes_and_sees_new_mail(server: IMAPServer, mutt: Terminal) -> None:
    for subject in ("alpha", "bravo", "charlie"):
        server.deliver(ALICE, message(subject))
    mb = server.store.mailbox(ALICE)
    mutt.wait_for("Msgs:3")
    screen = mutt.screen()
    assert "alpha" in screen and "bravo" in screen and "charlie" in screen

    mutt.keys("1", "Enter")                  # jump to message 1 ...
    mutt.keys("Enter")                       # ... and read it
    mutt.wait_for("Hi there.")
    mutt.keys("i")                           # back to the index
    mutt.wait_for("Msgs:3")
    mutt.keys("2", "Enter", "F")             # flag message 2
    mutt.keys("3", "Enter", "d")             # delete message 3
    mutt.keys("$")                           # sync: STORE the flags, EXPUNGE the deleted one
    wait_until(lambda: mb.status("INBOX").messages == 2, "the deletion to reach the server")
    flags = [m.flags for m in mb.messages("INBOX")]
    assert SEEN in flags[0] and FLAGGED in flags[1], flags

    server.deliver(ALICE, message("delta"))  # arrives while neomutt has INBOX open
    mutt.wait_for("delta")

    mutt.keys("1", "Enter", "C")             # copy message 1 to a folder that does not exist yet:
    mutt.wait_for("Copy to mailbox")
    mutt.keys("C-u", "=Projects", "Enter")
    mutt.wait_for("Append messages to")
    mutt.keys("y")
    mutt.wait_for("Create Projects?")        # ... our NO [TRYCREATE] makes neomutt offer to create it
    mutt.keys("y")
    wait_until(lambda: "Projects" in {f.name for f in mb.folders()} and mb.status("Projects").messages == 1,
               "the copy in the new folder")
    mutt.keys("q")
