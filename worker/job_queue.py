"""The Huey queue that carries job ids to workers: SQLite in the data directory, or Redis when configured.

The queue only says "job X is waiting"; the job store decides whether X still runs (a cancelled or deleted job's
message is skipped), so a lost or duplicated message cannot lose or double-run a job.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from engine.errors import AdapterLabError, ConfigError
from worker import settings

log = logging.getLogger("adapterlab.worker")


class QueueUnavailable(AdapterLabError):
    """The queue (Redis, or the SQLite queue file) cannot be reached just now."""

    kind = "queue error"


_lock = threading.Lock()
_queues: dict[tuple[str, str], tuple[Huey, TaskWrapper]] = {}


def run_job(job_id: str) -> None:
    """The Huey task: train job `job_id` in this worker (torch is imported only here, not by submitters); a job
    its stopping worker handed back is queued again for the next one."""
    from worker.models import JobState
    from worker.runner import run_job as run

    if run(job_id) == JobState.INTERRUPTED:
        requeue(job_id)


def _queue() -> tuple[Huey, TaskWrapper]:
    redis_url = settings.redis_url()
    key = (redis_url or str(settings.queue_path()), settings.queue_name())
    with _lock:
        if key not in _queues:
            try:
                huey: Huey = RedisHuey(key[1], url=redis_url, results=False) if redis_url else \
                    SqliteHuey(key[1], filename=key[0], results=False)
            except ValueError as exc:  # redis-py's answer to a malformed URL
                raise ConfigError(f"ADAPTERLAB_REDIS_URL {redis_url!r} is not a Redis URL ({exc}).") from exc
            _queues[key] = huey, huey.task(name="run_job")(run_job)
        return _queues[key]


def location() -> str:
    """Where the queue is, for messages (a Redis password is masked)."""
    url = settings.redis_url()
    if not url:
        return str(settings.queue_path())
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def get_huey() -> Huey:
    return _queue()[0]


def enqueue(job_id: str) -> None:
    """Put a job id on the queue; a queue that cannot be reached is a clear error (the job stays saved)."""
    run = _queue()[1]
    try:
        run(job_id)
    except Exception as exc:  # redis/sqlite raise many types; all mean "not queued now"
        raise QueueUnavailable(f"Job {job_id} is saved but could not be queued at {location()} "
                               f"({type(exc).__name__}: {exc}); a running worker queues it once the queue is "
                               "back.") from exc


def requeue(job_id: str) -> None:
    """Queue a job again after its worker stopped; if the queue is away, the next worker start queues it."""
    try:
        enqueue(job_id)
    except QueueUnavailable as exc:
        log.warning("%s", exc)


def pending_job_ids() -> set[str]:
    """Job ids with a message waiting in the queue."""
    huey = get_huey()
    try:
        pending = huey.pending()
    except Exception as exc:  # the queue's client raises many types; all mean "cannot read it now"
        raise QueueUnavailable(f"The queue at {location()} cannot be read ({type(exc).__name__}: {exc}).") from exc
    return {task.args[0] for task in pending if task.name == "run_job" and task.args}
