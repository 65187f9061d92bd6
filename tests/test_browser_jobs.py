"""The Jobs tab in a real browser (issue 9): what a waiting, running, cancelled and one-epoch job say, the address
that keeps the tab and job across a reload, `/?view=api` on a first load, and no untranslated Gradio keys.

Two jobs are submitted through the Gradio API: a long one (cancelled once it has an epoch) and a one-epoch one that
waits behind it, the server's worker training one job at a time. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from gradio_client import Client, handle_file

from tests.test_app_server import JOB_TIMEOUT
from tests.test_browser import BROWSER, app_server, browser, open_tab, page, playwright_api, shot
from worker import api as job_api

__all__ = ["app_server", "browser", "page"]  # the shared fixtures, used by name below

pytestmark = BROWSER
expect = playwright_api.expect
DONE = JOB_TIMEOUT * 1000
# Everything Gradio's status announcer (an aria-live region for screen readers) says, recorded from the start.
RECORD_ANNOUNCEMENTS = """
window.__said = [];
new MutationObserver(changes => {
  for (const change of changes) {
    const node = change.target.nodeType === 3 ? change.target.parentElement : change.target;
    const region = node && node.closest && node.closest('[role=status]');
    if (region && region.textContent.trim()) window.__said.push(region.textContent.trim());
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def jobs(app_server):
    """A long job (cancelled by a test below, so it trains for as long as the tests need it running) and a
    one-epoch job queued behind it."""
    client = Client(app_server.url, verbose=False, download_files=False)

    def submit(name: str, epochs: int, batch_size: int) -> str:
        return client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                              label_column="sentiment", method="pfeiffer", epochs=epochs, batch_size=batch_size,
                              base_model=str(app_server.tiny_model), name=name, api_name="/submit_job")

    ids = {"long": submit("long-run", 300, 1), "short": submit("one-epoch", 1, 4)}
    yield ids
    with pytest.MonkeyPatch.context() as env:  # after a failure the long job may still run: stop it
        env.setenv("ADAPTERLAB_HOME", str(app_server.home))
        env.delenv("ADAPTERLAB_DATABASE_URL", raising=False)
        if job_api.get_job(ids["long"])["state"] in ("queued", "running", "interrupted"):
            job_api.cancel(ids["long"])


def row(page, name: str):
    return page.locator("#jobs-table").get_by_role("row").filter(has_text=name).first


def open_job(page, name: str) -> None:
    """Open a job the way a user does: the Jobs tab, then its row in the table."""
    open_tab(page, "3 · Jobs")
    row(page, name).get_by_role("gridcell").first.click()
    expect(page.locator("#job-header")).to_contain_text(name)


def test_a_waiting_job_says_what_it_waits_for(page, jobs):
    open_job(page, "one-epoch")
    header = page.locator("#job-header")
    expect(header).to_contain_text("Waiting for a worker")
    expect(header).not_to_contain_text("adapterlab worker")
    expect(row(page, "one-epoch")).to_contain_text("waiting for a worker")
    expect(page.locator("#jobs-table")).not_to_contain_text("— left")
    page.locator("#jobs-help").get_by_text("About jobs").click()
    expect(page.locator("#jobs-help")).to_contain_text("Whoever runs AdapterLab can start one")
    shot(page, "jobs-01-queued")


def test_the_address_keeps_the_open_job_across_a_reload(page, app_server, jobs):
    page.goto(f"{app_server.url}?tab=jobs&job={jobs['short']}")
    expect(page.get_by_role("tab", name="3 · Jobs")).to_have_attribute("aria-selected", "true")
    header = page.locator("#job-header")
    expect(header).to_contain_text("one-epoch")
    row(page, "long-run").get_by_role("gridcell").first.click()
    expect(header).to_contain_text("long-run")
    expect(page).to_have_url(re.compile(rf"[?&]job={jobs['long']}(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]tab=jobs(&|$)"))
    expect(header).to_contain_text("After epoch 1", timeout=DONE)
    expect(header).to_contain_text(re.compile(r"\d+% (about \d+ min|\d+ s|about \d+ h \d+ min) left · epoch"))
    shot(page, "jobs-02-running")

    page.reload()  # mid-training: back on the same tab and job, not on an empty Data tab
    expect(page.get_by_role("tab", name="3 · Jobs")).to_have_attribute("aria-selected", "true")
    expect(header).to_contain_text("long-run")
    expect(header).to_contain_text("Running")
    shot(page, "jobs-03-after-reload")


def test_a_cancelled_job_says_which_epoch_it_kept(page, jobs):
    open_job(page, "long-run")
    header = page.locator("#job-header")
    expect(header).to_contain_text("After epoch 1", timeout=DONE)
    page.locator("#job-cancel").click()
    expect(header).to_contain_text("Cancelled", timeout=DONE)
    expect(header).to_contain_text(re.compile(r"Stopped after \d+ of 300 epochs\. The adapter kept is from epoch \d+"))
    expect(page.locator("#job-download")).to_be_visible()
    shot(page, "jobs-04-cancelled")


def test_a_one_epoch_job_shows_figures_and_a_plain_settings_table(page, jobs):
    open_job(page, "one-epoch")
    expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=DONE)
    figures = page.locator("#job-epoch-figures")
    expect(figures).to_contain_text("Validation after epoch 1")
    expect(figures).to_contain_text(re.compile(r"Macro-F1\s*\d\.\d{3}"))
    expect(page.locator("#job-metrics")).to_be_hidden()

    settings = page.locator("#job-settings")
    expect(settings.locator("table")).to_be_visible()
    expect(settings).to_contain_text("Base model dropout while training")  # the last row, with nothing scrolled
    assert settings.locator("input, textarea, [role=grid], [contenteditable=true]").count() == 0
    scrolls = settings.evaluate("el => [el, ...el.querySelectorAll('*')].some(e => e.scrollHeight > e.clientHeight + 1 "
                                "&& ['auto', 'scroll'].includes(getComputedStyle(e).overflowY))")
    assert not scrolls, "the settings table scrolls inside itself"
    shot(page, "jobs-05-one-epoch")


def test_a_finished_job_exports_to_onnx_for_download(page, jobs, tmp_path):
    open_job(page, "one-epoch")
    expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=DONE)
    page.locator("#job-export-onnx").click()
    exported = page.locator("#job-onnx-file")
    expect(exported).to_contain_text("largest probability difference", timeout=120_000)
    expect(page.locator("[data-testid=toast-text]").first).to_contain_text("onnxruntime agrees with the model")
    expect(page.locator("#job-export-onnx")).to_have_text("⇪ Export to ONNX")
    shot(page, "jobs-05b-onnx-export")
    with page.expect_download() as download:
        exported.get_by_role("link").first.click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        assert {"model.onnx", "predict.py", "adapter.json", "README.md", "tokenizer.json"} <= set(z.namelist())
        assert json.loads(z.read("adapter.json"))["parity"]["max_abs_diff"] <= 1e-4


