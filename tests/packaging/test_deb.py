"""The Debian package, end to end on this machine: build, install, run as a user would, remove, purge.

Slow and machine-changing (needs root and apt; installs postroom system-wide and purges it afterwards), so it
runs only when asked: `.venv/bin/python -m pytest -m packaging tests/packaging`.  The tests share one
installation and run in file order; the last one removes and purges it.
"""

from __future__ import annotations

import configparser
import contextlib
import email
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import struct
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "postroom"
DATA = Path("/var/lib/postroom")
APP_ID = "org.postroom.Postroom"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
BUILD_TIMEOUT = 480

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(600),
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or shutil.which("apt-get") is None,
                       reason="installs a .deb: needs root on Debian/Ubuntu"),
]


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        value: str = tomllib.load(f)["project"]["version"]
    return value


def run(*argv: str, check: bool = True, timeout: float = 120, input: str | None = None,
        env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env, cwd=cwd)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def installed() -> bool:
    result = run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    return result.returncode == 0 and "installed" in result.stdout.split()


def purge() -> subprocess.CompletedProcess[str]:
    return run("dpkg", "--purge", PACKAGE, check=False, env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture(scope="module")
def deb() -> Path:
    """`make package` from this tree (make reuses the bundle when no source changed)."""
    result = subprocess.run(["make", "-C", str(ROOT), "package"], capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, f"make package failed\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    arch = run("dpkg", "--print-architecture").stdout.strip()
    path = ROOT / "packaging" / "dist" / f"{PACKAGE}_{version()}_{arch}.deb"
    assert path.is_file(), result.stdout[-2000:]
    return path


@pytest.fixture(scope="module")
def package(deb: Path) -> Iterator[Path]:
    """The package installed with apt as a person would; purged again whatever the tests did."""
    if installed():
        if DATA.is_dir() and any(DATA.glob("mail/*/*")):
            pytest.skip(f"{PACKAGE} is installed here with mail in {DATA}; this test would purge it")
        purge()
    result = run("apt-get", "install", "-y", "--no-install-recommends", str(deb), timeout=300,
                 env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
    assert "systemctl enable --now postroom" in result.stdout  # postinst tells how to start the server
    yield deb
    leftovers = run("pgrep", "-u", PACKAGE, check=False).stdout.split() if installed() else []
    if installed():
        purge()
    assert not leftovers, f"processes of user {PACKAGE} outlived the tests: {leftovers}"


def free_port(host: str = "127.0.0.1", ports: range | None = None) -> int:
    """A port nobody listens on: one the kernel picks, or the first free one of `ports` (we are root)."""
    for port in ports or [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            bound: int = s.getsockname()[1]
            return bound
    raise AssertionError(f"no free port in {ports}")


class Server:
    """`postroom serve` started as the service user, stopped by its own process group at the end."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=CLEAN_ENV, cwd="/", start_new_session=True)
        self.lines: list[str] = []

    def wait_serving(self, deadline: float = 30.0) -> None:
        """Reads its start-up report until the "serving mail" line (it prints one line per listener)."""
        assert self.process.stdout is not None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            line = self.process.stdout.readline()
            if not line:
                _, err = self.process.communicate(timeout=10)
                pytest.fail(f"postroom serve exited {self.process.returncode}:\n{''.join(self.lines)}{err}")
            self.lines.append(line)
            if "serving mail" in line:
                return
        pytest.fail(f"postroom serve did not report serving within {deadline} s:\n{''.join(self.lines)}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            _, err = self.process.communicate()
        return err


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[Server]:
    server = Server(argv)
    try:
        yield server
    finally:
        err = server.stop()
        assert "Traceback" not in err, err


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the package file ----------------------------------------------------------------------------------

def test_package_carries_the_pyproject_version_and_the_system_libraries_it_needs(deb: Path) -> None:
    fields = run("dpkg-deb", "--field", str(deb)).stdout
    control = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line and not line.startswith(" "))
    assert control["Package"] == PACKAGE
    assert control["Version"] == version()
    depends = control["Depends"]
    assert "libc6 (>=" in depends
    assert "passwd" in depends  # useradd/userdel in the maintainer scripts
    # PyInstaller never bundles the GL stack (it must match the machine's drivers): Qt's comes from Debian.
    assert "libgl1" in depends and "libegl1" in depends


def test_package_builds_offline_with_dpkg_deb_and_lays_out_the_filesystem(deb: Path) -> None:
    names = {line.split()[-1].lstrip(".") for line in run("dpkg-deb", "--contents", str(deb)).stdout.splitlines()}
    for path in ("/opt/postroom/postroom", "/usr/bin/postroom", f"/usr/share/applications/{APP_ID}.desktop",
                 f"/usr/share/metainfo/{APP_ID}.metainfo.xml", "/lib/systemd/system/postroom.service",
                 f"/usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg", "/usr/share/doc/postroom/copyright"):
        assert path in names, path


# --- installed ---------------------------------------------------------------------------------------------

def test_postroom_is_on_the_path_and_reports_its_version_without_the_source_tree_or_a_venv(package: Path) -> None:
    assert shutil.which("postroom", path=CLEAN_ENV["PATH"]) == "/usr/bin/postroom"
    result = run("postroom", "--version", env=CLEAN_ENV, cwd="/")
    assert result.stdout.strip() == f"postroom {version()}"
    # Hide this checkout (and its .venv) behind an empty tmpfs in a private mount namespace: still runs.
    hidden = run("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount -t tmpfs none {ROOT} && ! test -e {ROOT}/pyproject.toml && postroom --version",
                 env=CLEAN_ENV, cwd="/", check=False)
    if hidden.returncode != 0 and "unshare failed" in hidden.stderr:
        pytest.skip("no mount namespaces here")
    assert hidden.returncode == 0, hidden.stderr
    assert hidden.stdout.strip() == f"postroom {version()}"


def test_bundle_carries_qt_webengine_and_resolves_every_library(package: Path) -> None:
    internal = Path("/opt/postroom/_internal")
    qt = internal / "PySide6" / "Qt"
    for part in ("libexec/QtWebEngineProcess", "resources/qtwebengine_resources.pak", "resources/icudtl.dat",
                 "translations/qtwebengine_locales/en-US.pak", "plugins/platforms/libqxcb.so",
                 "plugins/platforms/libqoffscreen.so", "plugins/platforms/libqwayland.so"):
        assert (qt / part).exists(), part
    for binary in (Path("/opt/postroom/postroom"), qt / "libexec/QtWebEngineProcess", qt / "plugins/platforms/libqxcb.so",
                   qt / "lib/libQt6WebEngineCore.so.6"):
        result = run("ldd", str(binary), env={**CLEAN_ENV, "LD_LIBRARY_PATH": str(internal)})
        assert "not found" not in result.stdout, result.stdout
    assert (internal / "resources" / "postroom.qss").is_file()  # the desktop app's stylesheet


def test_dynamically_imported_modules_and_keyring_backends_are_frozen_in(package: Path) -> None:
    internal = Path("/opt/postroom/_internal")
    entry_points = next(internal.glob("keyring-*.dist-info")) / "entry_points.txt"
    parser = configparser.ConfigParser()
    parser.read(entry_points)
    assert "SecretService" in parser["keyring.backends"]  # how keyring finds its backends at run time
    listing = run(str(ROOT / ".venv/bin/pyi-archive_viewer"), "--recursive", "--brief",
                  "/opt/postroom/postroom").stdout
    frozen = {line.strip().strip("'") for line in listing.splitlines()}
    expected = {"keyring.backends.SecretService", "keyring.backends.chainer", "keyring.backends.kwallet",
                "secretstorage", "jeepney.io.blocking", "desktop.app", "desktop.install", "engine.cli",
                # dnspython imports its record types by name when it parses an answer.
                "dns.rdtypes.ANY.MX", "dns.rdtypes.ANY.TXT", "dns.rdtypes.IN.A", "dns.rdtypes.IN.AAAA"}
    # Every engine module the runtime may import by name (listeners, CLI plugins) is in the tree here.
    expected |= {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "engine").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected - frozen == set()


def test_menu_entry_metainfo_and_icons_are_installed_and_valid(package: Path) -> None:
    desktop = Path(f"/usr/share/applications/{APP_ID}.desktop")
    run("desktop-file-validate", str(desktop))
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(desktop)
    assert entry["Desktop Entry"]["Exec"] == "postroom"
    assert entry["Desktop Entry"]["Icon"] == APP_ID
    run("appstreamcli", "validate", "--no-net", f"/usr/share/metainfo/{APP_ID}.metainfo.xml")
    hicolor = Path("/usr/share/icons/hicolor")
    assert (hicolor / "scalable/apps" / f"{APP_ID}.svg").read_text().lstrip().startswith("<?xml")
    for size in ICON_SIZES:
        assert png_size(hicolor / f"{size}x{size}/apps/{APP_ID}.png") == (size, size)


def test_service_user_owns_the_data_directory(package: Path) -> None:
    user = pwd.getpwnam(PACKAGE)
    assert user.pw_uid < 1000  # a system user
    assert user.pw_dir == str(DATA)
    assert user.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin")
    info = DATA.stat()
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o750


def test_systemd_unit_runs_headless_as_the_service_user_with_only_the_bind_capability(package: Path) -> None:
    unit_path = Path("/lib/systemd/system/postroom.service")
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(unit_path)
    service = unit["Service"]
    assert service["ExecStart"] == "/opt/postroom/postroom serve"
    assert service["User"] == PACKAGE
    assert "POSTROOM_HOME=/var/lib/postroom" in service["Environment"].split()
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == str(DATA)
    assert service["NoNewPrivileges"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # Installed, not enabled: a mail server on port 25 starts only when the admin says so.
    assert not Path("/etc/systemd/system/multi-user.target.wants/postroom.service").exists()
    if shutil.which("systemd-analyze"):
        result = run("systemd-analyze", "verify", str(unit_path), check=False)
        assert result.returncode == 0, result.stderr


def test_headless_server_as_the_service_user_receives_over_smtp_and_serves_over_imap(package: Path) -> None:
    as_service = ["runuser", "-u", PACKAGE, "--", "postroom"]
    run(*as_service, "domain", "add", "example.test", env=CLEAN_ENV, cwd="/")
    run(*as_service, "account", "add", "ann@example.test", "--password-stdin", input="pw-ann-1\n", env=CLEAN_ENV,
        cwd="/")
    smtp_port, imap_port = free_port(), free_port()
    while imap_port == smtp_port:       # two bind-to-0 calls in a row may get the same port
        imap_port = free_port()
    with serving([*as_service, "serve", "--listen", f"smtp=127.0.0.1:{smtp_port}",
                  "--listen", f"imap=127.0.0.1:{imap_port}"]) as server:
        server.wait_serving()
        # The frozen program carries uvloop (compiled, with modules only its C code imports) and runs on it.
        assert " on uvloop; " in server.lines[-1]
        body = f"Sent to the packaged server at {time.time()}.\r\n"
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            refused = smtp.sendmail("bob@remote.test", ["ann@example.test"],
                                    f"From: bob@remote.test\r\nTo: ann@example.test\r\nSubject: packaged\r\n\r\n{body}")
        assert refused == {}
        with imaplib.IMAP4("127.0.0.1", imap_port, timeout=10) as imap:
            if "LOGINDISABLED" in imap.capabilities:  # cleartext login refused: upgrade first (RFC 3501 §6.2.1)
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the server's own self-signed certificate
                imap.starttls(context)
            imap.login("ann@example.test", "pw-ann-1")
            status, data = imap.select("INBOX", readonly=True)
            assert status == "OK" and int(data[0] or 0) == 1
            status, fetched = imap.fetch("1", "(BODY.PEEK[])")
            assert status == "OK"
            first = fetched[0]
            assert isinstance(first, tuple)
            raw = first[1]
            message = email.message_from_bytes(raw)
            assert message["Subject"] == "packaged"
            assert message.get_payload() == body
    stored = list(DATA.glob("mail/example.test/ann/*/*"))
    assert stored and all(pwd.getpwuid(p.stat().st_uid).pw_name == PACKAGE for p in stored)


def test_port_below_1024_binds_as_the_service_user_only_with_the_units_capability(package: Path) -> None:
    port = free_port(ports=range(900, 1000))
    env = {**CLEAN_ENV, "POSTROOM_HOME": str(DATA), "HOME": str(DATA)}
    as_user = ["setpriv", "--reuid", PACKAGE, "--regid", PACKAGE, "--init-groups"]
    serve = ["/opt/postroom/postroom", "serve", "--listen", f"smtp=127.0.0.1:{port}"]
    refused = run(*as_user, "--", *serve, env=env, cwd="/", check=False, timeout=60)
    assert refused.returncode == 1
    assert "permission denied" in refused.stderr and "CAP_NET_BIND_SERVICE" in refused.stderr
    # What AmbientCapabilities=CAP_NET_BIND_SERVICE gives the service, given here by setpriv instead.
    with_capability = [*as_user, "--inh-caps", "+net_bind_service", "--ambient-caps", "+net_bind_service"]
    with serving([*with_capability, "--", *serve]) as server:
        server.wait_serving()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            code, _ = smtp.noop()
        assert code == 250


def test_window_opens_from_the_installed_bundle(package: Path, tmp_path: Path) -> None:
    """Offscreen: the app gets as far as its single-instance socket, answers a second start, stays up."""
    env = {**CLEAN_ENV, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path), "USER": "tester"}
    data = tmp_path / "data"
    app = subprocess.Popen(["postroom", "--data-dir", str(data)], env=env, cwd="/", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.is_socket() for p in tmp_path.glob("postroom-*")):
            assert app.poll() is None, f"the app exited {app.returncode}: {app.communicate()[1]}"
            assert time.monotonic() < deadline, "the app did not get as far as listening for a second instance"
            time.sleep(0.05)
        second = run("postroom", "--data-dir", str(data), env=env, cwd="/", timeout=60)
        assert "already running" in second.stdout
        with pytest.raises(subprocess.TimeoutExpired):  # alive three seconds later: no crash after start-up
            app.wait(timeout=3)
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
        try:
            _, err = app.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            _, err = app.communicate()
    assert "Traceback" not in err, err


def test_remove_keeps_the_mail_and_purge_deletes_it_saying_what_it_deletes(package: Path) -> None:
    run("runuser", "-u", PACKAGE, "--", "postroom", "domain", "add", "kept.test", env=CLEAN_ENV, cwd="/")
    assert (DATA / "state.sqlite").exists()

    removed = run("apt-get", "remove", "-y", PACKAGE, timeout=300,
                  env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
    assert not Path("/opt/postroom").exists() and not Path("/usr/bin/postroom").exists()
    assert (DATA / "state.sqlite").exists(), "remove must keep the data"
    assert pwd.getpwnam(PACKAGE)
    assert "apt purge postroom" in removed.stdout

    purged = purge()
    assert purged.returncode == 0, purged.stderr
    said = purged.stdout + purged.stderr
    assert f"purge deletes {DATA}" in said and "every mailbox" in said
    assert f"deleted {DATA}" in said and "purge deletes the system user 'postroom'" in said
    assert not DATA.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(PACKAGE)
    assert not installed()
