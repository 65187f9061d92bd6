"""Crash recovery: jobs whose worker died go back to the queue, and waiting jobs missing from it are queued again."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlalchemy import select

from worker import db, settings, store
from worker.job_queue import pending_job_ids, requeue
from worker.models import ACTIVE, WAITING, Job, JobKind, JobState, utcnow

log = logging.getLogger("adapterlab.worker")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_dead(job: Job, me: str, starting: bool) -> bool:
    """A job's worker is dead if its heartbeat is stale, or it was a process on this machine that is gone.

    When this worker starts, a job held under its own id belongs to an earlier process that had the same pid
    (a container restart), so that one is dead too.
    """
    if job.worker_id == me:
        return starting
    stale = utcnow() - timedelta(seconds=settings.stale_after_seconds())
    if job.heartbeat_at is None or job.heartbeat_at < stale:
        return True
    host, _, pid = (job.worker_id or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def recover(me: str, starting: bool = False) -> list[str]:
    """Release the jobs of dead workers (interrupted and re-queued, or failed after too many attempts)."""
    with db.session() as s:
        candidates = s.scalars(select(Job.id).where(Job.kind == JobKind.TRAIN, Job.state.in_(ACTIVE))).all()
    released = []
    for job_id in candidates:
        with db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
            if job is None or job.state not in ACTIVE or not _worker_dead(job, me, starting):
                continue
            lost_worker = job.worker_id
            state = store.release(s, job, graceful=False)
        log.warning("job %s: worker %s is gone; job %s", job_id, lost_worker, state)
        if state == JobState.INTERRUPTED:
            requeue(job_id)
        released.append(job_id)
    return released


def orphans() -> list[str]:
    """Waiting jobs that have no queue message (the queue was lost, or was away at submit), oldest first."""
    pending = pending_job_ids()
    with db.session() as s:
        waiting = s.scalars(select(Job.id).where(Job.kind == JobKind.TRAIN, Job.state.in_(WAITING))
                            .order_by(Job.created_at)).all()
    return [job_id for job_id in waiting if job_id not in pending]


def requeue_orphans() -> list[str]:
    """Queue every waiting job that has no queue message (a worker starting)."""
    found = orphans()
    for job_id in found:
        requeue(job_id)
    return found


class OrphanWatch:
    """The running worker's check: the job store is the source of truth, so a waiting job missing from the queue
    in two rounds running (a Redis restarted without persistence loses its messages) is queued again. One round
    is not enough: a job just taken from the queue is missing until its worker claims it. A second message for
    a job is harmless: only one claim of it succeeds."""

    def __init__(self) -> None:
        self.missing: set[str] = set()

    def check(self) -> list[str]:
        found = orphans()
        again = [job_id for job_id in found if job_id in self.missing]
        for job_id in again:
            log.warning("job %s: waiting but not in the queue (was the queue restarted?); queued again", job_id)
            requeue(job_id)
        self.missing = set(found) - set(again)
        return again
