"""The scale-out setup against real servers: two `adapterlab worker` processes pull from one Redis queue into one
PostgreSQL job store (the data directory is shared, as it would be over a network file system).

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth, user root or postgres, database
`test`); each test skips, saying which, where a server is absent. Tables go into a schema of their own and the
queue has a name of its own, both removed afterwards.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import ROOT
from sqlalchemy import text
from test_worker import WORKER_ENV, resumed_after_an_epoch, start_worker, stop, wait_final, wait_for

from worker import api, db, job_queue, settings

pytestmark = pytest.mark.services
REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not running on 127.0.0.1:6379 ({exc})")
    return client


def _postgres_url_or_skip() -> str:
    import psycopg

    errors = []
    for user in ("root", "postgres"):
        try:
            psycopg.connect(f"postgresql://{user}@127.0.0.1:5432/test", connect_timeout=2).close()
            return f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    pytest.skip(f"PostgreSQL database 'test' is not reachable on 127.0.0.1:5432 ({'; '.join(errors)})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A Redis server of the test's own, without persistence (as Redis often runs): stopping it loses the queue."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port, self.folder = _free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_for(lambda: self._answers(client), "the test's Redis to start")

    @staticmethod
    def _answers(client) -> bool:
        import redis

        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture()
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def scaled_out(tmp_path, monkeypatch, request) -> Iterator[Path]:
    """Environment for a Redis queue and a PostgreSQL job store (own schema, own queue name); yields the home.
    The queue is the test's own Redis where it asks for `own_redis`, else the one on 6379."""
    own = request.getfixturevalue("own_redis") if "own_redis" in request.fixturenames else None
    client = None if own else _redis_or_skip()
    url = _postgres_url_or_skip()
    schema, queue = f"adapterlab_test_{uuid.uuid4().hex[:8]}", f"adapterlab_test_{uuid.uuid4().hex[:8]}"
    import psycopg

    admin_url = url.replace("+psycopg", "")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    home = tmp_path / "shared-home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_DATABASE_URL", f"{url}?options=-csearch_path%3D{schema}")
    monkeypatch.setenv("ADAPTERLAB_REDIS_URL", own.url if own else REDIS_URL)
    monkeypatch.setenv("ADAPTERLAB_QUEUE_NAME", queue)
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ADAPTERLAB_DEVICE", raising=False)
    try:
        yield home
    finally:
        db.get_engine().dispose()
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
        keys = client.keys(f"huey.*{queue}*") if client else []
        if keys:
            client.delete(*keys)


def start_two_workers(home: Path) -> tuple[list[subprocess.Popen], list[Path]]:
    home.mkdir(parents=True, exist_ok=True)
    logs = [home / "worker-a.log", home / "worker-b.log"]
    workers = [start_worker(log) for log in logs]
    try:
        for log in logs:
            wait_for(lambda log=log: "Huey consumer started" in log.read_text(), f"{log.name} to start", log)
    except AssertionError:
        for w in workers:
            w.kill()
            w.wait()
        raise
    return workers, logs


@pytest.fixture()
def spec(tiny_bert, sentiment_csv) -> dict:
    return {"data": str(sentiment_csv), "method": "pfeiffer", "base_model": str(tiny_bert), "batch_size": 4,
            "max_length": 32}


def test_two_workers_share_one_redis_queue_and_one_postgres_job_store(scaled_out, spec):
    workers, logs = start_two_workers(scaled_out)
    try:
        long_jobs = [api.submit({**spec, "epochs": 8, "name": f"long {i}"}) for i in range(2)]
        short_jobs = [api.submit({**spec, "epochs": 1, "method": m}) for m in ("houlsby", "ia3")]
        cancelled = api.submit(spec)
        api.cancel(cancelled)
        jobs = [wait_final(job_id, logs[0]) for job_id in long_jobs + short_jobs]
    finally:
        codes = [stop(w) for w in workers]
    assert [j["state"] for j in jobs] == ["succeeded"] * 4, [j["error"] for j in jobs]
    # While one worker trains the first long job the other must take the second: both workers did work.
    assert len({j["worker_id"] for j in jobs[:2]}) == 2
    assert {j["worker_id"].rsplit(":", 1)[1] for j in jobs} <= {str(w.pid) for w in workers}
    assert all(j["steps"] and len(j["history"]) == j["spec"]["epochs"] for j in jobs)
    assert api.get_job(cancelled)["attempts"] == 0 and codes == [0, 0]
    assert db.get_engine().dialect.name == "postgresql"


