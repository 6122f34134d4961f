"""Servers of a test's own, on free loopback ports, to crash and start again: a Redis that keeps
nothing, a PostgreSQL that can be stopped the hard way, a RabbitMQ node that keeps its messages,
a PgBouncer in front of the machine's PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port
from tests.support.waiting import wait_for


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
        with (self.folder / "server.log").open("ab") as log:  # the server keeps its own copy
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


@contextmanager
def pgbouncer_server(upstream: str, pool_size: int = 40) -> Iterator[str]:
    """A PgBouncer of our own on a loopback port, transaction pooling `pool_size` server
    connections, in front of the PostgreSQL server `upstream` names (any database, trust auth):
    yield its URL (`upstream`'s user and database, its host and port)."""
    from sqlalchemy.engine import make_url

    server = make_url(upstream)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    (folder / "userlist.txt").write_text(f'"{server.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 2000\n"
        f"default_pool_size = {pool_size}\nmax_db_connections = {pool_size}\n"
        "reserve_pool_size = 0\nserver_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "log_connections = 0\nlog_disconnections = 0\n"
    )
    user = []
    if os.geteuid() == 0:  # PgBouncer will not run as root
        user = ["-u", "nobody"]
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, "nobody")
    process = subprocess.Popen(
        ["pgbouncer", *user, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # a full pipe would stall it
    )  # fmt: skip
    try:

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"pgbouncer exited with {process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        wait_for(listening, 10, interval=0.1, what="pgbouncer to listen")
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
