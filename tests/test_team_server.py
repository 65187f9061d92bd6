"""A team's server: `adapterlab serve` with users in its job store. Each analyst logs in (the page, or the Gradio
client's `auth=`) or sends an API token (`Authorization: Bearer`, to the Gradio API and to /v1), and sees,
predicts with, downloads and changes only their own jobs and the shared ones; every other attempt is refused
and logged, and guessed ids tell nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import NEGATIVE, POSITIVE, ROOT, make_tiny_model, write_csv
from tests.test_app_server import _spawn, _stop, server_env, wait_for_job

PASSWORDS = {"ana": "ana-password", "bo": "bo-password", "root": "root-password"}


@dataclass
class Team:
    url: str
    home: Path
    log: Path
    tokens: dict[str, str]
    jobs: dict[str, str]  # user -> the id of the job they trained

    def cli(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
        return run_cli(self.home, *argv, stdin=stdin)


def run_cli(home: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=ROOT, env=server_env(home), input=stdin,
                          capture_output=True, text=True, timeout=120)


def client(team: Team, user: str, by: str = "token") -> Client:
    if by == "token":
        return Client(team.url, headers={"Authorization": f"Bearer {team.tokens[user]}"}, verbose=False,
                      download_files=False)
    return Client(team.url, auth=(user, PASSWORDS[user]), verbose=False, download_files=False)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    home = root / "home"
    home.mkdir()
    for name, password in PASSWORDS.items():
        done = run_cli(home, "users", "add", name, "--password-stdin", *(["--admin"] if name == "root" else []),
                       stdin=password + "\n")
        assert done.returncode == 0, done.stderr
    tokens = {name: json.loads(run_cli(home, "tokens", "create", "--user", name, "--json").stdout)["token"]
              for name in PASSWORDS}
    tiny = make_tiny_model(root / "tiny-bert")
    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE * 3] + \
           [{"review": t, "sentiment": "neg"} for t in NEGATIVE * 3]
    csv = write_csv(root / "reviews.csv", rows)
    log = root / "serve.log"
    process, url = _spawn(home, log)
    team = Team(url, home, log, tokens, {})
    try:
        # ana trains through her token, bo through the page's login: both as the Gradio client does
        for user, by in (("ana", "token"), ("bo", "login")):
            c = client(team, user, by)
            team.jobs[user] = c.predict(data_file=handle_file(str(csv)), text_column="review",
                                        label_column="sentiment", method="ia3", epochs=1, base_model=str(tiny),
                                        batch_size=8, name=f"{user}'s reviews", api_name="/submit_job")
        for user, job_id in team.jobs.items():
            c = client(team, user)
            job = wait_for_job(lambda i, c=c: c.predict(job_id=i, api_name="/job_status"), job_id)
            assert job["state"] == "succeeded", job["error"]
            assert job["owner"] == user
        yield team
    finally:
        _stop(process)


def test_each_user_sees_and_uses_only_their_own_adapters(team):
    ana, bo = client(team, "ana"), client(team, "bo", by="login")
    assert [a["id"] for a in ana.predict(api_name="/list_adapters")] == [team.jobs["ana"]]
    assert [a["id"] for a in bo.predict(api_name="/list_adapters")] == [team.jobs["bo"]]
    assert ana.predict(adapter=team.jobs["ana"], text="great", api_name="/predict")["label"] in ("pos", "neg")
    theirs = team.jobs["bo"]
    for call in (dict(adapter=theirs, text="great", api_name="/predict"),
                 dict(adapter=theirs, text="great", api_name="/explain"),
                 dict(adapter="bo's reviews", text="great", api_name="/predict"),  # by its name
                 dict(adapter=theirs, rule="max_f1", api_name="/set_threshold"),
                 dict(adapter=theirs, api_name="/label_issues")):
        with pytest.raises(AppError, match="no finished adapter"):
            ana.predict(**call)
    with pytest.raises(AppError, match=f"No job '{theirs}'"):
        ana.predict(job_id=theirs, api_name="/job_status")
    admin = client(team, "root")
    assert {a["id"] for a in admin.predict(api_name="/list_adapters")} == set(team.jobs.values())
    assert f"refused: ana tried to use the adapter of job {theirs} (owner: bo)" in team.log.read_text()


def test_rest_answers_each_caller_with_their_own_adapters(team):
    url, theirs = f"{team.url}v1", team.jobs["bo"]
    bearer = {"Authorization": f"Bearer {team.tokens['ana']}"}
    listed = httpx.get(f"{url}/adapters", headers=bearer).json()
    assert [a["id"] for a in listed] == [team.jobs["ana"]]
    mine = httpx.post(f"{url}/classify", headers=bearer, json={"adapter": team.jobs["ana"], "texts": ["great"]})
    assert mine.status_code == 200 and mine.json()["results"][0]["adapter"] == team.jobs["ana"]
    refused = httpx.post(f"{url}/classify", headers=bearer, json={"items": [
        {"adapter": team.jobs["ana"], "text": "great"}, {"adapter": theirs, "text": "great"}]})
    assert refused.status_code == 404 and "no finished adapter" in refused.json()["detail"]
    basic = httpx.get(f"{url}/adapters", auth=("bo", PASSWORDS["bo"]))
    assert [a["id"] for a in basic.json()] == [theirs]
    for headers in ({}, {"Authorization": "Bearer al_000000000000_" + "x" * 43},
                    {"Authorization": f"Bearer {team.tokens['ana'][:-2]}"}):
        answer = httpx.post(f"{url}/classify", headers=headers, json={"adapter": theirs, "texts": ["great"]})
        assert answer.status_code == 401, answer.text
    assert httpx.get(f"{url}/adapters", auth=("bo", "wrong password")).status_code == 401


def test_a_wrong_or_missing_token_is_refused_before_gradio_does_anything(team):
    for headers in ({}, {"Authorization": "Bearer al_000000000000_" + "x" * 43}):
        assert httpx.get(f"{team.url}config", headers=headers).status_code == 401
        answer = httpx.post(f"{team.url}gradio_api/call/list_adapters", headers=headers, json={"data": []})
        assert answer.status_code == 401
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(team.url, verbose=False)
    with pytest.raises(Exception, match="(?i)login|auth|incorrect|401"):
        Client(team.url, auth=("ana", "not her password"), verbose=False)


def test_another_users_adapter_cannot_be_downloaded_by_its_path(team):
    """The page's downloads are zips in fresh temporary folders; an adapter's own folder is never served."""
    bo = client(team, "bo").predict(job_id=team.jobs["bo"], api_name="/job_status")
    for name in ("adapter_config.json", "adapterlab.json"):
        path = Path(bo["adapter_dir"]) / name
        assert path.is_file()
        answer = httpx.get(f"{team.url}gradio_api/file={path}",
                           headers={"Authorization": f"Bearer {team.tokens['ana']}"})
        assert answer.status_code in (403, 404), answer.status_code


def test_jobs_are_changed_only_by_their_owner_and_shared_on_purpose(team):
    ana_token, theirs = team.tokens["ana"], team.jobs["bo"]
    for command in (["cancel", theirs], ["retry", theirs], ["delete", theirs], ["share", theirs]):
        done = team.cli(*command, "--token", ana_token)
        assert done.returncode == 2 and f"No job '{theirs}'" in done.stderr and "Traceback" not in done.stderr
    assert team.cli("share", theirs, "--token", team.tokens["bo"]).returncode == 0
    ana = client(team, "ana")
    assert {a["id"] for a in ana.predict(api_name="/list_adapters")} == set(team.jobs.values())
    assert ana.predict(adapter=theirs, text="great", api_name="/predict")["label"] in ("pos", "neg")
    with pytest.raises(AppError, match="belongs to bo"):
        ana.predict(adapter=theirs, rule="max_f1", api_name="/set_threshold")
    done = team.cli("delete", theirs, "--token", ana_token)
    assert done.returncode == 2 and "belongs to bo: only its owner or an admin can delete it" in done.stderr
    assert team.cli("share", theirs, "--off", "--token", team.tokens["bo"]).returncode == 0
    assert [a["id"] for a in ana.predict(api_name="/list_adapters")] == [team.jobs["ana"]]


def test_a_revoked_token_stops_working_at_once(team):
    made = json.loads(team.cli("tokens", "create", "--user", "ana", "--json").stdout)
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert httpx.get(f"{team.url}v1/adapters", headers=headers).status_code == 200
    assert httpx.get(f"{team.url}config", headers=headers).status_code == 200
    assert team.cli("tokens", "revoke", made["id"]).returncode == 0
    assert httpx.get(f"{team.url}v1/adapters", headers=headers).status_code == 401
    assert httpx.get(f"{team.url}config", headers=headers).status_code == 401


@pytest.mark.browser
def test_the_page_asks_for_a_login_and_shows_only_the_users_jobs(team):
    from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, open_tab

    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(team.url)
        page.get_by_label("username").fill("ana")
        page.get_by_label("password").fill("not her password")
        page.get_by_role("button", name="Login").click()
        playwright.expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.get_by_label("username").fill("ana")  # the form empties itself after a wrong password
        page.get_by_label("password").fill(PASSWORDS["ana"])
        page.get_by_role("button", name="Login").click()
        playwright.expect(page.locator("#al-who")).to_contain_text("Logged in as ana")
        open_tab(page, "3 · Jobs")
        table = page.locator("#jobs-table")
        playwright.expect(table).to_contain_text("ana's reviews")
        assert "bo's reviews" not in table.inner_text()
        page.locator("#job-picker input").click()
        playwright.expect(page.get_by_role("option", name=re.compile("ana's reviews"))).to_be_visible()
        options = page.get_by_role("option").all_inner_texts()
        assert any("ana's reviews" in o for o in options) and not any("bo's reviews" in o for o in options)
        page.get_by_role("option", name=re.compile("ana's reviews")).click()
        playwright.expect(page.locator("#job-share")).to_be_visible()
        playwright.expect(page.locator("#job-header")).to_contain_text("by ana")
        page.screenshot(path=str(ARTIFACTS / "team-jobs.png"), full_page=True)
        open_tab(page, "4 · Playground")
        page.locator("#play-adapter input").click()
        playwright.expect(page.get_by_role("option", name=re.compile("ana's reviews"))).to_be_visible()
        options = page.get_by_role("option").all_inner_texts()
        assert any("ana's reviews" in o for o in options) and not any("bo's reviews" in o for o in options)
        page.screenshot(path=str(ARTIFACTS / "team-playground.png"), full_page=True)
        browser.close()
