"""Run one job with the engine: claim it, train with progress and heartbeats, record how it ended."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import threading
import time
import traceback

import torch

from engine.disk import disk_full_message, is_disk_full
from engine.errors import AdapterLabError
from engine.training import Progress, TrainConfig, TrainResult, pick_device, train
from worker import search, settings, store
from worker.models import Job, JobState

log = logging.getLogger("adapterlab.worker")
shutdown = threading.Event()  # set when this worker process is stopping: the running job goes back to the queue


def worker_id() -> str:
    """`host:pid`: unique among live workers, and tells a restarted worker which dead process held a job."""
    return f"{socket.gethostname()}:{os.getpid()}"


def device() -> str:
    """The device this worker trains on: the configured one, else a GPU if there is one."""
    return str(pick_device(settings.device()))


class Heartbeat(threading.Thread):
    """Proves the worker alive while its job trains, and turns a cancel request into `should_stop()`."""

    def __init__(self, job_id: str, worker: str) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.worker = job_id, worker
        self.cancelled = threading.Event()  # the user asked to cancel
        self.lost = threading.Event()  # the job is no longer ours (deleted, or re-queued as stale)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(settings.heartbeat_seconds()):
            try:
                state = store.heartbeat(self.job_id, self.worker)
            except Exception:  # the database may be briefly away; the next beat tries again
                log.exception("job %s: heartbeat failed", self.job_id)
                continue
            if state is None:
                self.lost.set()
            elif state == JobState.CANCELLING:
                self.cancelled.set()

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or self.lost.is_set() or shutdown.is_set()

    def stop(self) -> None:
        self._done.set()
        self.join()


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def failure(exc: BaseException, job: Job) -> tuple[str, str]:
    """(error kind, one-line message a user can act on) for an exception that ended a training."""
    if isinstance(exc, AdapterLabError):
        return exc.kind, str(exc)
    if is_disk_full(exc):  # the job store's own writes (SQLite on the same disk)
        return "disk full", disk_full_message(settings.data_dir())
    if is_out_of_memory(exc):
        asked = job.spec["batch_size"]
        tried = f" (retried after running out at {asked})" if job.batch_size != asked else ""
        return "out of memory", (f"Out of GPU memory at batch size {job.batch_size}{tried}. Lower the batch size "
                                 "or max length, or train on a GPU with more memory.")
    first_line = next(iter(str(exc).strip().splitlines()), "")
    return "internal error", f"Training stopped by an unexpected error: {type(exc).__name__}: {first_line}"


def _config(job: Job, dev: str) -> TrainConfig:
    home = settings.data_dir()
    spec = dict(job.spec)
    spec["data"] = str(home / spec["data"])
    spec["validation"] = str(home / spec["validation"]) if spec.get("validation") else None
    spec["batch_size"] = job.batch_size
    validation = job.validation_source or {}
    return TrainConfig.from_settings(spec, output=str(settings.adapters_dir() / job.id), device=dev,
                                     adapter_name=job.name, data_name=_source_name(job.data_source),
                                     validation_name=_source_name(validation))


def _source_name(source: dict) -> str | None:
    """The name the user knows a snapshot by: the uploaded file's name, or the hub dataset's."""
    if source.get("kind") == "hub":
        return source["name"] + (f":{source['config']}" if source.get("config") else "")
    return source.get("filename")


def _train(job: Job, me: str, beat: Heartbeat, dev: str, hooks: search.TrialHooks | None) -> TrainResult:
    """Train, resuming from the job's checkpoint; out of GPU memory, try once more with half the batch.
    A search's trial also reports each epoch to its study (`hooks`), which may stop it."""
    last_stored = 0.0

    def on_progress(p: Progress) -> None:
        nonlocal last_stored
        epoch_end = p.epoch == int(p.epoch)
        if epoch_end or time.monotonic() - last_stored >= settings.progress_seconds():
            store.record_progress(job.id, me, job.attempts, p)
            last_stored = time.monotonic()

    last_phase = ""

    def on_phase(what: str, done: int, total: int) -> None:
        nonlocal last_stored, last_phase
        if what == last_phase and done < total and time.monotonic() - last_stored < settings.progress_seconds():
            return
        store.record_phase(job.id, me, f"{what} {done:,} of {total:,} rows" if total else what)
        if not total:  # a step of the set-up (loading, a probe, resuming from a checkpoint): for the log too
            log.info("job %s: %s", job.id, what)
        last_stored, last_phase = time.monotonic(), what

    def on_epoch(epoch: int, metrics: dict) -> None:
        store.record_epoch(job.id, me, epoch, metrics)
        if hooks:
            hooks.on_epoch(epoch, metrics)

    def should_stop() -> bool:
        return beat.should_stop() or (hooks is not None and hooks.should_stop())

    checkpoint_dir = settings.checkpoints_dir() / job.id
    config = _config(job, dev)
    halve = job.batch_size == job.spec["batch_size"] and job.batch_size > 1
    try:
        return train(config, on_progress=on_progress, should_cancel=should_stop, on_epoch=on_epoch,
                     checkpoint_dir=str(checkpoint_dir), review_dir=str(settings.reviews_dir() / job.id),
                     checkpoint_seconds=settings.checkpoint_seconds(), on_phase=on_phase)
    except Exception as exc:
        if not (halve and is_out_of_memory(exc)):
            raise
    # Out of the except block: the failed attempt's tensors are no longer referenced and can be freed.
    gc.collect()
    torch.cuda.empty_cache()
    job.batch_size //= 2
    log.warning("job %s: out of GPU memory, retrying with batch size %d", job.id, job.batch_size)
    store.restart_with_batch_size(job.id, me, job.batch_size)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return _train(job, me, beat, dev, hooks)


