"""Searches in one process against the SQLite job store and a real Optuna study in it: the trials are jobs run by
the worker's runner; the defaults come first, pruning stops a weak trial, the budget keeps a trial from starting
(or from running past it), and deleting a search removes its trials and study.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from sqlalchemy import update

from app.cli import main
from engine.errors import ConfigError
from engine.search_space import default_params
from worker import api, db, runner, settings
from worker.models import Job, utcnow


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_PROGRESS_SECONDS", "0")
    for name in ("ADAPTERLAB_DATABASE_URL", "ADAPTERLAB_REDIS_URL", "ADAPTERLAB_QUEUE_NAME", "ADAPTERLAB_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture()
def spec(tiny_bert, sentiment_csv) -> dict:
    return {"data": str(sentiment_csv), "base_model": str(tiny_bert), "batch_size": 8, "max_length": 32}


def run_queued(search_id: str) -> list[str]:
    """Run the search's waiting trials one by one, as a worker would, until it ends; return their ids in order."""
    ran = []
    while api.get_job(search_id)["state"] not in ("succeeded", "failed", "cancelled"):
        waiting = [t["id"] for t in api.trials(search_id) if t["state"] == "queued"]
        assert waiting, "a running search has no trial waiting and none running"
        runner.run_job(waiting[0])
        ran.append(waiting[0])
    return ran


def study_of(search_id: str) -> optuna.Study:
    return optuna.load_study(study_name=api.get_job(search_id)["search"]["study"], storage=settings.database_url())


def test_a_search_tries_the_defaults_first_then_sampled_trials_and_keeps_the_best(home, spec):
    search_id = api.submit_search({**spec, "method": "houlsby", "epochs": 50},  # chosen by the search, ignored
                                  {"budget_minutes": 5, "methods": ["pfeiffer", "ia3"], "max_trials": 3})
    assert api.get_job(search_id)["state"] == "queued"  # the budget counts from its first trial's start
    ran = run_queued(search_id)
    found = api.get_job(search_id)
    trials = api.trials(search_id)
    assert [t["id"] for t in trials] == ran and len(ran) == 3 and found["state"] == "succeeded"
    assert [t["trial"]["params"] for t in trials[:2]] == [default_params("pfeiffer"), default_params("ia3")]
    assert [(t["method"], t["spec"]["epochs"], t["spec"]["learning_rate"]) for t in trials[:2]] == \
        [("pfeiffer", 3, 3e-3), ("ia3", 3, 2e-2)]
    for t in trials[2:]:  # sampled within the space the engine's methods give
        assert t["method"] in ("pfeiffer", "ia3") and 1 <= t["spec"]["epochs"] <= 6
        assert t["trial"]["params"]["learning_rate_scale"] * {"pfeiffer": 3e-3, "ia3": 2e-2}[t["method"]] == \
            pytest.approx(t["spec"]["learning_rate"], rel=1e-3)
    assert all(t["trial"]["outcome"] == "complete" and t["state"] == "succeeded" for t in trials)
    best = max(trials, key=lambda t: (t["metrics"]["macro_f1"], -t["trial"]["number"]))
    assert found["search"]["best_job"] == best["id"] and found["metrics"] == best["metrics"]
    assert found["started_at"] == trials[0]["started_at"] and found["progress"] == 1.0

    study = study_of(search_id)  # the study is in the job store's own database
    assert [(t.number, t.state.name, t.value) for t in study.trials] == \
        [(t["trial"]["number"], "COMPLETE", t["metrics"]["macro_f1"]) for t in trials]
    assert [sorted(t.intermediate_values) for t in study.trials] == [list(range(1, len(t["history"]) + 1))
                                                                     for t in trials]

    api.delete(search_id)
    assert api.list_jobs() == [] and not any((home / "adapters").iterdir())
    with pytest.raises(KeyError):
        optuna.load_study(study_name=study.study_name, storage=settings.database_url())


