"""The Playground's edges in a real browser: results (and word explanations) never outlive an error or a change of
adapter or table, the adapter list follows finished jobs by itself, empty rows get no prediction, batch columns can
be mapped.

Two adapters are trained through the Gradio API (a Pfeiffer one on a 'review' column, an IA3 one on question
pairs); the second one finishes while a page is open. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import csv
import io
import re
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from engine.data import DEMO_PAIR_DATA
from tests.test_app_server import wait_for_job
from tests.test_browser import BROWSER, app_server, browser, choose, expect, open_tab, shot

pytestmark = BROWSER
REVIEWS = re.compile("pg-reviews")
PAIRS = re.compile("pg-pairs")
__all__ = ["app_server", "browser"]  # the shared fixtures, used by name below
REFRESH_WAIT_S = 20  # the Playground's timer ticks every 5 s


@pytest.fixture()
def page(browser, app_server):
    """A fresh page; actions wait up to 30 s."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app_server.url)
    yield page
    context.close()


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False, download_files=False)


def job_status(client: Client):
    return lambda job_id: client.predict(job_id=job_id, api_name="/job_status")


@pytest.fixture(scope="module")
def reviews_adapter(client, app_server) -> str:
    """A Pfeiffer adapter trained on the reviews CSV (text column 'review'), finished."""
    job_id = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                            label_column="sentiment", method="pfeiffer", reduction_factor=8, epochs=1,
                            base_model=str(app_server.tiny_model), batch_size=8, name="pg-reviews",
                            api_name="/submit_job")
    assert wait_for_job(job_status(client), job_id)["state"] == "succeeded"
    return job_id


class PairsAdapter:
    """An IA3 adapter on question pairs, submitted on first use so that a test can watch it finish."""

    def __init__(self, client: Client, app_server) -> None:
        self.client, self.app_server, self.job_id = client, app_server, None

    def submit(self) -> str:
        if self.job_id is None:
            self.job_id = self.client.predict(
                data_file=handle_file(str(DEMO_PAIR_DATA)), text_column="question1", text_pair_column="question2",
                label_column="label", method="ia3", epochs=1, base_model=str(self.app_server.tiny_model),
                max_train_samples=40, name="pg-pairs", api_name="/submit_job")
        return self.job_id

    def finished(self) -> str:
        assert wait_for_job(job_status(self.client), self.submit())["state"] == "succeeded"
        return self.job_id


@pytest.fixture(scope="module")
def pairs_adapter(client, app_server) -> PairsAdapter:
    return PairsAdapter(client, app_server)


def playground(page, tab: str | None = None) -> None:
    open_tab(page, "4 · Playground")
    if tab:
        page.get_by_role("tab", name=tab).click()


def no_gradio_messages(page) -> None:
    """Problems show as notes in the page: no toast, and none of Gradio's own words."""
    expect(page.locator(".toast-body")).to_have_count(0)
    assert "not in the list of choices" not in page.content() and "Traceback" not in page.content()


def upload(page, path, text_column: str) -> None:
    """Upload a table on the Batch tab and wait until its columns fill the menu, as a person would."""
    page.locator("#batch-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#batch-text-column input")).to_have_value(text_column)


def predictions_csv(page) -> list[dict]:
    link = page.locator("#batch-download a").first
    expect(link).to_be_visible()
    return list(csv.DictReader(io.StringIO(httpx.get(link.get_attribute("href")).text)))


def test_adapter_list_refreshes_by_itself_and_keeps_the_choice(page, reviews_adapter, pairs_adapter):
    playground(page)
    choose(page, "#play-adapter", REVIEWS)
    pairs_adapter.finished()
    menu = page.locator("#play-adapter input")
    deadline = time.monotonic() + REFRESH_WAIT_S
    while True:  # open the menu now and then, as a person would, until the new adapter is listed
        menu.click()
        listed = page.get_by_role("option", name=PAIRS).count() > 0
        if listed or time.monotonic() > deadline:
            break
        menu.blur()
        page.wait_for_timeout(1000)
    assert listed, "the finished adapter did not appear in the menu without a refresh"
    shot(page, "pg-01-list-refreshed")
    menu.blur()
    expect(menu).to_have_value(REVIEWS)
    page.get_by_role("tab", name="Batch (CSV)").click()
    choose(page, "#batch-adapter", PAIRS)
    expect(page.locator("#batch-adapter input")).to_have_value(PAIRS)


