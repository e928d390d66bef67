"""Fixtures for the desktop tests: a real Engine on loopback ephemeral ports in a temp data dir, its thread,
the bridge the panels use, and a loopback DNS zone for the parts that look things up.

Panels are driven with pytest-qt (offscreen) and checked by what a person would see.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop.bridge import EngineBridge
from desktop.collector import GuiThreadCollector
from engine.config import ListenAddress
from engine.runtime import Engine, EngineThread

sys.path.insert(0, str(Path(__file__).parent))

from desktop_support import HOSTNAME, PASSWORD, ZONE, Zone, ZoneServer, closed_port, on_engine


@pytest.fixture(scope="session", autouse=True)
def collect_on_gui_thread(qapp: Any) -> Iterator[None]:
    """As the app does (desktop/collector.py): cycles holding widgets are freed on the GUI thread only."""
    collector = GuiThreadCollector(qapp)
    yield
    collector.stop()


@pytest.fixture
def dns_zone() -> Iterator[ZoneServer]:
    server = ZoneServer(Zone(textwrap.dedent(ZONE))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One self-signed certificate for the whole session: RSA key generation is the slowest part of start."""
    from engine.config import Config
    from engine.tls import ensure_certificate

    config = Config(data_dir=tmp_path_factory.mktemp("tls-cache"), hostname=HOSTNAME)
    ensure_certificate(config)
    return config.tls_dir


@pytest.fixture
def data_dir(tmp_path: Path, dns_zone: ZoneServer, tls_dir: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    shutil.copytree(tls_dir, path / "tls")
    (path / "postroom.toml").write_text(textwrap.dedent(f"""\
        # written by the desktop tests
        hostname = "{HOSTNAME}"

        [dns]
        nameservers = ["{dns_zone.nameserver}"]
        timeout = "2s"

        [delivery]
        # remote MX hosts are "reachable" on a loopback port nobody listens on: connection refused
        remote_port = {closed_port()}
        retry_schedule = "1h"
        connect_timeout = "2s"
        """))
    return path


LOOPBACK = {"smtp": ListenAddress("127.0.0.1", 0), "submission": ListenAddress("127.0.0.1", 0)}


@pytest.fixture
def engine_thread(data_dir: Path) -> Iterator[EngineThread]:
    thread = EngineThread(Engine(data_dir, listen=dict(LOOPBACK), delivery_agent=False))     # as the app
    thread.start()
    yield thread
    thread.shutdown()


@pytest.fixture
def bridge(qapp: Any, engine_thread: EngineThread) -> Iterator[EngineBridge]:
    b = EngineBridge(engine_thread)
    yield b
    b.close()
    b.deleteLater()


@pytest.fixture
def running(engine_thread: EngineThread, bridge: EngineBridge) -> Engine:
    """The engine started, with domain example.test and account alice@example.test."""
    engine = engine_thread.engine
    engine_thread.submit(engine.start()).result(30)
    on_engine(engine_thread, engine.directory.add_domain, "example.test")
    on_engine(engine_thread, engine.directory.add_account, "alice@example.test", PASSWORD)
    on_engine(engine_thread, engine.store.create_account, "alice@example.test")
    return engine


@pytest.fixture
def screenshots_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
