"""Real Huey consumers (`adapterlab worker`) in subprocesses on the embedded SQLite queue and job store:
jobs run to the end, cancel, survive kill -9 and a graceful stop, and a batch of ten all finish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import torch
from conftest import NEGATIVE, POSITIVE, ROOT, write_csv

from worker import api, settings
from worker.embedded import start_embedded_worker, stop_embedded_worker

TIMEOUT = 240  # seconds a test waits for a state before it fails (a deadline, not a measured assertion)
FINAL = ("succeeded", "failed", "cancelled")
WORKER_ENV = {"ADAPTERLAB_HEARTBEAT_SECONDS": "0.2", "ADAPTERLAB_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1",
              "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def set_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point this process (the API) and the workers it starts (inherit the environment) at `home`."""
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("ADAPTERLAB_DATABASE_URL", "ADAPTERLAB_REDIS_URL", "ADAPTERLAB_QUEUE_NAME", "ADAPTERLAB_DEVICE"):
        monkeypatch.delenv(name, raising=False)


def start_worker(log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--cpu"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], object], what: str, log: Path | None = None) -> object:
    """Poll until `condition()` is truthy; fail with the worker's log after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def wait_final(job_id: str, log: Path | None = None) -> dict:
    return wait_for(lambda: (job := api.get_job(job_id))["state"] in FINAL and job, f"job {job_id} to end", log)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(TIMEOUT)


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Iterator[tuple[Path, subprocess.Popen, Path]]:
    """One worker shared by this module's tests that need only a running worker: (home, process, log)."""
    home = tmp_path_factory.mktemp("worker-home")
    log = home / "worker.log"
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_env(monkeypatch, home)
        process = start_worker(log)
        yield home, process, log
        assert stop(process) == 0, log.read_text()[-3000:]


@pytest.fixture()
def spec(tiny_bert, sentiment_csv) -> dict:
    return {"data": str(sentiment_csv), "method": "pfeiffer", "base_model": str(tiny_bert), "epochs": 2,
            "batch_size": 4, "max_length": 32}


def test_a_job_runs_to_succeeded_with_progress_rows(worker, spec):
    home, process, log = worker
    job = wait_final(api.submit(spec), log)
    assert (job["state"], job["progress"], job["attempts"]) == ("succeeded", 1.0, 1), job["error"]
    assert job["worker_id"].endswith(f":{process.pid}") and job["device"] == "cpu"
    assert len(job["steps"]) >= 2 and job["steps"][-1]["step"] == job["steps"][-1]["total_steps"]
    assert [h["epoch"] for h in job["history"]] == [1, 2]
    assert (Path(job["adapter_dir"]) / "adapterlab.json").is_file()


def test_cancel_a_queued_and_a_running_job(worker, spec):
    _, _, log = worker
    running = api.submit({**spec, "epochs": 500, "name": "long"})
    queued = api.submit(spec)
    wait_for(lambda: api.get_job(running)["steps"], "the long job to report progress", log)
    assert api.cancel(queued)["state"] == "cancelled"
    assert api.cancel(running)["state"] == "cancelling"

    job = wait_final(running, log)
    assert job["state"] == "cancelled" and 0 < job["progress"] < 1 and job["metrics"]["labels"] == ["neg", "pos"]
    assert (Path(job["adapter_dir"]) / "adapterlab.json").is_file()  # the best adapter so far is kept
    assert running in [a["id"] for a in api.finished_adapters()]
    never = api.get_job(queued)
    assert (never["state"], never["attempts"], never["started_at"]) == ("cancelled", 0, None)


def test_ten_queued_jobs_all_reach_a_final_state(worker, spec):
    _, _, log = worker
    methods = ["pfeiffer", "houlsby", "ia3"]
    ids = [api.submit({**spec, "epochs": 1, "method": methods[i % 3], "name": f"batch {i}"}) for i in range(10)]
    jobs = [wait_final(job_id, log) for job_id in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 10, [j["error"] for j in jobs]
    assert all(j["attempts"] == 1 and j["history"] for j in jobs)


def resumed_after_an_epoch(job: dict) -> bool:
    """The second attempt's first progress row comes after the first attempt's last finished epoch."""
    per_epoch = job["steps"][-1]["total_steps"] // job["spec"]["epochs"]
    second = [s["step"] for s in job["steps"] if s["attempt"] == 2]
    return bool(second) and min(second) > per_epoch


def _within_second_epoch(checkpoint: Path) -> bool:
    """The checkpoint on disk (written whole, then renamed into place) was taken inside the second epoch: the
    progress rows can run ahead of the next timed checkpoint."""
    if not checkpoint.is_file():
        return False
    saved = torch.load(checkpoint, weights_only=False)
    return saved["epoch"] == 1 and saved["batches_done"] > 0


def test_kill_9_mid_epoch_and_a_restart_resume_from_the_timed_checkpoint_to_the_same_adapter(tmp_path, monkeypatch,
                                                                                              tiny_bert):
    home = tmp_path / "home"
    set_env(monkeypatch, home)
    monkeypatch.setenv("ADAPTERLAB_CHECKPOINT_MINUTES", "0.002")  # a checkpoint every 0.12 s of training
    log = tmp_path / "worker.log"
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 38] + [{"text": t, "label": "neg"} for t in NEGATIVE * 38]
    spec = {"data": str(write_csv(tmp_path / "reviews.csv", rows)), "method": "pfeiffer", "base_model": str(tiny_bert),
            "epochs": 2, "batch_size": 4, "max_length": 32, "base_dropout": True}  # dropout: the RNG must resume
    killed, uninterrupted = api.submit(spec), api.submit(spec)  # one name: the adapters' weights share their keys
    checkpoint = home / "checkpoints" / killed / "checkpoint.pt"
    first = start_worker(log)
    try:
        wait_for(lambda: any(1.3 < s["epoch"] < 1.8 for s in api.get_job(killed)["steps"])
                 and _within_second_epoch(checkpoint), "a timed checkpoint within the second epoch", log)
    finally:
        first.kill()
        first.wait()
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["epoch"] == 1 and saved["batches_done"] > 0  # taken within the second epoch
    assert api.get_job(killed)["state"] == "running"  # as the dead worker left it

    second = start_worker(log)
    try:
        jobs = [wait_final(job_id, log) for job_id in (killed, uninterrupted)]
    finally:
        stop(second)
    assert [(j["state"], j["attempts"]) for j in jobs] == [("succeeded", 2), ("succeeded", 1)], jobs[0]["error"]
    per_epoch = jobs[0]["steps"][-1]["total_steps"] // 2
    assert min(s["step"] for s in jobs[0]["steps"] if s["attempt"] == 2) > per_epoch + saved["batches_done"]
    assert jobs[0]["history"] == jobs[1]["history"] and "is gone; job interrupted" in log.read_text()
    ours, theirs = (torch.load(Path(j["adapter_dir"]) / "pytorch_adapter.bin", weights_only=True) for j in jobs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    assert not checkpoint.parent.exists()  # removed once the job succeeded


def test_stopping_the_embedded_worker_requeues_its_job_and_a_new_one_resumes_it(tmp_path, monkeypatch, spec):
    home = tmp_path / "home"
    set_env(monkeypatch, home)
    job_id = api.submit({**spec, "epochs": 12})
    first = start_embedded_worker()
    try:
        wait_for(lambda: api.get_job(job_id)["history"], "the first epoch to end", home / "worker.log")
    finally:
        assert stop_embedded_worker(first) == 0
    job = api.get_job(job_id)
    assert job["state"] == "interrupted" and job["attempts"] == 1 and job["error"] is None

    second = start_embedded_worker()
    try:
        job = wait_final(job_id, home / "worker.log")
    finally:
        stop_embedded_worker(second)
    assert (job["state"], job["attempts"]) == ("succeeded", 2) and resumed_after_an_epoch(job)


def test_an_embedded_worker_stops_when_the_app_that_started_it_dies(tmp_path, monkeypatch):
    set_env(monkeypatch, tmp_path / "home")
    app = subprocess.Popen([sys.executable, "-c", "import sys, time; from worker.embedded import "
                            "start_embedded_worker as s; print(s().pid, flush=True); time.sleep(600)"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    worker_pid = int(app.stdout.readline())
    wait_for(lambda: "Huey consumer started" in (tmp_path / "home" / "worker.log").read_text(), "the worker")
    app.kill()
    app.wait()
    wait_for(lambda: not _alive(worker_pid), "the orphaned worker to exit", tmp_path / "home" / "worker.log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # an exited orphan may linger as a zombie where nobody reaps it
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_search_whose_worker_is_killed_resumes_its_trial_and_finishes_within_its_budget(tmp_path, monkeypatch,
                                                                                          tiny_bert):
    set_env(monkeypatch, tmp_path / "home")
    log = tmp_path / "worker.log"
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 15] + [{"text": t, "label": "neg"} for t in NEGATIVE * 15]
    data = write_csv(tmp_path / "reviews.csv", rows)  # 240 rows: an epoch lasts long enough to be killed in
    search_id = api.submit_search({"data": str(data), "base_model": str(tiny_bert), "batch_size": 4,
                                   "max_length": 32}, {"budget_minutes": 4, "methods": ["pfeiffer"], "max_trials": 2})
    first = start_worker(log)
    try:
        wait_for(lambda: any(t["state"] == "running" and t["history"] for t in api.trials(search_id)),
                 "a trial's first epoch to end", log)
    finally:
        first.kill()
        first.wait()
    (killed,) = [t for t in api.trials(search_id) if t["state"] == "running"]  # as the dead worker left it

    second = start_worker(log)
    try:
        found = wait_for(lambda: (job := api.get_job(search_id))["state"] in FINAL and job, "the search to end", log)
    finally:
        stop(second)
    trials = api.trials(search_id)
    assert found["state"] == "succeeded" and len(trials) == 2, found["error"]
    assert sorted(t["trial"]["number"] for t in trials) == [0, 1]  # each trial once
    assert all(t["state"] == "succeeded" and t["trial"]["outcome"] in ("complete", "pruned") for t in trials)
    resumed = api.get_job(killed["id"])
    assert resumed["attempts"] == 2 and resumed["worker_id"].endswith(f":{second.pid}")
    started, ended = (datetime.fromisoformat(found[k]) for k in ("started_at", "finished_at"))
    assert ended <= started + timedelta(minutes=4)
    study = optuna.load_study(study_name=found["search"]["study"], storage=settings.database_url())
    assert [t.state.name in ("COMPLETE", "PRUNED") for t in study.trials] == [True] * 2
