"""Helpers the tests share: real processes (worker, web), waiting, and reading HTML pages."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask
from flask.testing import FlaskClient

from shared.config import Settings, child_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
# The broker worker tests use: the machine's Redis unless TRAINYARD_TEST_BROKER_URL names another.
REDIS_URL = os.environ.get("TRAINYARD_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
# The PostgreSQL server tests that need one make their own databases on.
PG_SERVER = os.environ.get(
    "TRAINYARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


def mnist_dir() -> Path:
    """The MNIST folder tests read: TRAINYARD_DATA_DIR, else ../shared/datasets/mnist."""
    configured = os.environ.get("TRAINYARD_DATA_DIR")
    return (
        Path(configured).resolve()
        if configured
        else (ROOT.parent / "shared" / "datasets" / "mnist")
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    return child_env(settings, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def create_test_app(settings: Settings) -> Flask:
    """The Flask app on these settings, in testing mode."""
    from web import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    return application


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class TrainyardProcess(subprocess.Popen[bytes]):
    """A `trainyard` command running in a process group of its own, writing to `log`."""

    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole group: the process and every child it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)


@contextmanager
def trainyard_process(
    settings: Settings,
    args: list[str],
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> Iterator[TrainyardProcess]:
    """Run `trainyard ARGS` until the block ends, once `ready()` says so; fail with its log if it exits."""
    log = settings.home / f"{what.replace(' ', '-')}-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**settings_env(settings), **(extra_env or {})}
    with log.open("ab") as out:
        process = TrainyardProcess(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    process.log = log

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        return ready()

    try:
        wait_for(started, timeout, what=what)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.signal_group(signal.SIGKILL)  # whatever it left behind


@contextmanager
def worker_process(
    settings: Settings,
    name: str = "test-worker",
    concurrency: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[TrainyardProcess]:
    """Run a real Celery worker (`trainyard worker`) until the block ends; wait until it registers."""
    from sqlalchemy import select

    from shared.store.engine import Store
    from shared.store.models import Worker

    store = Store(settings.database_url)

    def registered() -> bool:
        alive = select(Worker).where(Worker.name.like(f"{name}@%"), Worker.stopped_at.is_(None))
        with store.session_scope() as session:
            return session.scalar(alive) is not None

    args = ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
    try:
        with trainyard_process(
            settings, args, registered, f"worker {name}", 90, extra_env
        ) as process:
            yield process
    finally:
        store.close()


@contextmanager
def web_process(settings: Settings, port: int | None = None) -> Iterator[str]:
    """Serve the app with gunicorn (`trainyard web`) until the block ends; yield its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/runs?limit=1", timeout=2):
                return True
        except OSError:
            return False

    args = ["web", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"]
    with trainyard_process(settings, args, answering, "web server", 60):
        yield url


class _Collector(HTMLParser):
    """Collect every element's tag, attributes and direct text, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("input", "img", "br", "meta", "link"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def find(html: str, tag: str, **attrs: str) -> list[dict[str, Any]]:
    """Return the elements with this tag whose attributes include `attrs` (`_` for `-`)."""
    collector = _Collector()
    collector.feed(html)
    wanted = {key.replace("_", "-"): value for key, value in attrs.items()}
    return [
        e
        for e in collector.elements
        if e["tag"] == tag and all(e["attrs"].get(k) == v for k, v in wanted.items())
    ]


def run_ids(html: str) -> list[int]:
    """The run ids listed in the runs table, in order."""
    return [int(e["attrs"]["data-run-id"]) for e in find(html, "tr") if "data-run-id" in e["attrs"]]


def page(client: FlaskClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """Read back an 8-bit grayscale, unfiltered PNG: width, height and the pixels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    raw = zlib.decompress(idat)
    width, height = size
    rows = [raw[r * (width + 1) : (r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


class RedisServer:
    """A Redis of a test's own on a loopback port, keeping nothing on disk: it can be killed and
    started again empty, as a broker that lost its data."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answering() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            return False

        wait_for(answering, 20, what=f"redis on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: every message it held is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A RedisServer, started, and killed when the block ends."""
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _postgres_bin(program: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's versioned folder."""
    found = shutil.which(program) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"))), None
    )
    assert found, f"{program} (PostgreSQL's server programs) is not installed"
    return found


class PostgresServer:
    """A PostgreSQL server of a test's own on a loopback port (trust auth, no fsync): it can be
    stopped the hard way, as a crash or a failover does, and started again with its data."""

    def __init__(self) -> None:
        # The server refuses to run as root: as root, it runs as the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="trainyard-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        self.port = free_port()
        user = "postgres" if self.as_user else os.environ.get("USER", "postgres")
        self.url = f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/postgres"
        self.data = self.folder / "data"
        subprocess.run(
            [*self.as_user, _postgres_bin("initdb"), "-D", str(self.data), "-A", "trust",
             "-U", user, "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, _postgres_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
             "-l", str(self.folder / "server.log"), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "start")

    def crash(self) -> None:
        """Stop at once (`immediate`): every connection is cut, nothing is shut down cleanly."""
        self._ctl("-m", "immediate", "stop")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgresServer, started; stopped and removed when the block ends."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.crash()
        shutil.rmtree(server.folder, ignore_errors=True)


def csrf_token(client: FlaskClient, path: str = "/runs/new") -> str:
    """The CSRF token of a form page (it also starts the session that token belongs to)."""
    fields = find(client.get(path).get_data(as_text=True), "input", name="csrf_token")
    assert fields, f"the form of {path} carries a CSRF token"
    return str(fields[0]["attrs"]["value"])


def form_data(token: str, **overrides: Any) -> dict[str, Any]:
    """A filled-in New run form: the quickstart's recipe, with `overrides`."""
    data: dict[str, Any] = {
        "csrf_token": token,
        "name": "from the form",
        "epochs": "5",
        "batch_size": "32",
        "learning_rate": "0.001",
        "optimizer": "adam",
        "hidden_units": "128",
        "dropout": "0.2",
        "normalize": "y",
        "validation_split": "0.0",
        "train_samples": "60000",
        "seed": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Everything the pages logged to the browser console: (page URL, type, text).
CONSOLE: list[tuple[str, str, str]] = []


def new_page(browser: Browser) -> Page:
    """A page in a context of its own, so each tab counts as visible and keeps polling; its
    console messages (CSP violations, failed loads) are kept in CONSOLE."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda message: CONSOLE.append((page.url, message.type, message.text)))
    return page


def assert_console_clean() -> None:
    """No page broke its Content-Security-Policy or failed to load anything (a favicon...)."""
    problems = [
        entry
        for entry in CONSOLE
        if "Content Security Policy" in entry[2] or "Failed to load resource" in entry[2]
    ]
    assert problems == [], problems


# The machine's RabbitMQ (guest/guest on 127.0.0.1:5672), for the tests that run on all three
# brokers.
RABBIT_URL = os.environ.get("TRAINYARD_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")


class RabbitNode:
    """A RabbitMQ node of a test's own (Debian's rabbitmq-server) on free loopback ports, with its
    data in a folder of its own: it can be stopped and started again, keeping its messages."""

    def __init__(self) -> None:
        # Debian's script runs the node as the rabbitmq user: its folder must be that user's.
        self.folder = Path(tempfile.mkdtemp(prefix="trainyard-rabbit-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "rabbitmq", "rabbitmq")
        self.port, self.dist_port = free_port(), free_port()
        self.name = f"trainyard{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        config = self.folder / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            # A training job holds its message for as long as it trains (RabbitMQ < 3.12).
            "consumer_timeout = 86400000\n"
        )
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.folder / "node.pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.folder / "feature_flags"),
            "RABBITMQ_QUORUM_DIR": str(self.folder / "quorum"),
            "RABBITMQ_GENERATED_CONFIG_DIR": str(self.folder / "config"),
            "RABBITMQ_SCHEMA_DIR": str(self.folder / "schema"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.folder / "plugins"),
            "ERL_CRASH_DUMP": str(self.folder / "erl_crash.dump"),
        }

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "enabled_plugins").write_text("[].\n")
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            ["rabbitmq-server"], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

        def answering() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError((self.folder / "server.log").read_text()[-3000:])
            try:
                from kombu import Connection

                with Connection(self.url, connect_timeout=1) as connection:
                    connection.ensure_connection(max_retries=1)
                return True
            except Exception:
                return False

        wait_for(answering, 90, interval=0.5, what=f"RabbitMQ node {self.name}")

    def stop(self, kill: bool = False) -> None:
        """Stop the node, or SIGKILL it with `kill`; its data stays in its folder."""
        if self.process is None:
            return
        if kill:
            # The Erlang VM writes its pid here; its command line does not name the node.
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.folder / "node.pid").read_text().strip()), signal.SIGKILL)
        else:
            subprocess.run(
                ["rabbitmqctl", "-n", self.name, "stop"], env=self.env(), capture_output=True,
                timeout=120, check=False,
            )  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

        def closed() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) != 0

        wait_for(closed, 60, what=f"RabbitMQ node {self.name} to stop")


@contextmanager
def rabbit_node() -> Iterator[RabbitNode]:
    """A RabbitNode, started; stopped and removed, its Erlang processes too, when the block ends."""
    node = RabbitNode()
    node.start()
    try:
        yield node
    finally:
        node.stop(kill=True)
        shutil.rmtree(node.folder, ignore_errors=True)
