"""A search in a real browser (issue 12): started through the API, its page (trials plotted and listed, the best
marked and one click from the Playground), the Train tab's Search mode, and the job table's filters and its
actions on several jobs at once (compare, delete).

Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
from gradio_client import Client, handle_file

from tests.test_app_server import wait_for_job
from tests.test_browser import BROWSER, app_server, browser, choose, expect, open_tab, shot
from tests.test_browser_playground import page  # its checks wait up to 20 s: the 2 cores are busy

__all__ = ["app_server", "browser", "page"]  # the shared fixtures, used by name below
pytestmark = BROWSER


@pytest.fixture(scope="module")
def searched(app_server) -> dict:
    client = Client(app_server.url, verbose=False, download_files=False)
    search_id = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                               label_column="sentiment", budget_minutes=3, methods=["pfeiffer", "ia3"],
                               max_trials=2, base_model=str(app_server.tiny_model), batch_size=8,
                               name="browser-search", api_name="/submit_search")
    result = wait_for_job(lambda j: client.predict(search_id=j, api_name="/search_status"), search_id)
    assert result["state"] == "succeeded" and len(result["trials"]) == 2, result
    return result


def test_the_search_page_plots_its_trials_and_opens_the_best_in_the_playground(page, app_server, searched):
    best = searched["best"]
    page.goto(f"{app_server.url}?tab=jobs&job={searched['search_id']}")
    expect(page.locator("#search-page")).to_be_visible(timeout=30_000)
    expect(page.locator("#job-header")).to_contain_text("2 trials")
    expect(page.locator("#job-header")).to_contain_text(f"Best: trial {best['number']}")
    trials = page.locator("#search-trials")
    for row in searched["trials"]:
        expect(trials).to_contain_text(row["job_id"])
    expect(trials).to_contain_text(f"★ {best['number']}")
    for plot in ("#search-by-params", "#search-by-time"):
        expect(page.locator(f"{plot} canvas, {plot} svg").first).to_be_visible()
    expect(page.locator("#job-confusion")).to_be_hidden()  # the best trial's own page shows its details
    shot(page, "search-page")

    page.locator("#search-best-playground").click()
    expect(page.get_by_role("tab", name="4 · Playground")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#play-adapter input")).to_have_value(re.compile(best["job_id"]))
    shot(page, "search-best-in-playground")


def test_the_train_tab_search_mode_hides_what_the_search_chooses(page, app_server):
    open_tab(page, "2 · Train")
    page.locator("#train-mode").get_by_text("Search for the best method and settings").click()
    expect(page.locator("#search-methods")).to_be_visible()
    expect(page.locator("#train-method")).to_be_hidden()
    expect(page.locator("#train-epochs")).to_be_hidden()
    for method in ("Houlsby", "Pfeiffer", "IA3"):  # the methods the engine marks for searching
        expect(page.locator("#search-methods").get_by_label(method)).to_be_checked()
    expect(page.locator("#train-launch")).to_have_text("Start the search")
    page.locator("#train-launch").click()  # no data chosen yet: said under the button, nothing queued
    expect(page.locator("#train-status")).to_contain_text("Choose the data")
    shot(page, "train-search-mode")
    page.locator("#train-mode").get_by_text("Train one adapter").click()
    expect(page.locator("#train-method")).to_be_visible()
    expect(page.locator("#train-launch")).to_have_text("Launch training")


def table_rows(page):
    """The job table's rows, by their first cell (Gradio's table lays rows out in its own elements)."""
    return page.locator("#jobs-table [data-testid$='-0'][data-testid^='cell-']")


def test_filter_the_table_then_compare_and_delete_several_jobs(page, app_server, searched):
    open_tab(page, "3 · Jobs")
    page.locator("#jobs-find textarea, #jobs-find input").first.fill("browser-search · trial")
    expect(page.locator("#jobs-table")).to_contain_text("trial 2")
    expect(table_rows(page)).to_have_count(2)
    choose(page, "#jobs-sort", "Best macro-F1 first")
    page.locator("#jobs-select-shown").click()
    for row in searched["trials"]:
        expect(page.locator("#jobs-selected")).to_contain_text(row["job_id"])
    page.locator("#jobs-compare-selected").click()
    expect(page.locator("#compare-results")).to_be_visible()
    for row in searched["trials"]:
        expect(page.locator("#compare-results")).to_contain_text(row["job_id"])
    shot(page, "jobs-filtered-compared")

    page.locator("#jobs-find textarea, #jobs-find input").first.fill("")
    choose(page, "#jobs-method-filter", "Search")
    expect(table_rows(page)).to_have_count(1)
    page.locator("#jobs-select-shown").click()
    expect(page.locator("#jobs-selected")).to_contain_text(searched["search_id"])
    page.locator("#jobs-delete-selected").click()
    page.locator("#jobs-delete-confirm").click()  # the search goes with its trials
    expect(page.locator("#jobs-table")).not_to_contain_text("browser-search", timeout=30_000)
    client = Client(app_server.url, verbose=False, download_files=False)
    adapters = client.predict(api_name="/list_adapters")
    assert not {row["job_id"] for row in searched["trials"]} & {a["id"] for a in adapters}