def run_job(job_id: str) -> str | None:
    """Run job `job_id` to its end in this worker, unless it is no longer waiting (cancelled, deleted, taken).

    Returns the state it left the job in (None: not this worker's to say); the queue puts an `interrupted` job
    back, so this module needs no queue. A search's trial moves its search on when it ends."""
    me, dev = worker_id(), device()
    job = store.claim(job_id, me, dev)
    if job is None:
        log.info("job %s: not waiting any more, skipped", job_id)
        return None
    log.info("job %s: running on %s (attempt %d)", job_id, dev, job.attempts)
    state = _run(job, me, dev)
    if job.parent_id and state != JobState.INTERRUPTED:
        try:
            search.advance(job.parent_id)
        except Exception:  # the next worker start, or the watchdog, moves the search on
            log.exception("search %s: could not move on after trial %s", job.parent_id, job_id)
    return state


def _run(job: Job, me: str, dev: str) -> str | None:
    beat = Heartbeat(job.id, me)
    beat.start()
    try:
        hooks = search.trial_hooks(job)
        result = _train(job, me, beat, dev, hooks)
    except Exception as exc:
        kind, message = failure(exc, job)
        store.fail(job.id, me, kind, message, traceback.format_exc())
        log.warning("job %s: failed: %s: %s", job.id, kind, message)
        return JobState.FAILED
    finally:
        beat.stop()
    if beat.lost.is_set():
        log.warning("job %s: taken from this worker while training; its result is dropped", job.id)
        return None
    not_by_user = result.cancelled and not beat.cancelled.is_set()  # the worker stopping, or the search
    stopped = hooks.stopped if hooks and not_by_user else None
    if not_by_user and not stopped:
        state = store.release_held(job.id, me)
        log.info("job %s: worker stopping, job %s", job.id, state)
        return state
    trial = {**job.trial, "stopped": stopped} if stopped else None
    state = store.finish(job.id, me, result, f"adapters/{job.id}", trial)
    if state == JobState.SUCCEEDED:
        shutil.rmtree(settings.checkpoints_dir() / job.id, ignore_errors=True)
    log.info("job %s: %s%s", job.id, state, f" ({stopped})" if stopped else "")
    return state
