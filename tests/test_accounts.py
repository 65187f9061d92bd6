"""Accounts in the job store: `adapterlab users` and `tokens`, argon2 hashes, and who may see and change which job
through the jobs API and the command line, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.cli import main
from tests.test_jobs import home  # noqa: F401  (the fixture, used by name)
from tests.test_services import _postgres_url_or_skip
from worker import api, db, users
from worker.access import MACHINE, AccessDenied, Actor
from worker.models import User


@pytest.fixture()
def spec(tiny_bert, sentiment_csv) -> dict:
    return {"data": str(sentiment_csv), "method": "ia3", "base_model": str(tiny_bert), "epochs": 1, "batch_size": 8,
            "max_length": 32}


def cli(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_and_tokens_from_the_command_line(home, monkeypatch, capsys):  # noqa: F811
    assert not users.accounts_enabled()
    code, out, err = cli(monkeypatch, capsys, "users", "add", "ana", "--password-stdin", stdin="correct horse\n")
    assert code == 0 and "added user ana" in out and "first user" in err
    code, _, _ = cli(monkeypatch, capsys, "users", "add", "root", "--admin", "--password-stdin",
                     stdin="battery staple\n")
    assert code == 0
    with db.session() as s:
        stored = s.get(User, "ana").password_hash
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert users.check_password("ana", "correct horse") and not users.check_password("ana", "Correct horse")
    assert not users.check_password("nobody", "correct horse")

    code, out, _ = cli(monkeypatch, capsys, "users", "list", "--json")
    assert [(u["name"], u["admin"]) for u in json.loads(out)] == [("ana", False), ("root", True)]
    code, _, err = cli(monkeypatch, capsys, "users", "add", "ana", "--password-stdin", stdin="another one\n")
    assert code == 2 and "already a user 'ana'" in err
    code, _, err = cli(monkeypatch, capsys, "users", "add", "bo", "--password-stdin", stdin="short\n")
    assert code == 2 and "too short" in err and "Traceback" not in err
    code, _, err = cli(monkeypatch, capsys, "users", "add", "../x", "--password-stdin", stdin="long enough\n")
    assert code == 2 and "A user name is" in err

    assert cli(monkeypatch, capsys, "users", "passwd", "ana", "--password-stdin", stdin="new password\n")[0] == 0
    assert users.check_password("ana", "new password") and not users.check_password("ana", "correct horse")

    code, out, _ = cli(monkeypatch, capsys, "tokens", "create", "--user", "ana", "--json")
    token = json.loads(out)["token"]
    assert code == 0 and users.token_actor(token) == Actor("ana")
    assert users.token_actor(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # one character off
    assert users.token_actor("al_000000000000_" + "x" * 43) is None
    code, out, _ = cli(monkeypatch, capsys, "tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["user"] for t in listed] == ["ana"] and token not in out  # only the id is ever shown again
    assert cli(monkeypatch, capsys, "tokens", "revoke", listed[0]["id"])[0] == 0
    assert users.token_actor(token) is None
    code, _, err = cli(monkeypatch, capsys, "tokens", "create", "--user", "nobody")
    assert code == 2 and "no user 'nobody'" in err


def _two_users() -> tuple[Actor, Actor, Actor]:
    users.add("ana", "ana's password")
    users.add("bo", "bo's password")
    users.add("root", "root's password", admin=True)
    return users.actor("ana"), users.actor("bo"), users.actor("root")


def _each_refused(actor: Actor, job_id: str) -> None:
    for action in (lambda: api.get_job(job_id, actor), lambda: api.cancel(job_id, actor),
                   lambda: api.retry(job_id, actor), lambda: api.delete(job_id, actor),
                   lambda: api.share(job_id, True, actor), lambda: api.like_spec(job_id, None, actor)):
        with pytest.raises(api.JobNotFound, match=f"No job '{job_id}'"):  # the same words as a job that is not there
            action()


def access_rules(spec: dict, caplog) -> None:
    ana, bo, root = _two_users()
    mine, theirs = api.submit(spec, actor=ana), api.submit(spec, actor=bo)
    machine = api.submit(spec)  # the machine's own (no owner): the admins'
    assert [j["id"] for j in api.list_jobs(ana)] == [mine]
    assert {j["id"] for j in api.list_jobs(root)} == {j["id"] for j in api.list_jobs(MACHINE)} == \
        {mine, theirs, machine}
    assert api.get_job(mine, ana)["owner"] == "ana"
    with caplog.at_level(logging.WARNING, logger="adapterlab.access"):
        _each_refused(ana, theirs)
        _each_refused(ana, machine)
    refusals = [r.getMessage() for r in caplog.records if r.name == "adapterlab.access"]
    assert len(refusals) == 12 and f"refused: ana tried to delete job {theirs} (owner: bo)" in refusals
    assert api.get_job(theirs)["state"] == "queued"  # nothing was done

    shared = api.share(theirs, True, bo)
    assert shared["shared"] and theirs in {j["id"] for j in api.list_jobs(ana)}
    assert api.get_job(theirs, ana)["id"] == theirs and api.like_spec(theirs, None, ana)["method"] == "ia3"
    with pytest.raises(AccessDenied, match="belongs to bo: only its owner or an admin can delete it"):
        api.delete(theirs, ana)
    with pytest.raises(AccessDenied):
        api.cancel(theirs, ana)
    copy = api.submit(api.like_spec(theirs, None, ana), like=theirs, actor=ana)  # train a shared job's settings again
    assert api.get_job(copy, ana)["owner"] == "ana"

    api.cancel(theirs, root)  # an admin changes anyone's job
    api.delete(theirs, root)
    assert users.remove("ana") == 2  # her jobs stay, with the admins
    assert {j["owner"] for j in api.list_jobs()} == {None}
    assert users.actor("ana") is None


def test_a_user_sees_and_changes_only_their_own_and_shared_jobs(home, spec, caplog):  # noqa: F811
    access_rules(spec, caplog)


@pytest.mark.services
def test_accounts_on_postgresql(tmp_path, monkeypatch, spec, caplog):
    """Migration 0005 and the same rules with the job store on PostgreSQL (a schema of the test's own)."""
    import uuid

    import psycopg

    url, schema = _postgres_url_or_skip(), f"adapterlab_test_{uuid.uuid4().hex[:8]}"
    admin_url = url.replace("+psycopg", "")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERLAB_DATABASE_URL", f"{url}?options=-csearch_path%3D{schema}")
    monkeypatch.delenv("ADAPTERLAB_REDIS_URL", raising=False)
    try:
        access_rules(spec, caplog)
        assert db.get_engine().dialect.name == "postgresql"
    finally:
        db.get_engine().dispose()
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def test_the_command_line_acts_as_the_user_of_its_token(home, spec, monkeypatch, capsys):  # noqa: F811
    ana, bo, _ = _two_users()
    theirs = api.submit(spec, actor=bo)
    token = users.create_token("ana")["token"]
    code, out, _ = cli(monkeypatch, capsys, "jobs", "--json", "--token", token)
    assert code == 0 and json.loads(out) == []
    for command in (["job", theirs], ["cancel", theirs], ["delete", theirs], ["share", theirs]):
        code, _, err = cli(monkeypatch, capsys, *command, "--token", token)
        assert code == 2 and f"No job '{theirs}'" in err and "Traceback" not in err
    monkeypatch.setenv("ADAPTERLAB_TOKEN", token)
    code, out, _ = cli(monkeypatch, capsys, "submit", "--like", theirs)
    assert code == 2
    monkeypatch.delenv("ADAPTERLAB_TOKEN")
    code, _, err = cli(monkeypatch, capsys, "jobs", "--token", "al_not_a_token")
    assert code == 2 and "not valid" in err
    code, out, _ = cli(monkeypatch, capsys, "jobs")  # the machine itself: every job, with its owner
    assert code == 0 and theirs in out and "OWNER" in out and "bo" in out
    code, out, _ = cli(monkeypatch, capsys, "share", theirs)
    assert code == 0 and "shared with every user" in out
    code, out, _ = cli(monkeypatch, capsys, "jobs", "--json", "--token", token)
    assert [j["id"] for j in json.loads(out)] == [theirs]