def test_errors_and_other_adapters_clear_the_results(page, app_server, reviews_adapter, pairs_adapter, tmp_path):
    pairs_adapter.finished()
    playground(page)
    choose(page, "#play-adapter", REVIEWS)
    text = page.locator("#play-text").get_by_role("textbox")
    result = page.locator("#play-result")
    text.fill("really happy, fantastic quality")
    page.locator("#play-predict").click()
    expect(result).to_contain_text("%")
    text.fill("")
    page.locator("#play-predict").click()
    expect(result).not_to_contain_text("%")
    expect(page.locator("#play-status")).to_contain_text("Type a text to classify.")
    shot(page, "pg-02-single-error-clears")
    text.fill("really happy, fantastic quality")
    page.locator("#play-predict").click()
    expect(result).to_contain_text("%")
    expect(page.locator("#play-status")).to_be_empty()
    words = page.locator("#play-words")
    page.locator("#play-explain").click()  # the words coloured by their pull on the predicted label
    expect(words.locator("mark")).to_have_count(5)  # really, happy, ",", fantastic, quality
    expect(words).to_contain_text("really happy, fantastic quality")
    predicted = page.locator("#play-explain-label input").input_value()
    other = "neg" if predicted == "pos" else "pos"
    expect(words).to_contain_text(f"Green: pushed toward {predicted}; red: pushed away from it.")
    choose(page, "#play-explain-label", re.compile(f"^{other}$"))
    expect(words).to_contain_text(f"Green: pushed toward {other}")
    shot(page, "pg-02b-explained")
    page.locator("#play-predict").click()  # a prediction without the explanation: the old one goes
    expect(words).to_be_hidden()
    page.locator("#play-explain").click()
    expect(words.locator("mark")).to_have_count(5)
    choose(page, "#play-adapter", PAIRS)
    expect(result).not_to_contain_text("%")
    expect(words).to_be_hidden()

    page.get_by_role("tab", name="Compare adapters").click()
    choose(page, "#compare-adapters", REVIEWS)
    choose(page, "#compare-adapters", PAIRS)
    page.locator("#compare-text").get_by_role("textbox").fill("How do I reset my password?")
    page.locator("#compare-text-pair").get_by_role("textbox").fill("I forgot my password")
    page.locator("#compare-go").click()
    results = page.locator("#compare-results")
    expect(results).to_contain_text("pg-pairs (IA3)")
    page.locator("#compare-text").get_by_role("textbox").fill("")
    page.locator("#compare-go").click()
    expect(results).not_to_contain_text("pg-pairs")
    expect(page.locator("#compare-status")).to_contain_text("Type a text to classify.")
    shot(page, "pg-03-compare-error-clears")

    page.get_by_role("tab", name="Batch (CSV)").click()
    choose(page, "#batch-adapter", REVIEWS)
    upload(page, app_server.sentiment_csv, "review")
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 48 rows")
    assert len(predictions_csv(page)) == 48
    choose(page, "#batch-adapter", PAIRS)
    expect(page.locator("#batch-download")).to_be_hidden()
    expect(page.locator("#batch-status")).not_to_contain_text("Predicted")
    expect(page.locator("#batch-pair-column")).to_be_visible()
    expect(page.locator("#batch-pair-column input")).to_have_value("")  # the label column is no second text
    shot(page, "pg-04-batch-switch-clears")
    choose(page, "#batch-adapter", REVIEWS)
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 48 rows")
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02binary" * 100)
    page.get_by_label("Clear").first.click()
    page.locator("#batch-upload input[type=file]").set_input_files(str(junk))
    expect(page.locator("#batch-status")).to_contain_text("not a text file")
    expect(page.locator("#batch-download")).to_be_hidden()
    page.get_by_label("Clear").first.click()
    expect(page.locator("#batch-status")).to_be_empty()
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Upload a table to predict.")
    expect(page.locator("#batch-status")).not_to_contain_text("Predicted")
    expect(page.locator("#batch-download")).to_be_hidden()
    shot(page, "pg-05-batch-error-clears")
    no_gradio_messages(page)


