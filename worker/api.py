"""The jobs API the web app and the command line share: submit (a job or a search), list, get, cancel, retry,
delete, share.

Every function reads and writes the job store; none needs a worker to be running. Each takes the `actor` who
asks (worker/access.py): the machine itself by default (the command line on this machine, the worker); the web
app and the HTTP API always say which user.

What needs the engine (the method registry, a job's settings checked, worker/search.py with Optuna) is imported
where it is used: listing, showing, cancelling, retrying and deleting jobs load neither torch nor transformers,
so `adapterlab jobs` answers in a fraction of a second instead of two.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, defer

from engine.errors import AdapterLabError, ConfigError
from engine.options import option_fields
from worker import db, settings
from worker.access import MACHINE, Actor, check_change, may_see, refused, visible
from worker.job_queue import enqueue
from worker.models import ACTIVE, FINAL, WAITING, Job, JobEpoch, JobKind, JobState, JobStep, utcnow


class JobNotFound(AdapterLabError):
    kind = "job error"


class JobStateError(AdapterLabError):
    """The job is in a state that does not allow this (e.g. retrying a running job)."""

    kind = "job error"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _absolute(relative: str | None) -> str | None:
    return str(settings.data_dir() / relative) if relative else None


def _history(epochs: list[JobEpoch]) -> list[dict]:
    return [{"epoch": e.epoch, "train_loss": e.train_loss, "loss": e.loss, "accuracy": e.accuracy,
             "macro_f1": e.macro_f1} for e in epochs]


def _steps(steps: list[JobStep]) -> list[dict]:
    return [{"step": s.step, "total_steps": s.total_steps, "epoch": s.epoch, "loss": s.loss,
             "learning_rate": s.learning_rate, "samples_per_second": s.samples_per_second,
             "eta_seconds": s.eta_seconds, "attempt": s.attempt} for s in steps]


def to_dict(job: Job, epochs: list[JobEpoch], steps: list[JobStep] | None) -> dict:
    """A job as plain JSON-able data; file paths are absolute in this machine's data directory."""
    spec = dict(job.spec, data=_absolute(job.spec["data"]), validation=_absolute(job.spec.get("validation")))
    out = {
        "id": job.id, "name": job.name, "state": job.state, "progress": job.progress,
        "eta_seconds": job.eta_seconds if job.state in ACTIVE else None, "attempts": job.attempts,
        "phase": job.phase if job.state == JobState.RUNNING else None,
        "metrics": job.metrics, "adapter_dir": _absolute(job.adapter_dir), "error": job.error,
        "error_kind": job.error_kind, "traceback": job.traceback, "spec": spec, "data": job.data_source,
        "validation_data": job.validation_source, "method": job.method, "base_model": job.base_model,
        "batch_size": job.batch_size, "labels": job.labels, "best_epoch": job.best_epoch,
        "train_seconds": job.train_seconds, "samples_per_second": job.samples_per_second,
        "data_report": job.data_report, "worker_id": job.worker_id, "device": job.device,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "heartbeat_at": _iso(job.heartbeat_at), "history": _history(epochs),
        "kind": job.kind, "parent_id": job.parent_id, "trial": job.trial, "search": job.search,
        "owner": job.owner, "shared": job.shared,
    }
    if job.kind == JobKind.SEARCH and job.state in ACTIVE:  # a search's progress is its budget's clock
        from worker import search

        budget, left = job.search["budget_minutes"] * 60, max(0.0, search.seconds_left(job))
        out.update(progress=1 - left / budget, eta_seconds=left)
    if steps is not None:
        out["steps"] = _steps(steps)
    return out


def _load(s: Session, job_id: str, actor: Actor, action: str = "see", lock: bool = True) -> Job:
    """The job, if `actor` may see it (and, for any `action` but "see", change it); one it may not see is
    refused, logged, as if it did not exist."""
    job = s.get(Job, job_id, with_for_update=lock)
    if job is not None and not may_see(actor, job.owner, job.shared):
        refused(actor, action, job_id, job.owner)
        job = None
    if job is None:
        raise JobNotFound(f"No job '{job_id}': it does not exist or was deleted.")
    if action != "see":
        check_change(actor, action, job_id, job.owner)
    return job