def test_a_job_whose_worker_is_killed_is_resumed_by_the_other_worker(scaled_out, spec):
    workers, logs = start_two_workers(scaled_out)
    try:
        job_id = api.submit({**spec, "epochs": 12})
        wait_for(lambda: any(s["epoch"] > 2 for s in api.get_job(job_id)["steps"]), "epoch 3 to start", logs[0])
        victim = next(w for w in workers if api.get_job(job_id)["worker_id"].endswith(f":{w.pid}"))
        victim.kill()
        victim.wait()
        job = wait_final(job_id, logs[0])
    finally:
        for w in workers:
            if w.poll() is None:
                stop(w)
    survivor = next(w for w in workers if w is not victim)
    assert (job["state"], job["attempts"]) == ("succeeded", 2), job["error"]
    assert job["worker_id"].endswith(f":{survivor.pid}") and resumed_after_an_epoch(job)


def test_two_workers_run_one_search_s_trials_in_parallel_each_once(scaled_out, spec):
    workers, logs = start_two_workers(scaled_out)
    try:
        done = subprocess.run([sys.executable, "-m", "app.cli", "search", "--data", spec["data"], "--base-model",
                               spec["base_model"], "--batch-size", "4", "--max-length", "32", "--methods",
                               "pfeiffer,ia3", "--trials", "3", "--parallel", "2", "--budget-minutes", "5", "--wait",
                               "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        codes = [stop(w) for w in workers]
    assert done.returncode == 0, done.stderr + logs[0].read_text()[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "succeeded" and len(result["trials"]) == 3 and codes == [0, 0]
    assert {"job_id", "method", "macro_f1"} <= set(result["best"]) and result["best"]["job_id"] in \
        [t["job_id"] for t in result["trials"]]
    assert all({"job_id", "state", "method", "macro_f1"} <= set(t) for t in result["trials"])
    trials = [api.get_job(t["job_id"]) for t in result["trials"]]
    assert [(t["state"], t["attempts"]) for t in trials] == [("succeeded", 1)] * 3, [t["error"] for t in trials]
    assert len({t["worker_id"] for t in trials}) == 2  # two at a time: both workers ran trials
    assert sorted(t["trial"]["number"] for t in trials) == [0, 1, 2]
    study = optuna.load_study(study_name=api.get_job(result["search_id"])["search"]["study"],
                              storage=settings.database_url())  # in PostgreSQL, beside the jobs
    assert len(study.trials) == 3 and db.get_engine().dialect.name == "postgresql"


def test_a_redis_restart_that_loses_the_queue_loses_no_job_and_runs_none_twice(own_redis, scaled_out, spec):
    """The job store is the source of truth: the waiting jobs whose messages went with Redis are queued again by
    the running worker; the running one finishes; each job runs once."""
    scaled_out.mkdir(parents=True, exist_ok=True)
    log = scaled_out / "worker.log"
    worker = start_worker(log)
    try:
        wait_for(lambda: "Huey consumer started" in log.read_text(), "the worker to start", log)
        running = api.submit({**spec, "epochs": 6, "name": "running"})
        queued = [api.submit({**spec, "epochs": 1, "name": f"queued {i}"}) for i in range(2)]
        wait_for(lambda: api.get_job(running)["steps"], "the first job to train", log)
        own_redis.stop()  # every queue message is gone with it
        time.sleep(1)
        own_redis.start()
        jobs = [wait_final(job_id, log) for job_id in [running, *queued]]
    finally:
        code = stop(worker)
    assert [j["state"] for j in jobs] == ["succeeded"] * 3, [j["error"] for j in jobs]
    assert [j["attempts"] for j in jobs] == [1, 1, 1]  # none ran twice
    assert "waiting but not in the queue" in log.read_text() and code == 0


def test_a_worker_killed_between_taking_a_job_from_the_queue_and_claiming_it_loses_no_job(scaled_out, spec):
    """The window at-most-once delivery leaves open: Redis has handed the message over, the job store still says
    `queued`. The worker is caught in it for real: a transaction of the test's holds the job's row locked, so the
    worker's claim waits on it, and the worker is killed there. A worker started afterwards finds the job waiting
    with no message, queues it again and runs it, once."""
    scaled_out.mkdir(parents=True, exist_ok=True)
    job_id = api.submit({**spec, "epochs": 1, "name": "caught in its claim"})
    first_log, second_log = scaled_out / "worker-a.log", scaled_out / "worker-b.log"
    with db.get_engine().connect() as holder, db.get_engine().connect() as watcher:
        holder.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
        first = start_worker(first_log)
        def claim_waits() -> bool:
            waiting = watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND query ILIKE 'UPDATE jobs SET state%'")).scalar()
            watcher.rollback()  # pg_stat_activity is read once per transaction
            return bool(waiting)

        wait_for(claim_waits, "the worker's claim to wait on the locked row", first_log)
        assert job_id not in job_queue.pending_job_ids()  # the message is out of Redis, in the worker
        first.kill()
        first.wait()
        holder.rollback()
    assert (api.get_job(job_id)["state"], api.get_job(job_id)["attempts"]) == ("queued", 0)
    second = start_worker(second_log)
    try:
        job = wait_final(job_id, second_log)
    finally:
        code = stop(second)
    assert (job["state"], job["attempts"]) == ("succeeded", 1), job["error"]
    assert job["worker_id"].endswith(f":{second.pid}") and code == 0


@pytest.fixture()
def own_database(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL database of the test's own as the job store (the queue stays the embedded SQLite one), so
    the test can shut it to connections: (its name, the data directory)."""
    import psycopg

    url = _postgres_url_or_skip()
    admin_url, name = url.replace("+psycopg", ""), f"adapterlab_fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_DATABASE_URL", url.rsplit("/", 1)[0] + f"/{name}")
    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("ADAPTERLAB_REDIS_URL", "ADAPTERLAB_QUEUE_NAME", "ADAPTERLAB_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    try:
        yield name, home
    finally:
        db.get_engine().dispose()
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _shut(name: str, shut: bool) -> None:
    """Refuse new connections to the database and cut the open ones (or let them in again): to its clients, the
    job store is down."""
    import psycopg

    with psycopg.connect(_postgres_url_or_skip().replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {'false' if shut else 'true'}")
        if shut:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_the_job_store_down_for_30_s_mid_job_loses_no_progress_and_the_job_finishes(own_database, spec):
    name, home = own_database
    log = home / "worker.log"
    worker = start_worker(log)
    try:
        wait_for(lambda: "Huey consumer started" in log.read_text(), "the worker to start", log)
        job_id = api.submit({**spec, "epochs": 8})
        wait_for(lambda: any(s["epoch"] > 1 for s in api.get_job(job_id)["steps"]), "the second epoch", log)
        _shut(name, True)
        time.sleep(30)  # the worker keeps training, its writes waiting for the store
        _shut(name, False)
        job = wait_final(job_id, log)
    finally:
        code = stop(worker)
    assert (job["state"], job["attempts"]) == ("succeeded", 1), job["error"]
    steps = [s["step"] for s in job["steps"]]
    assert steps == sorted(set(steps)) and steps[-1] == job["steps"][-1]["total_steps"]  # none lost twice or out
    assert [h["epoch"] for h in job["history"]] == list(range(1, 9))
    assert "job store unreachable" in log.read_text() and code == 0
