"""What the Jobs tab says about a job, and the progress the training loop reports for it (issue 9).

Pure functions of job dicts, the address the page lands on, and the training loop's progress reports and ETA.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from app import job_views as views
from app import page_url
from app.tabs import compare as compare_tab
from app.tabs import jobs as jobs_tab
from engine.training import Pace, Progress, TrainConfig, train
from tests.test_app import job


def test_a_waiting_job_says_so_and_a_new_one_is_estimating():
    queued, interrupted = job("queued", eta_seconds=None), job("interrupted", eta_seconds=None)
    started = job("running", eta_seconds=None, steps=[])
    assert views.time_left(queued) == views.time_left(interrupted) == "waiting for a worker"
    assert views.time_left(started) == "estimating…" and views.time_left(job("running")) == "about 2 min"
    assert views.time_left(job("cancelling")) == "stopping…" and views.time_left(job("succeeded")) == "—"
    assert views.time_left(job("running", eta_seconds=0.0)) == "finishing…"  # validating and saving
    rows = views.table([queued, started]).to_dict("records")
    assert [r["Time left"] for r in rows] == ["waiting for a worker", "estimating…"]
    for text in (views.header(queued), views.header(started)):
        assert "— left" not in text and "0% —" not in text
    assert "estimating the time left" in views.header(started)
    tokenising = job("running", eta_seconds=None, steps=[], phase="tokenising 40,000 of 900,000 rows")
    assert views.time_left(tokenising) == "tokenising 40,000 of 900,000 rows…"
    assert "tokenising 40,000 of 900,000 rows…" in views.header(tokenising)


def test_hints_speak_to_browser_users_not_the_command_line():
    text = views.header(job("queued", eta_seconds=None))
    assert "Waiting for a worker" in text and "About jobs" in text
    assert "adapterlab worker" not in text and ".md" not in text
    assert "adapterlab worker" not in jobs_tab.ABOUT_JOBS


def test_a_cancelled_job_says_which_epoch_its_adapter_is_from():
    history = [{"epoch": e, "loss": 0.5, "accuracy": 0.8, "macro_f1": 0.7 + e / 100} for e in (1, 2)]
    cancelled = job("cancelled", adapter_dir="/data/adapters/abc123", best_epoch=2, history=history)
    assert "Stopped after 2 of 3 epochs" in views.header(cancelled)
    assert "The adapter kept is from epoch 2" in views.header(cancelled)
    early = job("cancelled", adapter_dir="/x", best_epoch=0, history=[])
    assert "before any epoch finished" in views.header(early)
    never = job("cancelled", adapter_dir=None, best_epoch=None, history=[])
    assert "no adapter was saved" in views.header(never)
    done = job("succeeded", adapter_dir="/x", best_epoch=1, history=history)
    assert "The adapter is from epoch 1 of 3" in views.header(done)
    assert "stopped early after epoch 2" in views.header(done)
    assert views.kept_adapter(job("succeeded", adapter_dir="/x", best_epoch=1)) is None  # one epoch: nothing to say


def test_one_epoch_shows_figures_not_a_one_point_chart():
    one = job("succeeded", history=[{"epoch": 1, "train_loss": 0.71, "loss": 0.695977, "accuracy": 0.8,
                                     "macro_f1": 0.75}])
    figures = views.epoch_figures(one)
    assert "Validation after epoch 1" in figures and "0.696" in figures and "0.750" in figures
    assert "0.695977" not in figures
    assert set(views.loss_frame(one)["curve"]) == {"training"}  # a lone validation point is an invisible line
    assert views.training_points(one) == 1
    assert views.loss_y_lim(views.loss_frame(one)) == [0, 1.0]  # 0.9 x 1.1 = 0.99: a round top
    two = job("succeeded", history=one["history"] * 2)
    assert views.epoch_figures(two) == "" and set(views.loss_frame(two)["curve"]) == {"training", "validation"}


def test_settings_are_a_plain_table_with_every_row():
    html = views.settings_html(job(name="x", spec={"data": "u.csv", "method": "ia3", "epochs": 3,
                                                    "text_column": "<b>t</b>"}))
    assert "<table" in html and "<input" not in html
    assert html.count("<tr>") == 5 and "Validation data" in html and "Text column" in html
    assert "&lt;b&gt;t&lt;/b&gt;" in html
    unnamed = views.settings_rows(job(spec={"data": "u.csv", "method": "ia3", "label_names": None}))
    assert ("Labels renamed", "none (as in the data)") in unnamed


def _request(**params) -> SimpleNamespace:
    return SimpleNamespace(query_params=params)


def test_the_address_opens_the_tab_and_job(monkeypatch):
    monkeypatch.setattr(jobs_tab, "find_job", lambda job_id: job() if job_id == "abc123" else None)
    monkeypatch.setattr(jobs_tab, "choices", lambda: [("tickets", "abc123")])
    tabs, picker, section, compared = page_url.landing(_request(tab="jobs", job="abc123"))
    assert tabs.selected == "jobs" and picker["value"] == "abc123"
    assert section == gr.skip() and compared == gr.skip()  # no comparison asked for
    tabs, picker, *_ = page_url.landing(_request(job="abc123"))  # a job alone opens the Jobs tab
    assert tabs.selected == "jobs"
    tabs, picker, *_ = page_url.landing(_request(tab="playground", job="gone", view="api"))
    assert tabs.selected == "playground" and picker == gr.skip()
    assert page_url.landing(_request(tab="nope")) == (gr.skip(),) * 4
    assert page_url.landing(_request()) == (gr.skip(),) * 4
    monkeypatch.setattr(compare_tab, "chosen_jobs", lambda ids: [{"id": i} for i in ids if i != "gone"])
    monkeypatch.setattr(compare_tab, "menu", lambda: [("a", "abc123"), ("b", "def456")])
    tabs, picker, section, compared = page_url.landing(_request(compare="abc123,def456,gone"))
    assert tabs.selected == "jobs" and section.open is True  # a comparison alone opens the Jobs tab
    assert compared.value == ["abc123", "def456"]

def test_malformed_job_ids_in_the_address_are_ignored():
    assert jobs_tab.find_job("../../etc") is None and jobs_tab.find_job(None) is None


# --- the training loop's progress -------------------------------------------------------------------------------

def test_pace_follows_recent_speed():
    pace = Pace(0.0, 0, window=30.0)
    pace.mark(20.0, 10)  # slow start: 2 s a step (warm-up)
    assert pace.seconds_left(100) == pytest.approx(200)
    for t in range(21, 80):
        pace.mark(float(t), 10 + (t - 20) * 2)  # then 0.5 s a step
    assert pace.seconds_left(100) == pytest.approx(50, rel=0.05)


def test_pace_of_a_resumed_run_counts_only_its_own_steps():
    pace = Pace(1000.0, 60)  # resumed at step 60: the time before belongs to another attempt
    pace.mark(1010.0, 70)
    assert pace.seconds_left(30) == pytest.approx(30)
    assert Pace(0.0, 5).seconds_left(10) == 0.0  # no step yet: no estimate


def _config(data: Path, base: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), method="pfeiffer", output=str(out), base_model=str(base), batch_size=8, **kw)


def test_progress_is_reported_by_time_as_well_as_by_steps(sentiment_csv, tiny_bert, tmp_path):
    """With no step-count reports, one still comes at least every `progress_seconds`: each step here takes over
    half of it, so at least every second step reports, not only the epoch's last."""
    reports: list[Progress] = []

    def slow_step() -> bool:
        time.sleep(0.3)
        return False

    train(_config(sentiment_csv, tiny_bert, tmp_path / "t", epochs=1), on_progress=reports.append,
          should_cancel=slow_step, progress_every=10_000, progress_seconds=0.5)
    steps = [p.step for p in reports]
    assert steps[-1] == reports[-1].total_steps == 6
    assert len(steps) >= 3 and all(b - a <= 2 for a, b in zip([0, *steps], steps, strict=False))