def adapter_options(method: str | None, options: dict, allow_folders: bool = True, actor: Actor = MACHINE) -> dict:
    """`options` with those of the method that list trained adapters (their spec's `adapters_of`: a fusion's
    adapters) as folders: each named by the id of a finished job, or (`allow_folders`, the command line on this
    machine) by a folder."""
    from engine.methods import REGISTRY

    if method not in REGISTRY:
        return options
    lists = {f.name for f, spec in option_fields(REGISTRY[method].Options) if spec.adapters_of}
    out = dict(options)
    for name in lists & {k for k, v in options.items() if v}:
        items = out[name].split(",") if isinstance(out[name], str) else list(out[name])
        out[name] = [_adapter_folder(str(item).strip(), allow_folders, actor) for item in items if str(item).strip()]
    return out


def adapter_folders(spec: dict, allow_folders: bool = True, actor: Actor = MACHINE) -> dict:
    """A job spec with `adapter_options` applied, whether the options come at the top (flags) or in
    `method_options`."""
    spec = adapter_options(spec.get("method"), spec, allow_folders, actor)
    if isinstance(spec.get("method_options"), dict):
        spec["method_options"] = adapter_options(spec.get("method"), spec["method_options"], allow_folders, actor)
    return spec


def _adapter_folder(key: str, allow_folders: bool, actor: Actor) -> str:
    if allow_folders and Path(key).is_dir():
        return str(Path(key).resolve())
    found = finished_adapter(key, actor) if len(key) <= 64 else None
    if found is None:
        where = "a job id from the Jobs tab" + (" or an adapter folder" if allow_folders else "")
        raise ConfigError(f"No finished adapter '{key}' to fuse: give {where}.")
    return found["adapter_dir"]


def submit(spec: dict, like: str | None = None, allow_folders: bool = True, actor: Actor = MACHINE) -> str:
    """Validate a training spec, snapshot its data and queue it; return the job id.

    `spec` holds TrainConfig fields except `output` (`data` is a file path or hub dataset `name[:config]`) and an
    optional display `name`. `like`: the id of the job this one copies (`like_spec`), whose data it names the
    same way. Adapters an option lists (a fusion's) may be job ids (`adapter_folders`; folders only with
    `allow_folders`). The job belongs to `actor`. Raises DataError or ConfigError for a spec that could not
    train.
    """
    spec = adapter_folders(spec, allow_folders, actor)
    name = str(spec.pop("name", None) or "").strip()
    from worker.spec import prepare_job

    fields = prepare_job(spec, get_job(like, actor) if like else None)
    source = fields["data_source"]
    name = name or f"{Path(source.get('filename') or source.get('name') or 'data').stem} · {fields['method']}"
    job = Job(id=uuid.uuid4().hex[:12], name=name[:200], state=JobState.QUEUED, owner=actor.owner, **fields)
    with db.session() as s:
        s.add(job)
    enqueue(job.id)
    return job.id


def like_spec(job_id: str, method: str | None = None, actor: Actor = MACHINE) -> dict:
    """The spec that trains job `job_id` again: its data snapshots and every setting, as `submit` takes them.

    With another `method`, the old method's options, learning rate and epochs are left out (the new method's
    defaults apply): they were chosen for the old one."""
    job = get_job(job_id, actor)
    spec = {k: v for k, v in job["spec"].items() if v is not None}
    if method and method != job["method"]:
        for key in ("method_options", "learning_rate", "epochs"):
            spec.pop(key, None)
        spec["method"] = method
    return spec


def list_jobs(actor: Actor = MACHINE) -> list[dict]:
    """The jobs `actor` may see, newest first, with their learning curves (`history`) but without `steps` (see
    `get_job`)."""
    with db.session() as s:
        jobs = s.scalars(select(Job).where(visible(actor)).order_by(Job.created_at.desc(), Job.id)).all()
        epochs: dict[str, list[JobEpoch]] = {}
        seen = select(Job.id).where(visible(actor))
        for e in s.scalars(select(JobEpoch).options(defer(JobEpoch.metrics)).where(JobEpoch.job_id.in_(seen))
                           .order_by(JobEpoch.job_id, JobEpoch.epoch)):
            epochs.setdefault(e.job_id, []).append(e)
        return [to_dict(job, epochs.get(job.id, []), None) for job in jobs]


def trials(search_id: str, actor: Actor = MACHINE) -> list[dict]:
    """A search's trials, in the order they started, with their learning curves."""
    with db.session() as s:
        found = s.scalars(select(Job).where(Job.parent_id == search_id, visible(actor))
                          .order_by(Job.created_at, Job.id)).all()
        return [to_dict(job, list(job.epochs), None) for job in found]


def get_job(job_id: str, actor: Actor = MACHINE) -> dict:
    """One job with its per-epoch `history` and its progress `steps`."""
    with db.session() as s:
        job = _load(s, job_id, actor, lock=False)
        return to_dict(job, list(job.epochs), list(job.steps))


def submit_search(spec: dict, values: dict, actor: Actor = MACHINE) -> str:
    """Queue a search (worker/search.py) for `actor`: `spec` as `submit` takes it, less what the search
    chooses, and `values` its SearchConfig settings (budget_minutes, methods, max_trials, parallel); return its
    id."""
    from worker import search

    return search.submit(spec, values, actor.owner)


def cancel(job_id: str, actor: Actor = MACHINE) -> dict:
    """A waiting job is cancelled at once (it never runs); a running one stops at its next step, keeping the
    best adapter so far (a running job whose worker has gone silent is cancelled at once). A search starts no
    more trials and cancels the ones it has; a search moves on when one of its waiting trials is cancelled."""
    with db.session() as s:
        job = _load(s, job_id, actor, "cancel", lock=False)
        kind, state, parent_id = job.kind, job.state, job.parent_id
    from worker import search

    if kind == JobKind.SEARCH:
        if state in FINAL:
            raise JobStateError(f"Search {job_id} already {state}; there is nothing to cancel.")
        search.cancel(job_id)
    else:
        cancel_one(job_id)
        if parent_id:
            search.advance(parent_id)
    return get_job(job_id, actor)


def cancel_one(job_id: str) -> None:
    """Cancel one training job (see `cancel`)."""
    with db.session() as s:
        job = _load(s, job_id, MACHINE)
        if job.state in FINAL:
            raise JobStateError(f"Job {job_id} already {job.state}; there is nothing to cancel.")
        silent = job.heartbeat_at is None or job.heartbeat_at < utcnow() - timedelta(
            seconds=settings.stale_after_seconds())
        if job.state in WAITING or silent:  # no live worker will ever see the request: cancelled now
            job.state, job.finished_at, job.eta_seconds = JobState.CANCELLED, utcnow(), None
        else:
            job.state = JobState.CANCELLING


def retry(job_id: str, actor: Actor = MACHINE) -> str:
    """Queue a failed, cancelled or interrupted job again; it resumes from its last epoch checkpoint if any."""
    with db.session() as s:
        job = _load(s, job_id, actor, "retry")
        if job.kind == JobKind.SEARCH or job.parent_id:
            what = "A search" if job.kind == JobKind.SEARCH else \
                f"Job {job_id} is a trial of search {job.parent_id}: it"
            raise JobStateError(f"{what} cannot be retried; start a new search (`adapterlab search`), or train "
                                "these settings again with `adapterlab submit --like`.")
        if job.state not in (JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED):
            raise JobStateError(f"Job {job_id} is {job.state}; only failed, cancelled or interrupted jobs can be "
                                "retried.")
        job.state, job.attempts, job.finished_at = JobState.QUEUED, 0, None
        job.error = job.error_kind = job.traceback = None
        job.metrics = job.adapter_dir = job.best_epoch = None
        job.evaluations.clear()  # they measured the adapter this run replaces
    shutil.rmtree(settings.reviews_dir() / job_id, ignore_errors=True)
    enqueue(job_id)
    return job_id


def delete(job_id: str, actor: Actor = MACHINE) -> None:
    """Delete a job that is not running, with its adapter, checkpoints and upload (unless another job uses it);
    a search that has ended, with its trials and study."""
    with db.session() as s:
        job = _load(s, job_id, actor, "delete", lock=False)
        kind, state, study = job.kind, job.state, job.search
        trials = s.scalars(select(Job.id).where(Job.parent_id == job_id)).all()
    if kind == JobKind.SEARCH:
        if state not in FINAL:
            raise JobStateError(f"Search {job_id} is {state}; cancel it and wait until it stops before deleting.")
        for trial_id in trials:
            delete(trial_id)
        from worker import search

        search.forget(study)
    with db.session() as s:
        job = _load(s, job_id, MACHINE)
        if job.state in ACTIVE:
            raise JobStateError(f"Job {job_id} is {job.state}; cancel it and wait until it stops before deleting.")
        uploads = {job.spec["data"], job.spec.get("validation")} - {None}
        s.delete(job)
        s.flush()
        for spec in s.scalars(select(Job.spec)):
            uploads -= {spec["data"], spec.get("validation")}
    home = settings.data_dir()
    shutil.rmtree(settings.adapters_dir() / job_id, ignore_errors=True)
    shutil.rmtree(settings.checkpoints_dir() / job_id, ignore_errors=True)
    shutil.rmtree(settings.reviews_dir() / job_id, ignore_errors=True)
    (settings.data_dir() / "searches" / f"{job_id}.lock").unlink(missing_ok=True)
    for relative in uploads:
        (home / relative).unlink(missing_ok=True)


def share(job_id: str, shared: bool, actor: Actor = MACHINE) -> dict:
    """Show the job (a search with its trials) to every user, or to its owner and the admins only again."""
    with db.session() as s:
        job = _load(s, job_id, actor, "share" if shared else "stop sharing")
        job.shared = shared
        s.execute(update(Job).where(Job.parent_id == job_id).values(shared=shared))
    return get_job(job_id, actor)


def _finished(query):
    return query.where(Job.state.in_((JobState.SUCCEEDED, JobState.CANCELLED)), Job.adapter_dir.is_not(None))


def _adapter(j: Job, sized: bool = True) -> dict:
    found = {"id": j.id, "name": j.name, "method": j.method, "labels": j.labels,
             "adapter_dir": _absolute(j.adapter_dir), "base_model": j.base_model, "metrics": j.metrics,
             "state": j.state, "finished_at": _iso(j.finished_at), "owner": j.owner, "shared": j.shared}
    return {**found, "size_mb": _size_mb(j.adapter_dir)} if sized else found


def finished_adapters(actor: Actor = MACHINE) -> list[dict]:
    """Adapters `actor` may use for prediction: succeeded jobs, and cancelled ones that saved an adapter."""
    with db.session() as s:
        jobs = s.scalars(_finished(select(Job).where(visible(actor))).order_by(Job.finished_at.desc())).all()
        return [_adapter(j) for j in jobs if (settings.data_dir() / j.adapter_dir).is_dir()]


def finished_adapter(job_id: str, actor: Actor = MACHINE) -> dict | None:
    """One of `finished_adapters` by its job id, looked up alone (a prediction's cost, not the list's), without
    its `size_mb` (a stat of every file it holds); None also when `actor` may not use it (refusal logged)."""
    with db.session() as s:
        job = s.scalar(_finished(select(Job).where(Job.id == job_id)))
        if job is not None and not may_see(actor, job.owner, job.shared):
            refused(actor, "use the adapter of", job_id, job.owner)
            return None
        return _adapter(job, sized=False) if job and (settings.data_dir() / job.adapter_dir).is_dir() else None


def _size_mb(relative: str) -> float:
    """The saved folder's size on disk (a full fine-tuned model is as large as its base; adapters are small)."""
    return sum(p.stat().st_size for p in (settings.data_dir() / relative).iterdir() if p.is_file()) / 1e6