def test_a_trial_below_the_median_is_pruned_after_its_epoch_and_keeps_its_adapter(home, spec):
    search_id = api.submit_search(spec, {"methods": ["pfeiffer"], "max_trials": 1})
    study = study_of(search_id)
    for _ in range(2):  # two earlier trials of the same study that scored 0.99 at every epoch
        study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={1: 0.99, 2: 0.99, 3: 0.99}))
    run_queued(search_id)
    (trial,) = api.trials(search_id)
    assert trial["state"] == "succeeded" and trial["trial"]["outcome"] == "pruned"
    assert trial["spec"]["epochs"] == 3 and len(trial["history"]) == 1 and Path(trial["adapter_dir"]).is_dir()
    assert study_of(search_id).trials[0].state.name == "PRUNED"
    found = api.get_job(search_id)
    assert found["state"] == "succeeded" and found["search"]["best_job"] == trial["id"]


def _set_start(job_id: str, seconds_ago: float, **values: object) -> None:
    """Move a job's start `seconds_ago` back (a search's budget clock; a trial's measured wall time)."""
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=seconds_ago),
                                                             **values))


def test_no_trial_starts_that_the_measured_speed_says_cannot_finish(home, spec):
    search_id = api.submit_search(spec, {"budget_minutes": 1, "methods": ["pfeiffer"]})
    first = api.trials(search_id)[0]
    runner.run_job(first["id"])
    second = [t for t in api.trials(search_id) if t["state"] == "queued"][0]["id"]
    slow = api.get_job(first["id"])  # as if its 3 epochs had taken 90 s: 30 s an epoch
    _set_start(first["id"], 0, finished_at=utcnow() + timedelta(seconds=90))
    _set_start(search_id, 40)  # 20 s of the budget left: no epoch fits
    runner.run_job(second)
    found = api.get_job(search_id)
    assert slow["state"] == "succeeded" and found["state"] == "succeeded" and found["search"]["spent"]
    assert [t["id"] for t in api.trials(search_id)] == [first["id"], second]
    # Optuna's next suggestions were told failed instead of being started
    assert [t.state.name for t in study_of(search_id).trials] == ["COMPLETE"] * 2 + ["FAIL"] * 3


def test_a_trial_still_running_when_the_budget_ends_stops_with_its_best_so_far(home, spec):
    search_id = api.submit_search(spec, {"budget_minutes": 1, "methods": ["pfeiffer", "ia3"]})
    runner.run_job(api.trials(search_id)[0]["id"])
    second = [t for t in api.trials(search_id) if t["state"] == "queued"][0]["id"]
    _set_start(search_id, 60.5)  # the budget ran out while the second trial waited
    runner.run_job(second)
    late = api.get_job(second)
    assert late["state"] == "succeeded" and late["trial"]["outcome"] == "budget" and late["history"] == []
    assert Path(late["adapter_dir"]).is_dir()
    found = api.get_job(search_id)
    assert found["state"] == "succeeded" and len(api.trials(search_id)) == 2 and found["search"]["spent"]
    assert [t.state.name for t in study_of(search_id).trials] == ["COMPLETE", "COMPLETE"]


def test_cancelling_a_search_cancels_its_waiting_trial_and_ends_it(home, spec):
    search_id = api.submit_search(spec, {"methods": ["ia3"], "parallel": 2})
    assert [t["state"] for t in api.trials(search_id)] == ["queued", "queued"]
    assert api.cancel(search_id)["state"] == "cancelled"
    assert [t["state"] for t in api.trials(search_id)] == ["cancelled", "cancelled"]
    assert [t.state.name for t in study_of(search_id).trials] == ["FAIL", "FAIL"]
    with pytest.raises(api.JobStateError, match="cannot be retried"):
        api.retry(search_id)


@pytest.mark.parametrize("values, message", [
    ({"methods": ["nope"]}, "Unknown method 'nope'"),
    ({"budget_minutes": 0}, "Budget \\(minutes\\) must be at least 1"),
    ({"parallel": 0}, "Trials at once must be at least 1"),
])
def test_bad_search_settings_are_refused_before_anything_is_queued(home, spec, values, message):
    with pytest.raises(ConfigError, match=message):
        api.submit_search(spec, values)
    assert api.list_jobs() == []


def test_search_command_errors_are_one_line_with_exit_2(home, spec, capsys):
    code = main(["search", "--data", spec["data"], "--base-model", spec["base_model"], "--methods", "pfeiffer,nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Unknown method 'nope'" in err
