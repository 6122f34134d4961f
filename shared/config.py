"""Every setting trainyard reads, each read once from the environment with its type and default."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = _env_str(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env_str(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _home() -> Path:
    return Path(_env_str("TRAINYARD_HOME", "var")).resolve()


@dataclass(frozen=True)
class Settings:
    """Typed settings; `Settings.from_env()` builds them, tests build their own with `replace`."""

    # Folder for the embedded defaults: the SQLite results store, the SQLite broker, the MNIST cache.
    home: Path = field(default_factory=_home)
    # SQLAlchemy URL of the results store; a SQLite file under `home` when unset.
    database_url: str = ""
    # Celery broker URL; Celery's SQLAlchemy transport on a SQLite file under `home` when unset.
    broker_url: str = ""
    # Folder holding the four MNIST IDX files; when unset, a download cache under `home`.
    data_dir: Path | None = None
    # May the worker download MNIST when `data_dir` is unset (needs internet).
    allow_download: bool = True
    # Where MNIST is downloaded from when `data_dir` is unset; any URL urllib opens (file:// too).
    mnist_mirror: str = "https://storage.googleapis.com/cvdf-datasets/mnist/"
    # Flask secret (sessions, CSRF). Random per process when unset: fine for one process only.
    secret_key: str = ""
    # Bearer token every API write must carry; writes are open when unset.
    api_token: str | None = None
    # Largest request body the web app accepts, in bytes.
    max_body_bytes: int = 64 * 1024
    # Seconds without a heartbeat after which a running run is taken as lost.
    heartbeat_timeout: float = 120.0
    # Seconds between worker heartbeats (run row and worker registry).
    heartbeat_interval: float = 5.0
    # TensorFlow intra-op threads per worker process; 0 sizes them to the CPUs the process owns.
    tf_threads: int = 0
    # Hard time limit of one training task, in seconds.
    task_time_limit: int = 6 * 3600
    # Name of the Celery queue training jobs go to.
    queue: str = "training"
    # Base URL of a trainyard server, for the command-line client.
    url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from TRAINYARD_* environment variables."""
        home = _home()
        data_dir = _env_str("TRAINYARD_DATA_DIR")
        return cls(
            home=home,
            database_url=_env_str("TRAINYARD_DATABASE_URL", f"sqlite:///{home / 'trainyard.db'}"),
            broker_url=_env_str("TRAINYARD_BROKER_URL", f"sqla+sqlite:///{home / 'broker.db'}"),
            data_dir=Path(data_dir).resolve() if data_dir else None,
            allow_download=_env_str("TRAINYARD_ALLOW_DOWNLOAD", "1") not in ("0", "false", "no"),
            mnist_mirror=_env_str(
                "TRAINYARD_MNIST_MIRROR", "https://storage.googleapis.com/cvdf-datasets/mnist/"
            ),
            secret_key=_env_str("TRAINYARD_SECRET_KEY") or secrets.token_hex(32),
            api_token=_env_str("TRAINYARD_API_TOKEN"),
            max_body_bytes=_env_int("TRAINYARD_MAX_BODY_BYTES", 64 * 1024),
            heartbeat_timeout=_env_float("TRAINYARD_HEARTBEAT_TIMEOUT", 120.0),
            heartbeat_interval=_env_float("TRAINYARD_HEARTBEAT_INTERVAL", 5.0),
            tf_threads=_env_int("TRAINYARD_TF_THREADS", 0),
            task_time_limit=_env_int("TRAINYARD_TASK_TIME_LIMIT", 6 * 3600),
            queue=_env_str("TRAINYARD_QUEUE", "training"),
            url=_env_str("TRAINYARD_URL", "http://127.0.0.1:8000"),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with some settings changed."""
        return replace(self, **changes)

    @property
    def mnist_cache_dir(self) -> Path:
        """Where a downloaded MNIST is kept."""
        return self.home / "mnist"


_settings: Settings | None = None


def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, and processes that built their own)."""
    global _settings
    _settings = settings
