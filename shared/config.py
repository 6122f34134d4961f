"""Every setting trainyard reads, each read once from the environment with its type and default.

A setting is a field of `Settings` whose metadata names its environment variable. `from_env()` reads
them all; `to_env()` writes them back, so a child process gets exactly the settings of its parent.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from shared.cpus import available_cpus

FALSE_WORDS = ("0", "false", "no", "off")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _parse(name: str, kind: Any, raw: str) -> Any:
    """Read one environment value as the setting's type, naming the variable when it is wrong."""
    if kind in (str, str | None):
        return raw
    if kind in (Path, Path | None):
        return Path(raw).resolve()
    if kind is bool:
        return raw.strip().lower() not in FALSE_WORDS
    try:
        return kind(raw)
    except ValueError as exc:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def env(name: str) -> dict[str, str]:
    """A setting's field metadata: the environment variable it is read from."""
    return {"env": name}


@dataclass(frozen=True)
class Settings:
    """Typed settings; `Settings.from_env()` builds them, tests build their own with `replace`."""

    # Folder for the embedded defaults: the SQLite results store, the SQLite broker, the MNIST cache.
    home: Path = field(
        default_factory=lambda: Path("var").resolve(), metadata=env("TRAINYARD_HOME")
    )
    # SQLAlchemy URL of the results store; a SQLite file under `home` when unset.
    database_url: str = field(default="", metadata=env("TRAINYARD_DATABASE_URL"))
    # "transaction" when the database URL is a transaction-pooling PgBouncer: no server-side
    # prepared statements (see docs/deploying.md). Empty: a direct connection.
    database_pooler: str = field(default="", metadata=env("TRAINYARD_DATABASE_POOLER"))
    # Celery broker URL; Celery's SQLAlchemy transport on a SQLite file under `home` when unset.
    broker_url: str = field(default="", metadata=env("TRAINYARD_BROKER_URL"))
    # Folder holding the four MNIST IDX files; when unset, a download cache under `home`.
    data_dir: Path | None = field(default=None, metadata=env("TRAINYARD_DATA_DIR"))
    # May the worker download MNIST when `data_dir` is unset (needs internet).
    allow_download: bool = field(default=True, metadata=env("TRAINYARD_ALLOW_DOWNLOAD"))
    # Where MNIST is downloaded from when `data_dir` is unset; any URL urllib opens (file:// too).
    mnist_mirror: str = field(
        default="https://storage.googleapis.com/cvdf-datasets/mnist/",
        metadata=env("TRAINYARD_MNIST_MIRROR"),
    )
    # Flask secret (sessions, CSRF). When unset, one is made once and kept in `home/secret_key`
    # (mode 0600), so every web process on this machine shares it.
    secret_key: str = field(default="", metadata=env("TRAINYARD_SECRET_KEY"))
    # The key to trainyard: API writes need it as a bearer token, dashboard writes a session
    # signed in with it. Everything is open when unset.
    api_token: str | None = field(default=None, metadata=env("TRAINYARD_API_TOKEN"))
    # With a token set, reads (dashboard pages and API GETs) need it too.
    private: bool = field(default=False, metadata=env("TRAINYARD_PRIVATE"))
    # A token for Prometheus alone: when set, /metrics needs it (or the API token) as a bearer.
    metrics_token: str | None = field(default=None, metadata=env("TRAINYARD_METRICS_TOKEN"))
    # How processes log: `text` (a line naming the run) or `json` (one object a line).
    log_format: str = field(default="text", metadata=env("TRAINYARD_LOG_FORMAT"))
    # Reverse proxies in front of the web app whose X-Forwarded-* headers are trusted (0: none).
    trusted_proxies: int = field(default=0, metadata=env("TRAINYARD_TRUSTED_PROXIES"))
    # Runs that may wait in the queue at once; a submit beyond it gets 429.
    max_queued_runs: int = field(default=1000, metadata=env("TRAINYARD_MAX_QUEUED_RUNS"))
    # Most runs one study may queue at once (configurations x seeds).
    max_study_runs: int = field(default=200, metadata=env("TRAINYARD_MAX_STUDY_RUNS"))
    # Most runs one bulk request (POST /api/runs/bulk, the runs page's bulk actions) may touch.
    bulk_max: int = field(default=1000, metadata=env("TRAINYARD_BULK_MAX"))
    # Largest estimated compute of one job, in TFLOP-equivalents (see shared/domain/cost.py).
    max_job_tflop: float = field(default=400.0, metadata=env("TRAINYARD_MAX_JOB_TFLOP"))
    # Largest request body the web app accepts, in bytes.
    max_body_bytes: int = field(default=64 * 1024, metadata=env("TRAINYARD_MAX_BODY_BYTES"))
    # Largest body of a prediction request (1,000 images as JSON, or one PNG drawing), in bytes.
    predict_max_body_bytes: int = field(
        default=8 * 1024 * 1024, metadata=env("TRAINYARD_PREDICT_MAX_BODY_BYTES")
    )
    # Seconds a worker's lease on a run lasts without renewal; then the run is taken back.
    heartbeat_timeout: float = field(default=30.0, metadata=env("TRAINYARD_HEARTBEAT_TIMEOUT"))
    # Seconds between lease renewals and worker heartbeats (and the sweeps that watch them).
    heartbeat_interval: float = field(default=3.0, metadata=env("TRAINYARD_HEARTBEAT_INTERVAL"))
    # Attempts a run may lose (its worker vanished) before it fails.
    max_attempts: int = field(default=3, metadata=env("TRAINYARD_MAX_ATTEMPTS"))
    # Largest per-epoch checkpoint kept in the store; a larger model resumes from its first epoch.
    checkpoint_max_bytes: int = field(
        default=64 * 1024 * 1024, metadata=env("TRAINYARD_CHECKPOINT_MAX_BYTES")
    )
    # Jobs one worker runs at once (its pool processes); 0: one per CPU the worker owns, which
    # gives the most jobs an hour (`make bench` measures the layouts).
    concurrency: int = field(default=0, metadata=env("TRAINYARD_CONCURRENCY"))
    # TensorFlow intra-op threads per job; 0: the worker's CPUs shared among its jobs.
    tf_threads: int = field(default=0, metadata=env("TRAINYARD_TF_THREADS"))
    # Hard time limit of one training task, in seconds.
    task_time_limit: int = field(default=6 * 3600, metadata=env("TRAINYARD_TASK_TIME_LIMIT"))
    # Name of the Celery queue training jobs go to.
    queue: str = field(default="training", metadata=env("TRAINYARD_QUEUE"))
    # Base URL of a trainyard server, for the command-line client.
    url: str = field(default="http://127.0.0.1:8000", metadata=env("TRAINYARD_URL"))

    def __post_init__(self) -> None:
        # The embedded defaults live under `home` unless a URL says otherwise.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'trainyard.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{self.home / 'broker.db'}")

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from TRAINYARD_* environment variables."""
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata["env"]
            raw = _env(name)
            if raw is not None:
                values[setting.name] = _parse(name, hints[setting.name], raw)
        settings = cls(**values)
        if not settings.secret_key:
            settings = replace(settings, secret_key=stored_secret(settings.home / "secret_key"))
        return settings

    def to_env(self) -> dict[str, str]:
        """The TRAINYARD_* variables that give a child process exactly these settings."""
        return {
            setting.metadata["env"]: _format(getattr(self, setting.name))
            for setting in fields(self)
            if getattr(self, setting.name) is not None
        }

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed."""
        return replace(self, **changes)

    def jobs_at_once(self) -> int:
        """The worker's pool size: the setting, or one job per CPU it owns."""
        return self.concurrency or available_cpus()

    def threads_per_job(self) -> int:
        """TensorFlow's intra-op threads in each pool process."""
        return self.tf_threads or max(1, available_cpus() // self.jobs_at_once())

    @property
    def mnist_cache_dir(self) -> Path:
        """Where a downloaded MNIST is kept."""
        return self.home / "mnist"


def stored_secret(path: Path) -> str:
    """The secret kept in `path`, made (random, mode 0600) by the first process to ask.

    Written to a private temporary file and linked into place, so a process that reads it
    concurrently sees the whole secret or none, and two makers never both win.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temporary.unlink()
    return path.read_text().strip()


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with its TRAINYARD_* variables replaced by `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    return {**env, **settings.to_env(), **extra}


_settings: Settings | None = None


def get_settings() -> Settings:
    """Return this process's settings, read from the environment on first use.

    Only entry points (the CLI, the Celery app module, the WSGI module) call this; everything they
    build is handed its settings explicitly.
    """
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings
