"""Searches: Optuna chooses each trial's method and settings, and the trials are ordinary jobs the workers run.

No process drives a search. It moves on whenever something happens to it (`advance`): when it is submitted,
when one of its trials ends (the worker that ran it calls `advance`), and when a worker finds it stalled (a
worker died between a trial's end and the next one's start). Each step tells the study how the ended trials
went and starts trials until `parallel` are queued or running, while the budget allows. The study lives in the
job store's database (Optuna's RDB storage), so any worker, and any restarted one, carries on the same search.

The first trials are each method at its defaults, so the search's best is never worse than what `adapterlab
train` would give; then TPE samples, and the median pruner stops a trial after an epoch whose validation
macro-F1 is below the median of the earlier trials at that epoch.
"""

from __future__ import annotations

import fcntl
import logging
import uuid
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import optuna
from sqlalchemy import func, select, text
from sqlalchemy.orm import selectinload

from engine.base_models import load_config, resolve_base_model
from engine.errors import ConfigError
from engine.methods import get as get_method
from engine.options import check_all, option
from engine.search_space import check_methods, default_params, option_space, suggest
from engine.training import TrainConfig, run_settings
from worker import db, settings
from worker.job_queue import requeue
from worker.models import FINAL, Job, JobKind, JobState, utcnow
from worker.spec import check_method, prepare_job

log = logging.getLogger("adapterlab.worker")
optuna.logging.set_verbosity(optuna.logging.WARNING)

SEARCHED = ("method", "method_options", "learning_rate", "epochs")  # what the search chooses for each trial
SKIPS_BEFORE_STOPPING = 3  # sampled trials in a row that would not finish in the budget: the budget is spent
IMPORTANCE_AFTER = 4  # completed trials before Optuna's importances mean something


@dataclass
class SearchConfig:
    """A search's own settings (the training settings it shares with its trials are TrainConfig's)."""

    budget_minutes: float = option(15.0, "Budget (minutes)", "Wall-clock time for the whole search, from its "
                                   "first trial's start: no trial starts that could not finish in it.", low=1,
                                   high=7 * 24 * 60)
    methods: list = option([], "Methods", "The methods to try (empty: Houlsby, Pfeiffer and IA3, the methods "
                           "marked for searching).")
    max_trials: int | None = option(None, "Most trials", "Stop after this many trials even if time is left. "
                                    "Empty: as many as the budget allows.", low=1, high=1000, whole=True,
                                    say_empty=True)
    parallel: int = option(1, "Trials at once", "Trials queued or running at the same time: the number of "
                           "workers that may run this search's trials.", low=1, high=64, whole=True)


def check_config(values: dict) -> SearchConfig:
    config = SearchConfig(**check_all(SearchConfig, {k: v for k, v in values.items() if v not in (None, "")}))
    config.methods = check_methods(config.methods)
    return config


# --- the study -------------------------------------------------------------------------------------------------

_storages: dict[str, optuna.storages.RDBStorage] = {}


