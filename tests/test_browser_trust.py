"""The job page's "Can I trust it?" section in a real browser (issue 11): a test file evaluated and listed, the
error browser filtered by a confusion cell and by search, its rows downloaded formula-safe, the calibration plot,
a threshold saved, the suspicious labels; and the Data tab's imbalance warning offering class balancing.

Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import csv
import re

import pytest
from gradio_client import Client, handle_file

from tests.conftest import NEGATIVE, POSITIVE, write_csv
from tests.test_app_server import wait_for_job
from tests.test_browser import BROWSER, app_server, browser, expect, open_tab, shot
from tests.test_browser_playground import page  # its checks wait up to 20 s: the 2 cores are busy

__all__ = ["app_server", "browser", "page"]  # the shared fixtures, used by name below
pytestmark = BROWSER


@pytest.fixture(scope="module")
def finished(app_server) -> str:
    client = Client(app_server.url, verbose=False, download_files=False)
    job_id = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                            label_column="sentiment", method="pfeiffer", epochs=2, learning_rate=0.01,
                            base_model=str(app_server.tiny_model), batch_size=8, name="trust-run",
                            api_name="/submit_job")
    status = wait_for_job(lambda j: client.predict(job_id=j, api_name="/job_status"), job_id)
    assert status["state"] == "succeeded"
    return job_id


def test_evaluate_browse_calibrate_and_threshold(page, app_server, finished, tmp_path):
    rows = [{"body": "=HYPERLINK(1) great", "y": "pos"}] + [{"body": t, "y": "pos"} for t in POSITIVE] + \
           [{"body": t, "y": "neg"} for t in NEGATIVE]
    test = write_csv(tmp_path / "held-out.csv", rows)
    page.goto(f"{app_server.url}?tab=jobs&job={finished}")
    trust = page.locator("#trust")
    expect(trust).to_be_visible(timeout=30_000)
    page.locator("#trust-file input[type=file]").set_input_files(str(test))
    expect(page.locator("#trust-text input")).to_have_value("body")  # guessed: the file has no 'review' column
    expect(page.locator("#trust-label input")).to_have_value("y")
    page.locator("#trust-evaluate").click()
    expect(page.locator("#trust-status")).to_contain_text("held-out.csv: accuracy", timeout=60_000)
    expect(page.locator("#trust-evaluations")).to_contain_text("held-out.csv")
    expect(page.locator("#trust-evaluations")).to_contain_text("17")
    shot(page, "trust-test-file")

    page.get_by_role("tab", name="Errors").click()
    expect(page.locator("#trust-source input")).to_have_value(re.compile("^Test file held-out.csv"))
    expect(page.locator("#trust-caption")).to_contain_text("of 17")
    matrix = page.locator("#trust-matrix")
    total = sum(int(matrix.locator(f"[data-testid=cell-{r}-{c}]").inner_text()) for r in (0, 1) for c in (1, 2))
    assert total == 17
    pos_pos = int(matrix.locator("[data-testid=cell-1-2]").inner_text())
    matrix.locator("[data-testid=cell-1-2]").click()  # true pos, predicted pos
    expect(page.locator("#trust-cell")).to_contain_text("true pos, predicted pos")
    expect(page.locator("#trust-caption")).to_contain_text(f"of {pos_pos}" if pos_pos else "No rows match")
    matrix.locator("[data-testid=cell-1-0]").click()  # the label column: every cell again
    expect(page.locator("#trust-caption")).to_contain_text("of 17")
    page.locator("#trust-search textarea, #trust-search input").first.fill("HYPERLINK")
    expect(page.locator("#trust-caption")).to_contain_text("of 1 ")
    for _ in range(5):  # the button may still hold the unfiltered file for a moment after the caption changed
        with page.expect_download() as download:
            page.locator("#trust-download").click()
        with open(download.value.path(), newline="") as f:
            saved = list(csv.DictReader(f))
        if len(saved) == 1:
            break
        page.wait_for_timeout(500)
    assert [r["text"] for r in saved] == ["'=HYPERLINK(1) great"] and {"predicted", "confidence"} <= set(saved[0])
    shot(page, "trust-errors")

    page.get_by_role("tab", name="Calibration").click()
    expect(page.locator("#trust-calibration-words")).to_contain_text("temperature")
    expect(page.locator("#trust-reliability canvas, #trust-reliability svg").first).to_be_visible()
    shot(page, "trust-calibration")

    page.get_by_role("tab", name="Threshold").click()
    page.locator("#trust-positive").get_by_text("pos", exact=True).click()
    page.locator("#trust-apply").click()
    expect(page.locator("#trust-threshold")).to_contain_text("Predict says pos when its probability is at least")
    expect(page.locator("#trust-threshold-matrix")).to_contain_text("Confusion matrix")
    shot(page, "trust-threshold")
    page.locator("#trust-remove").click()
    expect(page.locator("#trust-threshold")).to_contain_text("No threshold")

    page.get_by_role("tab", name="Suspicious labels").click()
    expect(page.locator("#trust-issues-words")).to_contain_text("label")
    shot(page, "trust-issues")


def test_an_imbalanced_data_set_offers_class_balancing(page, tmp_path):
    rows = [{"text": t, "label": "common"} for t in POSITIVE * 6] + [{"text": NEGATIVE[0], "label": "rare"},
                                                                      {"text": NEGATIVE[1], "label": "rare"}]
    path = write_csv(tmp_path / "skewed.csv", rows)
    page.locator("#data-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#data-report")).to_contain_text("The labels are imbalanced")
    button = page.locator("#data-balance")
    expect(button).to_be_visible()
    shot(page, "trust-data-imbalance")
    button.click()
    expect(page.locator("#train-balance input")).to_be_checked()
    open_tab(page, "1 · Data")
    open_tab(page, "2 · Train")
    expect(page.locator("#train-balance input")).to_be_checked()


def test_train_again_with_a_job_s_settings(page, app_server, finished):
    """The job page's clone button fills the Train tab from the job; launching queues the same training."""
    page.goto(f"{app_server.url}?tab=jobs&job={finished}")
    page.locator("#job-clone").click()
    expect(page.locator("#train-status")).to_contain_text(f"Settings copied from job {finished}")
    expect(page.locator("#train-data-summary")).to_contain_text("reviews.csv")
    expect(page.locator("#train-data-summary")).to_contain_text("text column 'review'")
    expect(page.locator("#train-method input[value=pfeiffer]")).to_be_checked()
    expect(page.locator("#train-epochs input")).to_have_value("2")
    expect(page.locator("#train-lr input")).to_have_value("0.01")
    expect(page.locator("#train-batch-size input")).to_have_value("8")
    expect(page.locator("#train-base-model input")).to_have_value(str(app_server.tiny_model))
    expect(page.locator("#train-param-count")).to_contain_text("trainable parameters")
    page.locator("#train-epochs input").fill("1")
    shot(page, "trust-clone-train-tab")
    page.locator("#train-launch").click()
    expect(page.locator("#job-header")).to_contain_text("reviews · pfeiffer", timeout=30_000)  # a new name
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADAPTERLAB_HOME", str(app_server.home))
        env.delenv("ADAPTERLAB_DATABASE_URL", raising=False)
        from worker import api

        newest = api.list_jobs()[0]
        original = api.get_job(finished)
        assert newest["id"] != finished and newest["spec"] == {**original["spec"], "epochs": 1}
        assert newest["data"]["filename"] == "reviews.csv"


