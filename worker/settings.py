"""Where jobs live and how workers behave, read from the environment on every call (so tests can change it)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.adapterlab"
QUEUE_NAME = "adapterlab"


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def data_dir() -> Path:
    """`$ADAPTERLAB_HOME`: job database, queue database, uploads, adapters and checkpoints."""
    path = Path(os.environ.get("ADAPTERLAB_HOME") or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`$ADAPTERLAB_DATABASE_URL` (any SQLAlchemy URL), else `jobs.db` in the data directory."""
    return os.environ.get("ADAPTERLAB_DATABASE_URL") or f"sqlite:///{data_dir() / 'jobs.db'}"


def redis_url() -> str | None:
    """`$ADAPTERLAB_REDIS_URL`: when set, the queue is in Redis so workers on several machines share it."""
    return os.environ.get("ADAPTERLAB_REDIS_URL") or None


def queue_name() -> str:
    """`$ADAPTERLAB_QUEUE_NAME`: lets several AdapterLab installations share one Redis."""
    return os.environ.get("ADAPTERLAB_QUEUE_NAME") or QUEUE_NAME


def queue_path() -> Path:
    """The embedded SQLite queue used when no Redis URL is set."""
    return data_dir() / "queue.db"


def uploads_dir() -> Path:
    return data_dir() / "uploads"


def adapters_dir() -> Path:
    return data_dir() / "adapters"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def device() -> str | None:
    """`$ADAPTERLAB_DEVICE` (`cpu`, `cuda`, `cuda:1`; set by `adapterlab worker --gpu/--cpu`), else automatic."""
    return os.environ.get("ADAPTERLAB_DEVICE") or None


def heartbeat_seconds() -> float:
    """How often a running job's worker proves it is alive (and notices a cancel)."""
    return _number("ADAPTERLAB_HEARTBEAT_SECONDS", 1.0)


def stale_after_seconds() -> float:
    """A running job whose heartbeat is older than this lost its worker and is re-queued."""
    return _number("ADAPTERLAB_STALE_AFTER_SECONDS", 60.0)


def max_attempts() -> int:
    """How many times a job may be started before a crashing job is marked failed."""
    return int(_number("ADAPTERLAB_MAX_ATTEMPTS", 3))


def progress_seconds() -> float:
    """The least time between two stored progress rows (epoch ends are always stored)."""
    return _number("ADAPTERLAB_PROGRESS_SECONDS", 1.0)
