"""The job state changes a worker makes, each one transaction.

A worker only writes to a job it holds (`worker_id` matches and the state is running or cancelling): once a job is
taken from it (a stale heartbeat re-queued it, a user deleted it) its late writes change nothing.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from engine.disk import is_disk_full
from engine.training import Progress, TrainResult
from worker import db, settings
from worker.models import ACTIVE, WAITING, Job, JobEpoch, JobKind, JobState, JobStep, utcnow

log = logging.getLogger("adapterlab.worker")
T = TypeVar("T")


def _unreachable(exc: DBAPIError) -> bool:
    """The database is away (refused, restarting, the connection cut) or busy, not a bad statement: SQLite
    calls both `OperationalError`, so only its "locked" counts there."""
    if exc.connection_invalidated:
        return True
    if isinstance(exc.orig, sqlite3.Error):
        return "locked" in str(exc.orig) or "busy" in str(exc.orig)
    return isinstance(exc, OperationalError | InterfaceError)


def retried(write: Callable[..., T], also_when_full: bool = False) -> Callable[..., T]:
    """A running job's write, tried again while the job store is unreachable (or, `also_when_full`, while its
    disk is full), for `store_retry_seconds`.

    Each write is safe to repeat: a progress or epoch row replaces any at or after its step, and state changes
    apply only to a job the worker still holds, so a retry after a write that did land duplicates nothing."""
    @functools.wraps(write)
    def wrapper(*args, **kwargs) -> T:
        deadline, delay = time.monotonic() + settings.store_retry_seconds(), 0.5
        while True:
            try:
                return write(*args, **kwargs)
            except DBAPIError as exc:
                waits = _unreachable(exc) or (also_when_full and is_disk_full(exc))
                if not waits or time.monotonic() >= deadline:
                    raise
                log.warning("job store unreachable or full (%s); %s tried again in %.1f s", type(exc.orig).__name__,
                            write.__name__, delay)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
    return wrapper


def _held(job_id: str, worker_id: str):
    return (Job.id == job_id) & (Job.worker_id == worker_id) & Job.state.in_(ACTIVE)


def claim(job_id: str, worker_id: str, device: str) -> Job | None:
    """Take a waiting job for this worker (one more attempt); None if it is cancelled, deleted or taken.

    A search's first trial to start starts the search (and its budget's clock)."""
    now = utcnow()
    with db.session() as s:
        taken = s.execute(
            update(Job).where(Job.id == job_id, Job.kind == JobKind.TRAIN, Job.state.in_(WAITING))
            .values(state=JobState.RUNNING, worker_id=worker_id, device=device, heartbeat_at=now,
                    attempts=Job.attempts + 1, error=None, error_kind=None, traceback=None, phase=None)
        ).rowcount
        if not taken:
            return None
        job = s.get(Job, job_id)
        if job.started_at is None:
            job.started_at = now
        if job.parent_id:
            s.execute(update(Job).where(Job.id == job.parent_id, Job.state == JobState.QUEUED).values(
                state=JobState.RUNNING, started_at=now))
        return job


def heartbeat(job_id: str, worker_id: str) -> str | None:
    """Mark the job alive; return its state, or None when this worker no longer holds it."""
    with db.session() as s:
        if not s.execute(update(Job).where(_held(job_id, worker_id)).values(heartbeat_at=utcnow())).rowcount:
            return None
        return s.scalar(select(Job.state).where(Job.id == job_id))


@retried
def record_progress(job_id: str, worker_id: str, attempt: int, p: Progress) -> None:
    """Store a progress row; rows at or after its step (left by an earlier attempt) are replaced."""
    with db.session() as s:
        held = s.execute(update(Job).where(_held(job_id, worker_id)).values(
            progress=min(1.0, p.step / max(1, p.total_steps)), eta_seconds=p.eta_seconds, phase=None)).rowcount
        if held:
            s.execute(delete(JobStep).where(JobStep.job_id == job_id, JobStep.step >= p.step))
            s.add(JobStep(job_id=job_id, attempt=attempt, step=p.step, total_steps=p.total_steps, epoch=p.epoch,
                          loss=p.loss, learning_rate=p.learning_rate, samples_per_second=p.samples_per_second,
                          eta_seconds=p.eta_seconds))


@retried
def record_phase(job_id: str, worker_id: str, phase: str) -> None:
    """What the job does before its first step, in words (cleared by the first progress row)."""
    with db.session() as s:
        s.execute(update(Job).where(_held(job_id, worker_id)).values(phase=phase[:200]))


@retried
def record_epoch(job_id: str, worker_id: str, epoch: int, metrics: dict) -> None:
    """Store one epoch's validation metrics; an earlier attempt's rows for this epoch on are replaced."""
    with db.session() as s:
        if s.scalar(select(Job.id).where(_held(job_id, worker_id))) is None:
            return
        s.execute(delete(JobEpoch).where(JobEpoch.job_id == job_id, JobEpoch.epoch >= epoch))
        s.add(JobEpoch(job_id=job_id, epoch=epoch, train_loss=metrics["train_loss"], loss=metrics["loss"],
                       accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                       metrics=metrics))


@retried
def restart_with_batch_size(job_id: str, worker_id: str, batch_size: int) -> None:
    """After running out of memory: train from scratch with a smaller batch (old progress no longer applies)."""
    with db.session() as s:
        s.execute(update(Job).where(_held(job_id, worker_id)).values(batch_size=batch_size, progress=0.0,
                                                                     eta_seconds=None))
        s.execute(delete(JobStep).where(JobStep.job_id == job_id))
        s.execute(delete(JobEpoch).where(JobEpoch.job_id == job_id))


@retried
def finish(job_id: str, worker_id: str, result: TrainResult, adapter_dir: str,
           trial: dict | None = None) -> str | None:
    """Record a finished training: `succeeded`, or `cancelled` with the best adapter so far. A search's trial
    that its search stopped early (`trial["stopped"]`: pruned, or out of time) succeeded with its best epoch."""
    state = JobState.CANCELLED if result.cancelled and not (trial or {}).get("stopped") else JobState.SUCCEEDED
    values = {"state": state, "finished_at": utcnow(), "adapter_dir": adapter_dir, "labels": result.labels,
              "metrics": result.metrics, "best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
              "samples_per_second": result.train_samples_per_second, "data_report": result.data_report,
              "eta_seconds": None, **({"trial": trial} if trial else {})}
    if not result.cancelled:
        values["progress"] = 1.0
    with db.session() as s:
        return state if s.execute(update(Job).where(_held(job_id, worker_id)).values(**values)).rowcount else None


@functools.partial(retried, also_when_full=True)  # a failure is recorded once space is freed
def fail(job_id: str, worker_id: str, kind: str, message: str, traceback: str | None) -> None:
    with db.session() as s:
        s.execute(update(Job).where(_held(job_id, worker_id)).values(
            state=JobState.FAILED, finished_at=utcnow(), error_kind=kind, error=message, traceback=traceback,
            eta_seconds=None))


def release(s: Session, job: Job, graceful: bool) -> str:
    """A held job whose worker stopped: back in the queue as `interrupted`, or ended.

    A cancelling job ends `cancelled`; after `max_attempts` crashes the job `failed` (a graceful worker stop is
    not the job's fault and does not count).
    """
    job.eta_seconds = None
    if job.state == JobState.CANCELLING:
        job.state, job.finished_at = JobState.CANCELLED, utcnow()
    elif not graceful and job.attempts >= settings.max_attempts():
        job.state, job.finished_at, job.error_kind = JobState.FAILED, utcnow(), "worker lost"
        job.error = (f"The worker stopped while running this job {job.attempts} times (last: {job.worker_id}); "
                     "it was not started again. Retry it once the cause (memory, machine) is fixed.")
    else:
        job.state = JobState.INTERRUPTED
    s.flush()
    return job.state


@retried
def release_held(job_id: str, worker_id: str) -> str | None:
    """This worker is shutting down: give its job back to the queue."""
    with db.session() as s:
        job = s.scalar(select(Job).where(_held(job_id, worker_id)).with_for_update())
        return release(s, job, graceful=True) if job else None
