"""The Data and Train tabs' edges in a real browser: no stale data and no framework message after a clear, a bad
file, a refresh or a failed load; empty optional settings stay empty; messages name their field; labels guessed
from content and renamed; what a phone shows.

Each test looks for Gradio's own error toasts and for tracebacks in the server log. Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from tests.conftest import write_csv
from tests.test_app_server import JOB_TIMEOUT, MAX_UPLOAD_MB
from tests.test_browser import BROWSER, app_server, browser, choose, expect, open_tab, shot

pytestmark = BROWSER
TOAST = ".toast-body"
__all__ = ["app_server", "browser"]  # the shared fixtures, used by name below


@pytest.fixture()
def page(browser, app_server):
    """A fresh page; after the test, no Gradio toast was left on it and the server logged no traceback."""
    log_start = app_server.log.stat().st_size
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app_server.url)
    yield page
    context.close()
    with app_server.log.open("rb") as log:
        log.seek(log_start)
        assert b"Traceback" not in log.read(), "the server logged a traceback during this test"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tables for the tests: pairs, French labels, and three kinds of unreadable file."""
    folder = tmp_path_factory.mktemp("data-edges")
    pairs = [{"question1": f"how do i reset {i}", "question2": f"reset how {i}", "label": i % 2} for i in range(40)]
    french = [{"texte": f"une phrase numéro {i} assez longue", "étiquette": "positif" if i % 2 else "négatif"}
              for i in range(40)]
    train = [{"text": f"{word} {i}", "label": word} for word in ("good", "bad") for i in range(20)]
    (folder / "empty.csv").write_bytes(b"")
    (folder / "header-only.csv").write_text("text,label\n")
    (folder / "binary.csv").write_bytes(b"\x00\x01\x02binary" * 100)
    return {"pairs": write_csv(folder / "pairs.csv", pairs), "french": write_csv(folder / "french.csv", french),
            "train": write_csv(folder / "train.csv", train),
            "val": write_csv(folder / "val.csv", train[:6] + train[-6:]),
            "empty": folder / "empty.csv", "header": folder / "header-only.csv", "binary": folder / "binary.csv"}


def no_framework_message(page) -> None:
    """No toast at all: every problem is said in the page, in our words."""
    page.wait_for_timeout(500)
    assert page.locator(TOAST).count() == 0, page.locator(TOAST).all_inner_texts()
    assert "is not in the list of choices" not in page.content()


def upload(page, path) -> None:
    """Upload into the data box, first removing a file it holds (as a user must, with its X)."""
    held = page.locator("#data-upload").get_by_label("Clear")
    if held.count():
        held.first.click()
    page.locator("#data-upload input[type=file]").set_input_files(str(path))


def expect_no_data(page) -> None:
    """Nothing of an earlier file is left: no preview, report, bars or column choices, and Next is off."""
    expect(page.locator("#data-preview")).to_be_hidden()
    expect(page.locator("#data-report")).to_be_hidden()
    expect(page.locator("#label-chart")).to_be_hidden()
    expect(page.locator("#data-label-names")).to_be_hidden()
    for menu in ("#col-text", "#col-pair", "#col-label"):
        expect(page.locator(f"{menu} input")).to_have_value("")
    expect(page.locator("#data-next")).to_be_disabled()
    open_tab(page, "2 · Train")
    expect(page.locator("#train-data-summary")).to_contain_text("No data chosen yet")
    open_tab(page, "1 · Data")


def expect_pairs_loaded(page) -> None:
    expect(page.locator("#data-status")).to_contain_text("Loaded pairs.csv")
    expect(page.locator("#col-pair input")).to_have_value("question2")
    expect(page.locator("#data-next")).to_be_enabled()


def test_clearing_an_upload_or_replacing_it_with_a_bad_file_leaves_nothing_stale(page, files):
    upload(page, files["pairs"])
    expect_pairs_loaded(page)
    page.get_by_label("Clear").first.click()
    expect_no_data(page)
    no_framework_message(page)
    for bad, says in (("empty", "empty"), ("header", "a header but no rows"), ("binary", "not a text file")):
        upload(page, files["pairs"])
        expect_pairs_loaded(page)
        page.get_by_label("Clear").first.click()  # the upload box takes a new file once the old one is removed
        upload(page, files[bad])
        expect(page.locator("#data-status")).to_contain_text(re.compile(says, re.I))
        expect_no_data(page)
        no_framework_message(page)
        shot(page, f"data-replaced-by-{bad}")
        page.get_by_label("Clear").first.click()


