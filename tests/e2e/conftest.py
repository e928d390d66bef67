"""Fixtures that run `postroom` as a user would: the installed command, a fresh data dir, high loopback ports."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

POSTROOM = [sys.executable, "-m", "engine.cli"]
START_DEADLINE = 45.0
SERVICES = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_ports() -> dict[str, int]:
    """A distinct free port per service: every socket stays bound until all are chosen, so the kernel
    cannot hand the same port out twice (separate free_port() calls can)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in SERVICES]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return {service: int(sock.getsockname()[1]) for service, sock in zip(SERVICES, socks, strict=True)}


def postroom(data_dir: Path, *args: str, input: str | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*POSTROOM, "--data-dir", str(data_dir), *args], input=input, text=True,
                            capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"postroom {' '.join(args)} failed: {result.stderr}")
    return result


class PortTaken(AssertionError):
    """serve could not bind a port chosen for it: another program took it after it was chosen."""


@dataclass
class Server:
    data_dir: Path
    ports: dict[str, int]
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)
    # Where serve's stdout/stderr go: a file for long-lived servers (a pipe nobody reads can fill and
    # block the server), None for a pipe read when it stops.
    output: Path | None = None

    def start(self) -> None:
        """Starts serve; if a chosen port was taken by someone else in the meantime (serve says so and
        exits), starts again on fresh ports, twice at most."""
        for attempt in range(3):
            try:
                self._start_once()
                return
            except PortTaken:
                if attempt == 2:
                    raise
                self.ports = service_ports()

    def _start_once(self) -> None:
        args = [f"--listen=smtp=127.0.0.1:{self.ports['smtp']}",
                f"--listen=submission=127.0.0.1:{self.ports['submission']}"]
        for service in ("submissions", "imap", "imaps", "pop3", "pop3s"):
            args.append(f"--listen={service}=127.0.0.1:{self.ports[service]}")
        command = [*POSTROOM, "--data-dir", str(self.data_dir), "serve", *args]
        # a log file keeps earlier starts' output: only this attempt's counts below
        earlier = self.output.read_text(errors="replace") if self.output is not None and self.output.exists() else ""
        offset = len(earlier)
        if self.output is None:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        else:
            with open(self.output, "a") as out:
                self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        # Listeners start one after another: every one of them answers before the server counts as up.
        # A server that exits or never comes up is killed here and its own output is the error: nothing
        # outlives a failed start, and the reason is in the test report.  The deadline is past the engine's
        # own 30 s wait for its delivery agent (after which it serves without one).
        end = time.monotonic() + START_DEADLINE
        try:
            for service in SERVICES:
                self._wait_for(service, end)
        except AssertionError as exc:
            if self.proc.poll() is None:
                self.proc.kill()
            output = self._collect()[offset:]
            self.proc = None
            if "already in use" in output:
                raise PortTaken(f"{exc}; serve said:\n{output}") from None
            raise AssertionError(f"{exc}; serve said:\n{output}") from None

    def _wait_for(self, service: str, end: float) -> None:
        assert self.proc is not None
        port = self.ports[service]
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"serve exited ({self.proc.returncode}) before {service} listened on {port}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nothing listens for {service} on port {port} after {START_DEADLINE:.0f} s")

    def _collect(self) -> str:
        assert self.proc is not None
        if self.output is None:
            return self.proc.communicate(timeout=10)[0]
        self.proc.wait(timeout=10)
        return self.output.read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.log.append(self._collect())
        self.proc = None

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        code = self.proc.returncode
        self.proc = None
        if self.output is not None:
            out = self.output.read_text(errors="replace")
        assert code == 0, f"serve exited {code}: {out}"
        return out


def prepare_data_dir(data: Path, settings: str, domains: Sequence[str] = ("example.test",),
                     accounts: dict[str, str] | None = None) -> None:
    """A fresh data directory as a person sets one up: postroom.toml, then `domain add`, `account add`
    (the accounts two at a time: each is a Python start-up and an argon2 hash)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "postroom.toml").write_text(settings)
    for domain in domains:
        postroom(data, "domain", "add", domain)
    pending = list((accounts or {}).items())
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [(address, password, subprocess.Popen(
            [*POSTROOM, "--data-dir", str(data), "account", "add", address, "--password-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for address, password in batch]
        try:
            for address, password, proc in procs:
                _, err = proc.communicate(password + "\n", timeout=60)
                assert proc.returncode == 0, f"postroom account add {address} failed: {err}"
        finally:
            for _, _, proc in procs:       # after a timeout or failure: no process or pipe outlives the batch
                if proc.poll() is None:
                    proc.kill()
                with proc:                 # closes its pipes and reaps it
                    pass


def copy_data_dir(template: Path, data: Path, settings: str | None = None) -> Path:
    """A copy of a prepared data directory (no process may hold it open), with other settings if given."""
    shutil.copytree(template, data)
    if settings is not None:
        (data / "postroom.toml").write_text(settings)
    return data


# Every e2e data directory starts with these accounts at example.test (password: name-pw).
ACCOUNTS = {f"{name}@example.test": f"{name}-pw" for name in ("alice", "bob", "carol", "dave")}


@contextmanager
def serving(data: Path) -> Iterator[Server]:
    """`postroom serve` on fresh high loopback ports for as long as the block runs; killed if still up."""
    srv = Server(data, service_ports(), output=data.parent / f"{data.name}-serve.log")
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill9()


@pytest.fixture(scope="session")
def data_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory every e2e server starts from (example.test and ACCOUNTS), set up once with the
    CLI: each CLI run costs a Python start-up, and a copy of a directory no process holds open is the
    same fresh state."""
    data = tmp_path_factory.mktemp("template") / "data"
    prepare_data_dir(data, 'hostname = "mx.example.test"\n', accounts=ACCOUNTS)
    return data


@pytest.fixture
def server(tmp_path: Path, data_template: Path) -> Iterator[Server]:
    data = copy_data_dir(data_template, tmp_path / "data")
    srv = Server(data, service_ports())
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill9()


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTROOM_HOME", raising=False)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
