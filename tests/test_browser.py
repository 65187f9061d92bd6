"""The web app in a real browser: upload, map columns, train two adapters, watch them, predict, compare, batch.

Drives Debian's Chromium with Playwright against `adapterlab serve` on 127.0.0.1. Screenshots of every step are
kept in tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import httpx
import pytest

from engine import methods
from tests.test_app_server import JOB_TIMEOUT, shared_server, stop_shared_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                                     "(pip install playwright)")
# Every check waits up to 20 s (Playwright's default is 5 s): the 2 cores the suite runs on are often busy.
playwright_api.expect.set_options(timeout=20_000)
# Every browser test module's marks: `pytestmark = BROWSER`
BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium "
                       "(apt-get install -y chromium)"),
]
pytestmark = BROWSER
expect = playwright_api.expect


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    yield shared_server(tmp_path_factory)
    stop_shared_server()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app_server.url)
    yield page
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    """Click the tab or, where Gradio moved it into its overflow menu (a narrow page, measured while the page was
    still laying out), its entry there."""
    tab, more = page.get_by_role("tab", name=name), page.get_by_label("More tabs")
    if tab.count() == 0 and more.is_visible():
        more.click()
        page.locator(".overflow-dropdown").get_by_role("button", name=name).click()
        return
    tab.click()


def choose(page, dropdown: str, option: str | re.Pattern) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).click()


def launch_job(page, tiny_model: Path, method: str, name: str) -> None:
    """Fill the Train tab for a quick run on the tiny model and launch it; the page moves to the job."""
    open_tab(page, "2 · Train")
    page.locator("#train-method").get_by_text(method, exact=True).click()
    base = page.locator("#train-base-model input")
    base.fill(str(tiny_model))
    base.press("Enter")
    expect(page.locator("#train-param-count")).to_contain_text("trainable parameters")
    page.locator("#train-epochs input").fill("2")
    page.locator("#train-name").get_by_role("textbox").fill(name)
    page.locator("#train-launch").click()
    expect(page.get_by_role("tab", name="3 · Jobs")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#job-header")).to_contain_text(name)


def upload_reviews(page, app_server) -> None:
    page.locator("#data-upload input[type=file]").set_input_files(str(app_server.sentiment_csv))
    expect(page.locator("#data-status")).to_contain_text("Loaded reviews.csv: 48 rows, 2 columns")
    expect(page.locator("#col-text input")).to_have_value("review")
    expect(page.locator("#col-label input")).to_have_value("sentiment")
    expect(page.locator("#data-report")).to_contain_text("48 rows")
    expect(page.locator("#data-report")).to_contain_text("2 labels")


def test_upload_train_watch_and_predict_with_two_adapters(page, app_server):
    shot(page, "01-start")
    upload_reviews(page, app_server)
    expect(page.locator("#label-chart")).to_contain_text("Training rows per label")
    shot(page, "02-data-mapped")
    page.locator("#data-next").click()
    expect(page.get_by_role("tab", name="2 · Train")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#train-data-summary")).to_contain_text("reviews.csv")

    # IA3 hides the reduction factor and has its own defaults; the live count follows the form
    count = page.locator("#train-param-count")
    expect(count).to_contain_text("(2 labels)")
    pfeiffer_count = count.inner_text()
    page.locator("#train-method").get_by_text("IA3", exact=True).click()
    expect(page.locator("#train-options-pfeiffer")).to_be_hidden()
    expect(page.locator("#train-lr input")).to_have_value(str(methods.get("ia3").defaults["learning_rate"]))
    expect(count).not_to_have_text(pfeiffer_count)
    page.locator("#train-method").get_by_text("Pfeiffer", exact=True).click()
    expect(page.locator("#train-options-pfeiffer")).to_be_visible()
    expect(count).to_have_text(pfeiffer_count)
    shot(page, "03-train-form")

    launch_job(page, app_server.tiny_model, "Pfeiffer", "browser-pfeiffer")
    shot(page, "04-job-queued")
    expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=JOB_TIMEOUT * 1000)
    expect(page.locator("#job-download")).to_be_visible()
    expect(page.locator("#job-metrics")).to_be_visible()
    expect(page.locator("#job-confusion table")).to_be_visible()
    expect(page.locator("#jobs-table")).to_contain_text("browser-pfeiffer")
    shot(page, "05-job-succeeded")
    with page.expect_download() as download:
        page.locator("#job-download").click()
    assert download.value.suggested_filename.endswith(".zip")

    launch_job(page, app_server.tiny_model, "IA3", "browser-ia3")
    expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=JOB_TIMEOUT * 1000)

    open_tab(page, "4 · Playground")
    for adapter in ("browser-pfeiffer", "browser-ia3"):
        choose(page, "#play-adapter", re.compile(adapter))
        page.locator("#play-text").get_by_role("textbox").fill("really happy, fantastic quality")
        page.locator("#play-predict").click()
        expect(page.locator("#play-result")).to_contain_text(re.compile(r"pos|neg"))
        expect(page.locator("#play-result")).to_contain_text("%")
        shot(page, f"06-playground-{adapter}")

    page.get_by_role("tab", name="Compare adapters").click()
    choose(page, "#compare-adapters", re.compile("browser-pfeiffer"))
    choose(page, "#compare-adapters", re.compile("browser-ia3"))
    page.locator("#compare-text").get_by_role("textbox").fill("awful service, a waste of money")
    page.locator("#compare-go").click()
    results = page.locator("#compare-results")
    expect(results).to_contain_text("browser-pfeiffer (Pfeiffer)")
    expect(results).to_contain_text("browser-ia3 (IA3)")
    shot(page, "07-compare")

    page.get_by_role("tab", name="Batch (CSV)").click()
    choose(page, "#batch-adapter", re.compile("browser-pfeiffer"))
    page.locator("#batch-upload input[type=file]").set_input_files(str(app_server.sentiment_csv))
    page.locator("#batch-go").click()
    link = page.locator("#batch-download a").first
    expect(link).to_be_visible()
    shot(page, "08-batch")
    rows = list(csv.DictReader(io.StringIO(httpx.get(link.get_attribute("href")).text)))
    assert len(rows) == 48 and {"prediction", "prob_neg", "prob_pos"} <= set(rows[0])


def test_jobs_survive_a_page_reload(page, app_server):
    """The table and the job page read the job store, so a fresh page shows the same jobs."""
    open_tab(page, "3 · Jobs")
    expect(page.locator("#jobs-table")).to_contain_text("browser-pfeiffer")
    page.locator("#jobs-table").get_by_text("browser-pfeiffer", exact=True).filter(visible=True).first.click()
    expect(page.locator("#job-header")).to_contain_text("Succeeded")
    expect(page.locator("#job-settings")).to_contain_text("reviews.csv")
    expect(page.locator("#job-download")).to_be_visible()
    expect(page.locator("#job-loss canvas, #job-loss svg").first).to_be_visible()
    shot(page, "09-jobs-after-reload")


def test_problems_show_in_plain_words(page, app_server, tmp_path):
    """A file with one label, and a junk file, get a readable message in the page and no traceback."""
    one_class = tmp_path / "one-class.csv"
    one_class.write_text("text,label\n" + "".join(f"row {i},same\n" for i in range(10)))
    page.locator("#data-upload input[type=file]").set_input_files(str(one_class))
    expect(page.locator("#data-report")).to_contain_text("a classifier needs at least 2")
    expect(page.locator("#data-next")).to_be_disabled()
    shot(page, "10-error-one-class")

    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02binary" * 100)
    page.get_by_label("Clear").first.click()
    page.locator("#data-upload input[type=file]").set_input_files(str(junk))
    expect(page.locator("#data-status")).to_contain_text("not a text file")
    assert "Traceback" not in page.content()
    shot(page, "11-error-junk-file")


def test_server_datasets_folder_and_demo_data(page, app_server):
    page.get_by_label("Server datasets folder").check()
    choose(page, "#data-folder", "reviews-on-server.csv")
    expect(page.locator("#data-status")).to_contain_text("Loaded reviews-on-server.csv")
    page.get_by_label("Built-in demo data").check()
    page.get_by_label(re.compile("Duplicate questions")).check()
    expect(page.locator("#col-pair input")).to_have_value("question2")
    expect(page.locator("#data-report")).to_contain_text("2 labels")
    expect(page.locator("#label-chart")).to_contain_text("duplicate")
    shot(page, "12-demo-pairs")