def test_a_big_file_previews_from_its_head_and_one_over_the_limit_is_refused_in_our_words(page, tmp_path):
    rows = [{"text": f"headline number {i} " + "about the markets " * 5, "label": ("world", "sports")[i % 2]}
            for i in range(14_000)]  # ~1.6 MB: more than the preview reads, under the test server's limit
    big = write_csv(tmp_path / "headlines.csv", rows)
    expect(page.locator("#data-upload")).to_contain_text(f"up to {MAX_UPLOAD_MB} MB")
    upload(page, big)
    expect(page.locator("#data-status")).to_contain_text("Loaded headlines.csv (1.6 MB): the first 8 rows shown")
    expect(page.locator("#data-report")).to_contain_text("14,000 rows")
    expect(page.locator("#data-report")).to_contain_text("12,600")  # every row counted, not the preview's
    expect(page.locator("#data-next")).to_be_enabled()
    no_framework_message(page)
    shot(page, "data-big-file")
    page.get_by_label("Clear").first.click()
    too_big = tmp_path / "too-big.csv"
    too_big.write_text(big.read_text() * 2)
    upload(page, too_big)
    expect(page.locator("[data-testid=toast-text]")).to_contain_text(
        f'"too-big.csv" is larger than this server takes from a browser ({MAX_UPLOAD_MB}.0 MB at most), so it was '
        "not uploaded. Put it in the server's datasets folder")
    shot(page, "data-upload-too-big")


def test_folder_refresh_and_a_failed_hub_load_after_data(page, app_server, files):
    page.get_by_label("Server datasets folder").check()
    choose(page, "#data-folder", "reviews-on-server.csv")
    expect(page.locator("#data-status")).to_contain_text("Loaded reviews-on-server.csv")
    page.locator("#data-folder-refresh").click()
    expect(page.locator("#data-folder input")).to_have_value("reviews-on-server.csv")
    expect(page.locator("#data-next")).to_be_enabled()
    no_framework_message(page)

    page.get_by_label("Hugging Face Hub").check()
    expect_no_data(page)  # a change of source forgets the old source's data
    page.locator("#data-hub textarea, #data-hub input").first.fill("imdb")
    page.locator("#data-hub-load").click()
    expect(page.locator("#data-status")).to_contain_text("could not be loaded")
    expect_no_data(page)
    no_framework_message(page)
    shot(page, "data-hub-failed")


def test_switching_source_clears_and_an_empty_folder_says_where_to_put_files(page, app_server):
    upload(page, app_server.sentiment_csv)
    expect(page.locator("#data-preview")).to_be_visible()
    folder = app_server.home / "datasets"
    hidden = folder.parent / "datasets-aside"
    folder.rename(hidden)
    try:
        page.get_by_label("Server datasets folder").check()
        expect_no_data(page)
        hint = page.locator("#data-folder-note")
        expect(hint).to_contain_text(str(folder))
        expect(hint).to_contain_text("CSV, TSV, JSON Lines or Parquet")
        shot(page, "data-empty-folder")
    finally:
        hidden.rename(folder)
    page.locator("#data-folder-refresh").click()
    expect(page.locator("#data-folder-note")).to_be_hidden()
    choose(page, "#data-folder", "reviews-on-server.csv")
    expect(page.locator("#data-next")).to_be_enabled()
    no_framework_message(page)


def test_label_column_guessed_from_content_and_next_says_what_is_missing(page, files, tmp_path):
    upload(page, files["french"])
    expect(page.locator("#col-text input")).to_have_value("texte")
    expect(page.locator("#col-label input")).to_have_value("étiquette")
    expect(page.locator("#data-next")).to_be_enabled()
    free_text = write_csv(tmp_path / "notes.csv", [{"note": f"free text number {i}", "author": f"person {i}"}
                                                   for i in range(30)])
    upload(page, free_text)
    expect(page.locator("#data-next")).to_be_disabled()
    expect(page.locator("#data-next-hint")).to_contain_text("Choose the label column")
    shot(page, "data-label-missing")
    no_framework_message(page)


def test_a_separate_validation_file_is_worded_as_what_happens(page, files):
    upload(page, files["train"])
    expect(page.locator("#data-report")).to_contain_text("held out to measure accuracy")
    page.get_by_text("Optional: a separate validation file").click()
    page.locator("#data-validation input[type=file]").set_input_files(str(files["val"]))
    report = page.locator("#data-report")
    expect(report).to_contain_text("Accuracy is measured on the 12 rows of val.csv")
    expect(report).not_to_contain_text("held out")
    shot(page, "data-validation-file")