def test_the_address_keeps_the_tab_and_other_parameters(page, app_server, jobs):
    page.goto(f"{app_server.url}?tab=jobs&job={jobs['short']}&lang=en")
    expect(page.locator("#job-header")).to_contain_text("one-epoch")
    open_tab(page, "4 · Playground")
    expect(page).to_have_url(re.compile(r"[?&]tab=playground(&|$)"))
    assert f"job={jobs['short']}" in page.url and "lang=en" in page.url
    page.reload()
    expect(page.get_by_role("tab", name="4 · Playground")).to_have_attribute("aria-selected", "true")
    open_tab(page, "1 · Data")
    expect(page).to_have_url(re.compile(r"[?&]tab=data(&|$)"))


def test_api_view_opens_on_first_load_and_nothing_reads_out_a_translation_key(browser, app_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_ANNOUNCEMENTS)
    page = context.new_page()
    try:
        page.goto(f"{app_server.url}?view=api")
        expect(page.locator(".api-docs")).to_be_visible(timeout=60_000)
        expect(page.locator(".api-docs")).to_contain_text("/submit_job")
        assert "view=api" in page.url
        # the page's load events end with a "complete" announcement (at most one every 5 s): wait for it
        page.wait_for_function("window.__said.length >= 2", timeout=60_000)
        shot(page, "jobs-06-api-view")
        said = page.evaluate("window.__said")
        labels = page.evaluate("[...document.querySelectorAll('[aria-label]')].map(e => e.getAttribute('aria-label'))")
        keys = [text for text in said + labels + [page.inner_text("body")] if re.search(r"\bcommon\.[a-z_]+", text)]
        assert not keys, f"untranslated Gradio keys in the page: {keys}"
    finally:
        context.close()
