"""The job store and jobs API in this process: submit-time validation, snapshots, state changes, recovery rules,
migrations, jobs.db.example and the job commands. Trainings run here by calling the worker's runner directly;
tests/test_worker.py runs them in a real Huey consumer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
import torch
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import NEGATIVE, POSITIVE, write_csv
from sqlalchemy import inspect

from app.cli import main
from engine import methods
from engine.errors import ConfigError, DataError
from engine.inference import Predictor
from engine.training import Progress
from worker import api, db, example_db, recovery, runner, settings, store
from worker.db import include_name
from worker.job_queue import get_huey, pending_job_ids
from worker.models import Base, Job, utcnow


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh data directory (job store, queue, uploads) for each test."""
    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_PROGRESS_SECONDS", "0")
    for name in ("ADAPTERLAB_DATABASE_URL", "ADAPTERLAB_REDIS_URL", "ADAPTERLAB_QUEUE_NAME", "ADAPTERLAB_DEVICE",
                 "ADAPTERLAB_MAX_ATTEMPTS", "ADAPTERLAB_STALE_AFTER_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture()
def spec(tiny_bert, sentiment_csv) -> dict:
    return {"data": str(sentiment_csv), "method": "pfeiffer", "base_model": str(tiny_bert), "epochs": 2,
            "batch_size": 8, "max_length": 32}


def uploads(home: Path) -> list[str]:
    folder = home / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_submit_snapshots_the_data_and_queues_the_job(home, spec, sentiment_csv):
    original = sentiment_csv.read_bytes()
    digest = hashlib.sha256(original).hexdigest()
    job_id = api.submit({**spec, "name": "reviews"})
    again = api.submit(spec)
    assert re.fullmatch(r"[0-9a-f]{12}", job_id) and again != job_id
    assert uploads(home) == [f"{digest}.csv"]  # one copy per content
    sentiment_csv.write_text("text,label\nchanged,x\n")

    job = api.get_job(job_id)
    assert (job["state"], job["progress"], job["attempts"], job["name"]) == ("queued", 0.0, 0, "reviews")
    assert job["data"] == {"kind": "file", "filename": "sentiment.csv", "sha256": digest,
                           "path": f"uploads/{digest}.csv"}
    assert Path(job["spec"]["data"]).read_bytes() == original
    assert job["spec"]["learning_rate"] == methods.get("pfeiffer").defaults["learning_rate"]  # fixed at submit
    assert job["metrics"] is None and job["adapter_dir"] is None and job["steps"] == [] and job["history"] == []
    assert api.get_job(again)["name"] == "sentiment · pfeiffer"
    assert pending_job_ids() == {job_id, again}
    assert [j["id"] for j in api.list_jobs()] == [again, job_id]


def test_a_folder_dataset_is_snapshotted_as_parquet(home, spec, tmp_path):
    import datasets
    import pandas as pd

    rows = {"text": POSITIVE * 3 + NEGATIVE * 3, "label": ["pos"] * 24 + ["neg"] * 24}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    job = api.get_job(api.submit({**spec, "data": str(tmp_path / "saved")}))
    assert job["data"]["kind"] == "folder" and job["data"]["path"].endswith(".parquet")
    assert pd.read_parquet(job["spec"]["data"]).to_dict("list") == rows


@pytest.mark.parametrize("change, error, message", [
    ({"label_column": "sentiment"}, DataError, "no column 'sentiment'"),
    ({"data": "single-class"}, DataError, "single class"),
    ({"data": "missing.csv"}, DataError, "no such file"),
    ({"method": "adamix"}, ConfigError, "Unknown method 'adamix'"),
    ({"reduction_factor": 64}, ConfigError, "too large for hidden size 32"),
    ({"base_model": "/no/such/model"}, ConfigError, "does not exist"),
    ({"epochs": "three"}, ConfigError, "Epochs must be a number"),
    ({"batch_size": 0}, ConfigError, "Batch size must be at least 1"),
    ({"output": "somewhere"}, ConfigError, "Unknown job setting 'output'"),
])
def test_a_bad_spec_is_refused_before_it_is_queued(home, spec, tmp_path, change, error, message):
    if change.get("data") == "single-class":
        change = {"data": str(write_csv(tmp_path / "one.csv", [{"text": t, "label": "pos"} for t in POSITIVE]))}
    elif change.get("data"):
        change = {"data": str(tmp_path / change["data"])}
    with pytest.raises(error, match=re.escape(message)):
        api.submit({**spec, **change})
    assert api.list_jobs() == [] and uploads(home) == [] and pending_job_ids() == set()


def test_a_job_trains_with_progress_curves_and_an_adapter_then_deletes_with_its_files(home, spec):
    job_id = api.submit(spec)
    runner.run_job(job_id)
    job = api.get_job(job_id)
    assert (job["state"], job["progress"], job["attempts"], job["error"]) == ("succeeded", 1.0, 1, None)
    assert job["worker_id"] == runner.worker_id() and job["device"] == "cpu" and job["eta_seconds"] is None
    assert job["started_at"] <= job["finished_at"]

    steps = job["steps"]
    assert [s["step"] for s in steps] == sorted({s["step"] for s in steps}) and steps[-1]["epoch"] == 2.0
    assert steps[-1]["step"] == steps[-1]["total_steps"] and {s["attempt"] for s in steps} == {1}
    assert set(steps[0]) >= {"step", "total_steps", "epoch", "loss", "learning_rate", "samples_per_second",
                             "eta_seconds"}
    assert [h["epoch"] for h in job["history"]] == [1, 2]
    assert set(job["history"][0]) == {"epoch", "train_loss", "loss", "accuracy", "macro_f1"}
    assert set(job["metrics"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels"}
    assert job["labels"] == ["neg", "pos"] and job["best_epoch"] in (1, 2)

    adapter = Path(job["adapter_dir"])
    assert adapter == home / "adapters" / job_id
    assert Predictor().predict(adapter, "i love it")["label"] in ("neg", "pos")
    assert not (home / "checkpoints" / job_id).exists()  # only unfinished jobs keep checkpoints
    assert [(a["id"], a["labels"], a["adapter_dir"]) for a in api.finished_adapters()] == \
        [(job_id, ["neg", "pos"], str(adapter))]

    api.delete(job_id)
    assert not adapter.exists() and uploads(home) == [] and api.finished_adapters() == []
    with pytest.raises(api.JobNotFound, match=f"No job '{job_id}'"):
        api.get_job(job_id)


def test_delete_keeps_an_upload_another_job_uses(home, spec):
    first, second = api.submit(spec), api.submit(spec)
    api.delete(first)
    assert len(uploads(home)) == 1
    api.delete(second)
    assert uploads(home) == []


def test_a_cancelled_queued_job_never_runs_and_retry_runs_it(home, spec):
    job_id = api.submit({**spec, "epochs": 1})
    job = api.cancel(job_id)
    assert job["state"] == "cancelled" and job["finished_at"] is not None
    runner.run_job(job_id)  # its queue message arrives anyway
    job = api.get_job(job_id)
    assert (job["state"], job["attempts"], job["started_at"], job["steps"]) == ("cancelled", 0, None, [])
    with pytest.raises(api.JobStateError, match="already cancelled"):
        api.cancel(job_id)

    assert api.retry(job_id) == job_id
    assert api.get_job(job_id)["state"] == "queued" and job_id in pending_job_ids()
    with pytest.raises(api.JobStateError, match="only failed, cancelled or interrupted"):
        api.retry(job_id)
    runner.run_job(job_id)
    assert api.get_job(job_id)["state"] == "succeeded"


def test_errors_at_the_worker_are_labelled_data_or_config_errors(home, spec, tiny_bert, tmp_path):
    model = shutil.copytree(tiny_bert, tmp_path / "model-to-remove")
    config_job = api.submit({**spec, "base_model": str(model)})
    shutil.rmtree(model)
    other = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data_job = api.submit({**spec, "data": str(write_csv(tmp_path / "other.csv", other * 2))})
    (home / api.get_job(data_job)["data"]["path"]).unlink()
    for job_id in (config_job, data_job):
        runner.run_job(job_id)
    config_failed, data_failed = api.get_job(config_job), api.get_job(data_job)
    assert (config_failed["state"], config_failed["error_kind"]) == ("failed", "config error")
    assert "model-to-remove" in config_failed["error"] and "Traceback" in config_failed["traceback"]
    assert (data_failed["state"], data_failed["error_kind"]) == ("failed", "data error")
    assert "no such file" in data_failed["error"] and "\n" not in data_failed["error"]


def test_failure_messages_say_what_to_do():
    job = Job(spec={"batch_size": 32}, batch_size=16)
    kind, message = runner.failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), job)
    assert kind == "out of memory" and "batch size 16 (retried after running out at 32)" in message
    assert runner.failure(DataError("x.csv: the file is empty."), job) == ("data error", "x.csv: the file is empty.")
    assert runner.failure(RuntimeError("cuDNN error\n(details)"), job) == \
        ("internal error", "Training stopped by an unexpected error: RuntimeError: cuDNN error")


def dead_worker_id() -> str:
    """The id a worker on this machine had, whose process has ended."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}"


def test_jobs_of_dead_workers_are_requeued_then_failed_after_max_attempts(home, spec, monkeypatch):
    monkeypatch.setenv("ADAPTERLAB_MAX_ATTEMPTS", "2")
    job_id, dead, me = api.submit(spec), dead_worker_id(), runner.worker_id()
    get_huey().flush()
    assert store.claim(job_id, dead, "cuda:0").attempts == 1
    with pytest.raises(api.JobStateError, match="cancel it"):
        api.delete(job_id)
    assert recovery.recover(me) == [job_id]
    assert api.get_job(job_id)["state"] == "interrupted" and pending_job_ids() == {job_id}

    assert store.claim(job_id, dead, "cuda:0").attempts == 2
    assert recovery.recover(me) == [job_id]
    job = api.get_job(job_id)
    assert (job["state"], job["error_kind"]) == ("failed", "worker lost")
    assert "2 times" in job["error"] and dead in job["error"]


def test_only_dead_or_silent_workers_lose_their_jobs(home, spec, monkeypatch):
    monkeypatch.setenv("ADAPTERLAB_STALE_AFTER_SECONDS", "600")
    me = runner.worker_id()
    remote, mine, cancelling = api.submit(spec), api.submit(spec), api.submit(spec)
    store.claim(remote, "gpu-box-2:1234", "cuda:0")
    store.claim(mine, me, "cpu")
    store.claim(cancelling, dead_worker_id(), "cpu")
    api.cancel(cancelling)
    assert recovery.recover(me) == [cancelling]  # a live remote worker and this process keep theirs
    assert api.get_job(cancelling)["state"] == "cancelled"

    with db.session() as s:
        s.get(Job, remote).heartbeat_at = utcnow() - timedelta(seconds=601)
    assert api.get_job(remote)["state"] == "running"
    assert recovery.recover(me) == [remote]
    assert api.get_job(remote)["state"] == "interrupted"
    # A starting worker knows no job can be running under its own id yet (a restarted container reuses pids).
    assert recovery.recover(me, starting=True) == [mine]


def test_a_running_jobs_set_up_phase_shows_until_its_first_step(home, spec):
    job_id, me = api.submit(spec), runner.worker_id()
    store.claim(job_id, me, "cpu")
    store.record_phase(job_id, me, "tokenising 10,000 of 900,000 rows")
    assert api.get_job(job_id)["phase"] == "tokenising 10,000 of 900,000 rows"
    store.record_progress(job_id, me, 1, Progress(1, 10, 0.1, 0.7, 1e-3, 50.0, 9.0))
    assert api.get_job(job_id)["phase"] is None


def test_cancelling_a_job_whose_worker_went_silent_cancels_it_at_once(home, spec):
    job_id = api.submit(spec)
    store.claim(job_id, "gpu-box-2:1234", "cuda:0")
    assert api.cancel(job_id)["state"] == "cancelling"
    with db.session() as s:
        s.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=settings.stale_after_seconds() + 1)
    assert api.cancel(job_id)["state"] == "cancelled"


def test_waiting_jobs_missing_from_the_queue_are_queued_again(home, spec):
    waiting, cancelled = api.submit(spec), api.submit(spec)
    api.cancel(cancelled)
    get_huey().flush()
    assert pending_job_ids() == set()
    assert recovery.requeue_orphans() == [waiting]
    assert pending_job_ids() == {waiting}
    assert recovery.requeue_orphans() == []


def test_the_database_is_migrated_to_the_models_with_wal_and_a_busy_timeout(home):
    with db.get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": db.VERSION_TABLE,
                                                                  "include_name": include_name})
        assert compare_metadata(context, Base.metadata) == [], "models changed: add an Alembic migration"
        assert context.get_current_revision() == ScriptDirectory.from_config(Config(db.ALEMBIC_INI)).get_current_head()
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    assert settings.database_url() == f"sqlite:///{home / 'jobs.db'}"


def test_settings_are_read_when_called(monkeypatch, tmp_path):
    monkeypatch.delenv("ADAPTERLAB_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings.data_dir() == tmp_path / ".adapterlab"
    monkeypatch.setenv("ADAPTERLAB_DATABASE_URL", "postgresql+psycopg://db.internal/jobs")
    monkeypatch.setenv("ADAPTERLAB_REDIS_URL", "redis://queue.internal:6379/0")
    assert settings.database_url() == "postgresql+psycopg://db.internal/jobs"
    assert settings.redis_url() == "redis://queue.internal:6379/0"


def table_rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: connection.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in sorted(tables)}


def test_jobs_db_example_is_current(home, tmp_path):
    copy = tmp_path / "example.db"
    shutil.copy(example_db.EXAMPLE, copy)
    stale = "jobs.db.example is out of date: regenerate it with `python -m worker.example_db`"
    with db.make_engine(f"sqlite:///{copy}").connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": db.VERSION_TABLE,
                                                                  "include_name": include_name})
        assert context.get_current_revision() == \
            ScriptDirectory.from_config(Config(db.ALEMBIC_INI)).get_current_head(), stale
        assert compare_metadata(context, Base.metadata) == [], stale
    example_db.build(tmp_path / "rebuilt.db")
    assert table_rows(copy) == table_rows(tmp_path / "rebuilt.db"), stale

    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(example_db.EXAMPLE, home / "jobs.db")
    assert [(j["id"], j["state"]) for j in api.list_jobs()] == \
        [("exqueued0001", "queued"), ("exfailed0001", "failed"), ("exsucceeded1", "succeeded")]
    succeeded = api.get_job("exsucceeded1")
    assert [h["epoch"] for h in succeeded["history"]] == [1, 2, 3] and succeeded["steps"][-1]["step"] == 69
    assert succeeded["metrics"]["confusion_matrix"][0] == [10, 0, 0, 0]
    assert api.get_job("exfailed0001")["error_kind"] == "out of memory"


def test_job_commands(home, spec, capsys):
    args = ["--data", spec["data"], "--method", "ia3", "--base-model", spec["base_model"], "--epochs", "1",
            "--max-length", "32"]
    assert main(["submit", *args, "--name", "from the cli", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    assert main(["submit", *args]) == 0
    second = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", second)

    assert main(["job", job_id, "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert {k: job[k] for k in ("state", "progress", "attempts", "metrics", "adapter_dir", "error", "name")} == \
        {"state": "queued", "progress": 0.0, "attempts": 0, "metrics": None, "adapter_dir": None, "error": None,
         "name": "from the cli"}
    assert job["spec"]["method"] == "ia3"
    assert job["spec"]["learning_rate"] == methods.get("ia3").defaults["learning_rate"]

    assert main(["jobs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "STATE", "PROGRESS"] and table[2].split()[:3] == [job_id, "queued", "0%"]
    assert main(["jobs", "--json"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)] == [second, job_id]

    assert main(["cancel", job_id]) == 0
    assert capsys.readouterr().out == f"{job_id}: cancelled\n"
    assert main(["retry", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"job_id": job_id}
    assert main(["job", job_id]) == 0
    assert "state      queued (0%), attempts 0" in capsys.readouterr().out
    assert main(["delete", second]) == 0 and main(["jobs", "--json"]) == 0
    assert f"{second}: deleted" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["job", "nope"], "adapterlab: job error: No job 'nope': it does not exist or was deleted."),
    (["cancel", "nope"], "adapterlab: job error: No job 'nope': it does not exist or was deleted."),
    (["submit", "--label-column", "sentiment"], "adapterlab: data error: sentiment.csv: no column 'sentiment'"),
    (["submit", "--reduction-factor", "64"], "adapterlab: config error: Reduction factor 64 is too large"),
    (["worker", "--gpu", "7"], "adapterlab: config error: GPU 7 is not available"),
])
def test_job_command_errors_are_one_line_with_exit_2(home, spec, capsys, argv, message):
    if argv[0] == "submit":
        argv += ["--data", spec["data"], "--method", "pfeiffer", "--base-model", spec["base_model"]]
    if argv[0] == "worker" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a GPU 7")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_a_store_made_before_searches_moves_its_revision_out_of_optunas_table(home):
    home.mkdir(parents=True)
    url = settings.database_url()
    old = db.make_engine(url)
    config = Config(str(db.ALEMBIC_INI))
    with old.begin() as connection:  # the store as 0002 left it: our revision in `alembic_version`
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.exec_driver_sql(f"ALTER TABLE {db.VERSION_TABLE} RENAME TO alembic_version")
    old.dispose()
    with db.get_engine().connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("jobs")}
        assert "alembic_version" not in inspect(connection).get_table_names() and "kind" in columns
        assert connection.exec_driver_sql(f"SELECT version_num FROM {db.VERSION_TABLE}").scalar() == \
            ScriptDirectory.from_config(config).get_current_head()
    study = optuna.create_study(storage=url, study_name="after-the-move")  # Optuna now stamps its own
    assert study.study_name in optuna.get_all_study_names(storage=url)
    with db.get_engine().connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() != \
            connection.exec_driver_sql(f"SELECT version_num FROM {db.VERSION_TABLE}").scalar()