def test_empty_rows_get_no_prediction_and_are_counted(page, reviews_adapter, tmp_path):
    table = tmp_path / "with-gaps.csv"
    table.write_text("review,id\ni love it,1\n,2\nawful service,3\n")
    playground(page, "Batch (CSV)")
    choose(page, "#batch-adapter", REVIEWS)
    page.locator("#batch-upload input[type=file]").set_input_files(str(table))
    # Gradio's file list writes the name's stem and extension in two spans, which read with a space between
    # them when the name is shortened to fit
    expect(page.locator("#batch-upload")).to_contain_text(re.compile(r"with-gaps\s?\.csv"))
    page.locator("#batch-go").click()  # at once: the page reads the columns first, then predicts
    expect(page.locator(".al-note", has_text="Predicted")).to_contain_text("Predicted 2 of 3 rows")
    expect(page.locator("#batch-status")).to_contain_text("1 row had no text in 'review': it is in the file with "
                                                          "an empty prediction.")
    rows = predictions_csv(page)
    assert [r["id"] for r in rows] == ["1", "2", "3"] and [r["prediction"] != "" for r in rows] == [True, False, True]
    shot(page, "pg-06-empty-rows")


def test_batch_columns_are_mapped_in_the_page(page, reviews_adapter, pairs_adapter, tmp_path):
    pairs_adapter.finished()
    messages = tmp_path / "messages.csv"
    messages.write_text("id,message,notes\n1,i love it,great\n2,awful service,\n3,fantastic quality,bad\n")
    questions = tmp_path / "questions.csv"
    questions.write_text("question2,question1\nI forgot my password,How do I reset my password?\n")
    playground(page, "Batch (CSV)")
    choose(page, "#batch-adapter", REVIEWS)
    expect(page.locator("#batch-text-column")).to_be_hidden()
    upload(page, messages, "message")
    text_column, pair_column = page.locator("#batch-text-column"), page.locator("#batch-pair-column")
    expect(text_column).to_contain_text("trained on 'review'")
    expect(pair_column).to_be_hidden()
    shot(page, "pg-07-columns-guessed")
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 3 rows")
    choose(page, "#batch-text-column", re.compile("^notes$"))
    expect(page.locator("#batch-download")).to_be_hidden()
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 2 of 3 rows")
    expect(page.locator("#batch-status")).to_contain_text("no text in 'notes'")
    assert [r["prediction"] != "" for r in predictions_csv(page)] == [True, False, True]

    choose(page, "#batch-adapter", PAIRS)
    expect(pair_column).to_be_visible()
    expect(text_column.locator("input")).to_have_value("notes")
    page.get_by_label("Clear").first.click()
    expect(text_column).to_be_hidden()
    upload(page, questions, "question1")
    expect(pair_column.locator("input")).to_have_value("question2")
    shot(page, "pg-08-pair-columns")
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 1 row.")
    assert {"prediction", "prob_different", "prob_duplicate"} <= set(predictions_csv(page)[0])

    choose(page, "#batch-adapter", REVIEWS)
    expect(pair_column).to_be_hidden()
    expect(text_column.locator("input")).to_have_value("question1")
    page.locator("#batch-go").click()
    expect(page.locator("#batch-status")).to_contain_text("Predicted 1 row.")
    no_gradio_messages(page)
    shot(page, "pg-09-mapped-back")