def _storage() -> optuna.storages.RDBStorage:
    """Optuna's storage in the job store's database, one per database URL (each holds a connection pool)."""
    url = settings.database_url()
    if url not in _storages:
        db.get_engine()  # our migrations first: they hand `alembic_version` to Optuna
        kwargs = {"connect_args": {"timeout": db.SQLITE_BUSY_TIMEOUT_MS / 1000}} if url.startswith("sqlite") else \
            {"pool_pre_ping": True}
        _storages[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    return _storages[url]


def _study(search: dict, trials_so_far: int = 0) -> optuna.Study:
    """The search's study with its sampler and pruner (neither is stored: each process builds them the same)."""
    n_defaults = len(search["methods"])
    with warnings.catch_warnings():  # TPE's `group` (conditional settings: a reduction factor only for
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # bottlenecks) is "experimental"
        sampler = optuna.samplers.TPESampler(seed=search["seed"] + trials_so_far, n_startup_trials=n_defaults,
                                             multivariate=True, group=True, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_defaults, n_warmup_steps=0, n_min_trials=2)
    return optuna.load_study(study_name=search["study"], storage=_storage(), sampler=sampler, pruner=pruner)


@contextmanager
def _locked(search_id: str) -> Iterator[None]:
    """One `advance` of a search at a time, across workers: a PostgreSQL advisory lock, or a file lock for the
    SQLite store (whose workers share the machine). Not a database transaction: Optuna writes on its own
    connections, which a held SQLite write lock would block."""
    engine = db.get_engine()
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(search_id.encode())
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    folder = settings.data_dir() / "searches"
    folder.mkdir(exist_ok=True)
    with (folder / f"{search_id}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- submitting ------------------------------------------------------------------------------------------------

def submit(spec: dict, values: dict, owner: str | None = None) -> str:
    """Check a search (its training settings as `api.submit` takes them, less what the search chooses, and its
    SearchConfig `values`), snapshot its data, create its study and start its first trials; return its id. Its
    trials belong to its `owner` too."""
    config = check_config(values)
    spec = {k: v for k, v in spec.items() if k not in SEARCHED}
    name = str(spec.pop("name", None) or "").strip()
    fields = prepare_job({**spec, "method": config.methods[0]})
    shared = {k: v for k, v in fields["spec"].items() if k not in SEARCHED}
    for method in config.methods[1:]:
        check_method(TrainConfig(output="", **{**shared, "data": "", "method": method}).resolved())
    source = fields["data_source"]
    job_id = uuid.uuid4().hex[:12]
    search = {**asdict(config), "study": f"adapterlab-search-{job_id}", "seed": int(shared.get("seed") or 42),
              "space": _option_space(config.methods, shared)}
    study = optuna.create_study(storage=_storage(), study_name=search["study"], direction="maximize")
    for method in config.methods:
        study.enqueue_trial(default_params(method))
    job = Job(id=job_id, name=(name or f"{source.get('filename') or source.get('name') or 'data'} · search")[:200],
              kind=JobKind.SEARCH, state=JobState.QUEUED, spec=shared, data_source=source,
              validation_source=fields["validation_source"], method="search", base_model=fields["base_model"],
              batch_size=fields["batch_size"], search=search, owner=owner)
    with db.session() as s:
        s.add(job)
    advance(job_id)
    return job_id


def _option_space(methods: list[str], shared: dict) -> dict[str, list]:
    """The method option values that work on this search's base model and max length."""
    model_config = load_config(resolve_base_model(shared.get("base_model")))

    def fits(method: str, options: dict) -> bool:
        try:
            get_method(method).supports(model_config, bool(shared.get("labels_as_text")))
            get_method(method).check(get_method(method).options(options), model_config, shared["max_length"])
        except ConfigError:
            return False
        return True

    return option_space(methods, fits)


# --- moving on -------------------------------------------------------------------------------------------------

def deadline(search: Job) -> datetime | None:
    """When the budget runs out: counted from the first trial's start (None before it starts)."""
    return search.started_at + timedelta(minutes=search.search["budget_minutes"]) if search.started_at else None


def seconds_left(search: Job) -> float:
    """The budget left: all of it before the first trial starts."""
    end = deadline(search)
    return search.search["budget_minutes"] * 60 if end is None else (end - utcnow()).total_seconds()


def _seconds_per_epoch(trials: list[Job], method: str) -> float | None:
    """The slowest measured wall time per epoch of this search's ended trials of `method` (load, training,
    validation and saving included); a method not measured yet: the slowest of any (None: nothing measured)."""
    def measured(of: list[Job]) -> list[float]:
        return [(t.finished_at - t.started_at).total_seconds() / max(1, len(t.epochs)) for t in of
                if t.state == JobState.SUCCEEDED and t.started_at and t.finished_at]
    own = measured([t for t in trials if t.method == method])
    every = own or measured(trials)
    return max(every) if every else None


def _tell(study: optuna.Study, trial: Job) -> str:
    """Tell the study how an ended trial went; return the outcome shown to the user."""
    stopped = trial.trial.get("stopped")
    if trial.state == JobState.SUCCEEDED and stopped == "pruned":
        outcome, state, value = "pruned", optuna.trial.TrialState.PRUNED, None
    elif trial.state == JobState.SUCCEEDED and trial.metrics:
        outcome, state, value = stopped or "complete", optuna.trial.TrialState.COMPLETE, trial.metrics["macro_f1"]
    else:
        outcome, state, value = trial.state, optuna.trial.TrialState.FAIL, None
    try:
        study.tell(trial.trial["number"], value, state=state)
    except (RuntimeError, ValueError) as exc:  # told already (a worker died after telling): keep the record
        log.info("search trial %s: %s", trial.trial["number"], exc)
    return outcome


def _new_trial(search: Job, number: int, trial_id: int, params: dict, chosen: dict) -> Job:
    config = TrainConfig(output="", **{**search.spec, **chosen}).resolved()
    spec = {**search.spec, **{k: v for k, v in run_settings(config).items() if k in SEARCHED}}
    return Job(id=uuid.uuid4().hex[:12], kind=JobKind.TRAIN, parent_id=search.id, state=JobState.QUEUED,
               name=f"{search.name} · trial {number + 1}"[:200], spec=spec,
               data_source=search.data_source, validation_source=search.validation_source, method=config.method,
               base_model=search.base_model, batch_size=search.batch_size, owner=search.owner, shared=search.shared,
               trial={"number": number, "id": trial_id, "params": params})


def _start_trials(search: Job, cfg: dict, trials: list[Job], study: optuna.Study) -> list[Job]:
    """Ask the study for trials until `parallel` are in flight, the trial limit is reached or the budget is
    spent (`cfg["spent"]`); a sampled trial that could not finish in the time left is told failed, not run."""
    started: list[Job] = []
    in_flight = sum(t.state not in FINAL for t in trials)
    skipped = 0
    while in_flight + len(started) < cfg["parallel"] and not cfg.get("spent"):
        if cfg["max_trials"] and len(trials) + len(started) >= cfg["max_trials"]:
            break
        left = seconds_left(search)
        if left <= 0:
            cfg["spent"] = True
            break
        trial = study.ask()
        chosen = suggest(trial, cfg["methods"], cfg["space"])
        per_epoch = _seconds_per_epoch(trials, chosen["method"])
        if per_epoch is not None and per_epoch * chosen["epochs"] > left:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            skipped += 1
            cfg["spent"] = skipped >= SKIPS_BEFORE_STOPPING
            continue
        started.append(_new_trial(search, trial.number, trial._trial_id, trial.params, chosen))
    return started


def _best(trials: list[Job]) -> Job | None:
    done = [t for t in trials if t.state == JobState.SUCCEEDED and t.metrics]
    return max(done, key=lambda t: (t.metrics["macro_f1"], -t.trial["number"])) if done else None


def _importance(study: optuna.Study) -> dict[str, float]:
    """Optuna's importance of each setting over the completed trials (empty until there are enough)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < IMPORTANCE_AFTER or len({t.value for t in complete}) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as exc:  # the completed trials share too few settings
        log.info("search importances not computed: %s", exc)
        return {}


def advance(search_id: str) -> None:
    """Bring a search up to date: record ended trials, start the next ones, end it when nothing is left to do."""
    with _locked(search_id):
        started = _advance(search_id)
    for job_id in started:
        requeue(job_id)  # a queue that is away is logged; the next worker start queues the trial


def cancel(search_id: str) -> None:
    """Stop a search: no new trials; waiting ones are cancelled, running ones stop at their next step."""
    from worker import api

    with _locked(search_id):
        with db.session() as s:
            search = s.get(Job, search_id, with_for_update=True)
            if search.state not in FINAL:
                search.state = JobState.CANCELLING
            waiting = s.scalars(select(Job.id).where(Job.parent_id == search_id, Job.state.not_in(FINAL))).all()
        for trial_id in waiting:
            api.cancel_one(trial_id)
        _advance(search_id)


def _advance(search_id: str) -> list[str]:
    with db.session() as s:
        search = s.get(Job, search_id, with_for_update=True)
        if search is None or search.kind != JobKind.SEARCH or search.state in FINAL:
            return []
        trials = list(s.scalars(select(Job).options(selectinload(Job.epochs)).where(Job.parent_id == search_id)
                                .order_by(Job.created_at)))
    study = _study(search.search, len(trials))
    outcomes = {t.id: _tell(study, t) for t in trials if t.state in FINAL and "outcome" not in t.trial}
    cfg = dict(search.search)
    new = [] if search.state == JobState.CANCELLING else _start_trials(search, cfg, trials, study)
    best = _best(trials)
    cfg.update(best_job=best.id if best else None, importance=_importance(study) or cfg.get("importance", {}))
    values = {"search": cfg, "metrics": best.metrics if best else None, "labels": best.labels if best else None}
    # Nothing left to run: the search ends (while it runs, api.to_dict derives its progress from the budget)
    if not new and all(t.state in FINAL for t in trials):
        state = JobState.CANCELLED if search.state == JobState.CANCELLING else \
            JobState.SUCCEEDED if best else JobState.FAILED
        values.update(state=state, finished_at=utcnow(), progress=1.0, eta_seconds=None)
        if state == JobState.FAILED:
            values.update(error_kind="search error", error="No trial finished; each trial's page says why.")
    with db.session() as s:
        for job_id, outcome in outcomes.items():
            if (trial := s.get(Job, job_id)) is not None:
                trial.trial = {**trial.trial, "outcome": outcome}
        s.add_all(new)
        row = s.get(Job, search_id)
        for key, value in values.items():
            setattr(row, key, value)
    return [t.id for t in new]


# --- a running trial -------------------------------------------------------------------------------------------

class TrialHooks:
    """A running trial's link to its search: each epoch's macro-F1 goes to the study, whose pruner may stop the
    trial; the search's deadline stops it too. `stopped` says why it stopped early ("pruned", "budget")."""

    def __init__(self, job: Job) -> None:
        with db.session() as s:
            search = s.get(Job, job.parent_id)
        self.deadline = deadline(search)
        self.study = _study(search.search)
        self.trial_id = job.trial["id"]
        self.stopped: str | None = None

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        trial = optuna.trial.Trial(self.study, self.trial_id)
        try:
            trial.report(metrics["macro_f1"], epoch)
            if trial.should_prune():
                self.stopped = "pruned"
        except RuntimeError as exc:  # the study already holds this trial as ended: train on, report nothing
            log.warning("trial %s: %s", self.trial_id, exc)

    def should_stop(self) -> bool:
        if self.stopped is None and self.deadline is not None and utcnow() >= self.deadline:
            self.stopped = "budget"
        return self.stopped is not None


def trial_hooks(job: Job) -> TrialHooks | None:
    return TrialHooks(job) if job.parent_id and job.trial else None


def resume_stalled() -> list[str]:
    """Searches with no trial in flight that did not move on (their last trial's worker died before `advance`)."""
    with db.session() as s:
        open_searches = s.scalars(select(Job.id).where(Job.kind == JobKind.SEARCH, Job.state.not_in(FINAL))).all()
        stalled = [search_id for search_id in open_searches if s.scalar(
            select(func.count()).select_from(Job).where(Job.parent_id == search_id, Job.state.not_in(FINAL))) == 0]
    for search_id in stalled:
        advance(search_id)
    return stalled


def forget(search: dict) -> None:
    """Delete a search's study (the search is being deleted)."""
    try:
        optuna.delete_study(study_name=search["study"], storage=_storage())
    except KeyError:  # never created, or deleted already
        pass
