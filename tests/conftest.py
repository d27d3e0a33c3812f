"""Fixtures that start real services: a private Mosquitto per test and fresh PostgreSQL databases.

A missing service is a failure, never a skip: CI must not turn green because Mosquitto or
PostgreSQL was absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridwatch.deploy.rtsp_camera.camera import Clips, RtspToolsMissing

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRIDWATCH_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "samples"
MOSQUITTO_CONF = REPO / "broker" / "mosquitto" / "gridwatch.conf"
PG_ADMIN_URL = os.environ.get("GRIDWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_COUNTS = pytest.StashKey[list[str]]()
ReportCounts = Callable[[str], None]


@pytest.fixture
def report_counts(request: pytest.FixtureRequest) -> ReportCounts:
    """Record a fault or scale test's counts (published, delivered, duplicates, lost) for the run's
    summary, so every run, CI's log included, shows the figures, not only a run with ``-s``."""
    lines = request.config.stash.setdefault(_COUNTS, [])

    def report(line: str) -> None:
        print(line)
        lines.append(f"{request.node.nodeid}\n    {line.strip()}")

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_COUNTS, [])
    if lines:
        terminalreporter.section("fault and scale test counts")
        for line in lines:
            terminalreporter.write_line(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Mosquitto:
    """A mosquitto process on a free port with the project's config; can be stopped and restarted."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is required for this test (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        conf = MOSQUITTO_CONF.read_text()
        conf = conf.replace("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1")
        conf = conf.replace("/var/lib/mosquitto/", f"{workdir / 'data'}/")
        self.conf_path = workdir / "mosquitto.conf"
        conf += f"\nlog_dest file {workdir / 'mosquitto.log'}\n"
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to user `mosquitto`, which cannot write in pytest's
            # 0700 tmp dirs: persistence would fail silently and a restart forget every session.
            conf += "user root\n"
        self.conf_path.write_text(conf)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


def _fresh_postgres_database() -> tuple[str, object]:
    """Create an empty database named for this run; return its URL and a dropper."""
    try:
        import sqlalchemy as sa
    except ImportError:
        pytest.fail("SQLAlchemy is required: install gridwatch[server]")
    name = f"gridwatch_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # a missing server must fail the run, not skip it
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend the server supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gridwatch.db'}"
        return
    url, drop = _fresh_postgres_database()
    yield url
    drop()


@pytest.fixture
def samples() -> Path:
    if not (SAMPLES / "one-by-one-person-detection.mp4").exists():
        pytest.fail(f"shared sample footage not found under {SAMPLES} (set GRIDWATCH_SHARED)")
    return SAMPLES


def rtsp_clips(directory: Path) -> Clips:
    """The simulated camera's clips; a machine without ffmpeg or GStreamer's RTSP server fails here, never skips."""
    try:
        return Clips(directory, SAMPLES)
    except RtspToolsMissing as exc:
        pytest.fail(str(exc))