def test_compare_two_jobs_from_a_shared_address(page, app_server, finished):
    """`?tab=jobs&compare=A,B` opens the comparison: overlaid curves, both results, the differing settings."""
    client = Client(app_server.url, verbose=False, download_files=False)
    other = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                           label_column="sentiment", method="ia3", epochs=2, base_model=str(app_server.tiny_model),
                           batch_size=8, name="trust-ia3", api_name="/submit_job")
    assert wait_for_job(lambda j: client.predict(job_id=j, api_name="/job_status"), other)["state"] == "succeeded"
    page.goto(f"{app_server.url}?tab=jobs&compare={finished},{other}")
    results = page.locator("#compare-results")
    expect(results).to_contain_text(finished, timeout=30_000)
    expect(results).to_contain_text(other)
    settings = page.locator("#compare-settings")
    expect(settings.locator("tr", has_text="Method")).to_contain_text("IA3")
    expect(settings.locator("td.al-differs", has_text="IA3")).to_be_visible()
    expect(settings).not_to_contain_text("Batch size")  # the same in both
    expect(page.locator("#compare-macro_f1")).to_contain_text("Macro-F1 per epoch")
    expect(page.locator("#compare-loss")).to_contain_text("0.69")  # both losses, near ln 2 on the tiny model
    expect(page.locator("#compare-accuracy")).to_contain_text("trust-ia3")
    shot(page, "compare-two-jobs")
    assert f"compare={finished}%2C{other}" in page.url or f"compare={finished},{other}" in page.url