def test_advanced_settings_stay_empty_and_messages_name_their_field(page, app_server):
    upload(page, app_server.sentiment_csv)
    expect(page.locator("#data-next")).to_be_enabled()
    page.locator("#data-next").click()
    page.locator("#train-advanced").click()
    for box in ("#train-max-samples", "#train-patience"):
        expect(page.locator(f"{box} textarea, {box} input").first).to_have_value("")
    page.locator("#train-epochs input").fill("0")
    page.locator("#train-launch").click()
    expect(page.locator("#train-status")).to_have_text(re.compile(r"Epochs must be at least 1\."))
    page.locator("#train-epochs input").fill("1")
    page.locator("#train-max-samples textarea, #train-max-samples input").first.fill("1")
    page.locator("#train-launch").click()
    expect(page.locator("#train-status")).to_contain_text("Max training rows must be at least 2, or empty.")
    expect(page.get_by_role("tab", name="2 · Train")).to_have_attribute("aria-selected", "true")  # nothing queued
    no_framework_message(page)
    shot(page, "train-field-message")
    info = page.locator("#train-base-dropout").inner_text()
    assert "docs/" not in info  # the page explains itself instead of citing a file
    base = page.locator("#train-base-model input")
    base.fill("no-such-org/no-such-model")
    base.press("Enter")
    count = page.locator("#train-param-count")
    expect(count).to_contain_text("not available offline")
    assert "hf download" not in count.inner_text()  # no command lines for a browser user


def test_renamed_labels_and_an_ia3_job_in_the_zip(page, app_server, tmp_path):
    """Renamed labels reach the job and the adapter; an IA3 job stores no reduction factor; the zip names the
    adapter after the job and its data report after the uploaded file."""
    upload(page, app_server.sentiment_csv)
    rename = page.locator("#data-label-names [data-testid=cell-0-1]")
    expect(rename).to_have_text("neg")
    rename.dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type("negative")
    page.keyboard.press("Enter")
    expect(page.locator("#label-chart")).to_contain_text("negative")
    shot(page, "data-renamed-label")
    page.locator("#data-next").click()
    expect(page.locator("#train-data-summary")).to_contain_text("(negative, pos)")
    page.locator("#train-method").get_by_text("IA3", exact=True).click()
    base = page.locator("#train-base-model input")
    base.fill(str(app_server.tiny_model))
    base.press("Enter")
    page.locator("#train-epochs input").fill("1")
    page.locator("#train-name").get_by_role("textbox").fill("renamed-ia3")
    page.locator("#train-launch").click()
    expect(page.locator("#job-header")).to_contain_text("renamed-ia3")
    expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=JOB_TIMEOUT * 1000)
    settings = page.locator("#job-settings")
    expect(settings).to_contain_text("Epochs")
    expect(settings).not_to_contain_text("Reduction factor")
    expect(settings).to_contain_text("neg → negative")
    expect(page.locator("#job-per-class")).to_contain_text("negative")
    shot(page, "job-renamed-ia3")
    with page.expect_download() as download:
        page.locator("#job-download").click()
    archive = tmp_path / "adapter.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        meta = json.loads(z.read("adapterlab.json"))
    assert meta["name"] == "renamed-ia3" and meta["labels"] == ["negative", "pos"]
    assert meta["label_names"] == {"neg": "negative"}
    assert "reduction_factor" not in meta and "reduction_factor" not in meta["training"]
    assert meta["data_report"][0].startswith("reviews.csv:")
    no_framework_message(page)


def test_a_phone_sees_every_tab_and_the_whole_preview(browser, app_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(app_server.url)
    for name in ("1 · Data", "2 · Train", "3 · Jobs", "4 · Playground"):
        expect(page.get_by_role("tab", name=name)).to_be_visible()
    expect(page.get_by_label("More tabs")).to_be_hidden()
    upload(page, app_server.sentiment_csv)
    header = page.locator("#data-preview").get_by_text("sentiment", exact=True).first
    expect(header).to_be_visible()
    box, width = header.bounding_box(), page.viewport_size["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    shot(page, "phone-data")
    for name in ("2 · Train", "3 · Jobs", "4 · Playground"):
        open_tab(page, name)
        shot(page, f"phone-{name[0]}")
    context.close()
