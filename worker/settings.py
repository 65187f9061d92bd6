"""Where jobs live and how workers behave, read from the environment on every call (so tests can change it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.errors import ConfigError

DEFAULT_HOME = "~/.adapterlab"
QUEUE_NAME = "adapterlab"
CONTAINER_ENV = "ADAPTERLAB_CONTAINER"


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def flag(name: str) -> bool:
    """An on/off environment setting: `1`, `true`, `yes` or `on` mean on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def in_container() -> bool:
    """`$ADAPTERLAB_CONTAINER`, set by the Docker image: messages then give the fix as `docker run` options."""
    return flag(CONTAINER_ENV)


def _home() -> Path:
    return Path(os.environ.get("ADAPTERLAB_HOME") or DEFAULT_HOME).expanduser().resolve()


def data_dir() -> Path:
    """`$ADAPTERLAB_HOME`: job database, queue database, uploads, adapters and checkpoints."""
    path = _home()
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_data_dir() -> None:
    """Create the data directory and prove it writable, for `serve` and `worker` to call first: otherwise their
    first write (the worker's log, the job store) dies later with a bare PermissionError. The usual cause is a
    bind-mounted host folder that Docker created, which belongs to root."""
    path = _home()
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise ConfigError(_unwritable_message(path, exc)) from exc


def _unwritable_message(path: Path, exc: OSError) -> str:
    uid = os.getuid()
    problem = f"Cannot write to the data directory {path} as uid {uid} ({exc.strerror or exc})"
    if in_container():
        return (f"{problem}: a host folder mounted there must be writable by uid {uid} (Docker creates a missing one "
                f"as root). On the host, run `sudo chown -R {uid}:{uid} HOSTDIR` (HOSTDIR: the folder given to -v), or "
                f"use a named volume instead: -v adapterlab-data:{path}")
    return (f"{problem}. Make it yours with `sudo chown -R {uid}:{uid} {path}`, or set ADAPTERLAB_HOME to a folder "
            "you can write.")


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


def reviews_dir() -> Path:
    """Per job: every validation row's prediction, the suspicious labels and each test evaluation's rows (the
    error browser). Beside the adapter, not in it: the folder is shared and pushed, these hold the data's text."""
    return data_dir() / "reviews"


def device() -> str | None:
    """`$ADAPTERLAB_DEVICE` (`cpu`, `cuda`, `cuda:1`; set by `adapterlab worker --gpu/--cpu`), else automatic."""
    return os.environ.get("ADAPTERLAB_DEVICE") or None


def heartbeat_seconds() -> float:
    """How often a running job's worker proves it is alive (and notices a cancel)."""
    return _number("ADAPTERLAB_HEARTBEAT_SECONDS", 1.0)


def stale_after_seconds() -> float:
    """A running job whose heartbeat is older than this lost its worker and is re-queued."""
    return _number("ADAPTERLAB_STALE_AFTER_SECONDS", 60.0)


def store_retry_seconds() -> float:
    """How long a running job's writes wait for an unreachable job store (a database restarting) before the
    job fails: training goes on once it answers again."""
    return _number("ADAPTERLAB_STORE_RETRY_SECONDS", 300.0)


def max_attempts() -> int:
    """How many times a job may be started before a crashing job is marked failed."""
    return int(_number("ADAPTERLAB_MAX_ATTEMPTS", 3))


def checkpoint_seconds() -> float:
    """How much training time a killed worker can lose at most: a running job also saves its checkpoint within
    an epoch this often (`ADAPTERLAB_CHECKPOINT_MINUTES`, default 5), besides after every epoch."""
    return 60 * _number("ADAPTERLAB_CHECKPOINT_MINUTES", 5.0)


def progress_seconds() -> float:
    """The least time between two stored progress rows (epoch ends are always stored)."""
    return _number("ADAPTERLAB_PROGRESS_SECONDS", 1.0)