def test_a_resumed_run_does_not_count_earlier_attempts_time(sentiment_csv, tiny_bert, tmp_path):
    """Resumed from epoch 1 of 2 whose checkpoint says it took an hour, the time left is this run's pace."""
    ckpt = tmp_path / "ckpt"
    seen: list[Progress] = []
    train(_config(sentiment_csv, tiny_bert, tmp_path / "a", epochs=2), checkpoint_dir=str(ckpt),
          on_progress=seen.append, should_cancel=lambda: bool(seen) and seen[-1].epoch > 1, progress_every=1)
    state = torch.load(ckpt / "checkpoint.pt", weights_only=False)
    torch.save(dict(state, train_seconds=3600.0), ckpt / "checkpoint.pt")
    resumed: list[Progress] = []
    train(_config(sentiment_csv, tiny_bert, tmp_path / "a", epochs=2), checkpoint_dir=str(ckpt),
          on_progress=resumed.append, progress_every=1)
    assert resumed and resumed[0].step == 7
    assert max(p.eta_seconds for p in resumed) < 360  # the old estimate: 5 steps left x 3600 s / 1 step


def test_the_job_table_filters_by_name_state_method_and_data_set_and_sorts():
    jobs = [job("succeeded", id="a1", name="tickets v1", created_at="2025-01-01T00:00:00+00:00"),
            job("failed", id="b2", name="reviews", method="ia3", data={"kind": "hub", "name": "sst2"},
                created_at="2025-01-02T00:00:00+00:00"),
            job("succeeded", id="c3", name="tickets v2", kind="search", method="search",
                metrics={"macro_f1": 0.95, "accuracy": 0.96}, created_at="2025-01-03T00:00:00+00:00")]
    ids = lambda shown: [j["id"] for j in shown]  # noqa: E731
    assert ids(views.filter_jobs(jobs)) == ["c3", "b2", "a1"]  # newest first
    assert ids(views.filter_jobs(jobs, "TICKETS")) == ["c3", "a1"] and ids(views.filter_jobs(jobs, "b2")) == ["b2"]
    assert ids(views.filter_jobs(jobs, states=["failed"])) == ["b2"]
    assert ids(views.filter_jobs(jobs, methods_shown=["Search", "IA3"])) == ["c3", "b2"]
    assert ids(views.filter_jobs(jobs, data=["sst2"])) == ["b2"]
    assert ids(views.filter_jobs(jobs, sort="Oldest first")) == ["a1", "b2", "c3"]
    assert ids(views.filter_jobs(jobs, sort="Best macro-F1 first")) == ["c3", "a1", "b2"]  # no score: last
    assert ids(views.filter_jobs(jobs, sort="Name")) == ["b2", "a1", "c3"]
    assert jobs_tab.filter_choices(jobs) == (["IA3", "Pfeiffer", "Search"], ["sst2", "tickets.csv"])
    assert views.table(jobs)["Method"].tolist() == ["Pfeiffer", "IA3", "Search"]
