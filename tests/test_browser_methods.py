"""Every method in the page: its card, its own options (only the chosen method's shown), the live count, a job on
the demo data for each method added beside the first three, its settings on the job page, and the Playground."""

from __future__ import annotations

import re

from engine import methods
from tests.test_app_server import JOB_TIMEOUT
from tests.test_browser import BROWSER, app_server, browser, choose, expect, open_tab, page, shot

__all__ = ["app_server", "browser", "page"]  # the shared fixtures, used by name below
pytestmark = BROWSER

# method -> (the option control to set, the value to pick or type, the words the job page shows)
NEW_METHODS = {"parallel": ("reduction-factor", "8", ("Reduction factor", "8")),
               "compacter": ("reduction-factor", "8", ("Reduction factor", "8")),
               "lora": ("lora-r", "4", ("Rank (r)", "4")),
               "prefix": ("prefix-length", "10", ("Prefix length", "10")),
               "prompt": ("num-virtual-tokens", "10", ("Virtual tokens", "10")),
               "full": (None, None, None)}


def _set_option(page, method: str, option: str, value: str) -> None:
    control = page.locator(f"#train-{method}-{option}")
    if control.get_by_role("radio").count():
        control.get_by_text(value, exact=True).click()
    else:
        control.get_by_role("textbox").fill(value)


def test_each_new_method_trains_on_the_demo_data(page, app_server):
    page.get_by_label("Built-in demo data").check()
    page.get_by_label(re.compile("Support tickets")).check()
    expect(page.locator("#data-report")).to_contain_text("4 labels")
    page.locator("#data-next").click()
    expect(page.locator("#train-method-cards")).to_contain_text("Bottleneck adapters")
    for group in methods.GROUPS:
        expect(page.locator("#train-method-cards")).to_contain_text(group)

    count = page.locator("#train-param-count")
    page.locator("#train-advanced").click()  # open for every method below: 60 rows train each in a moment
    page.locator("#train-max-samples textarea, #train-max-samples input").first.fill("60")
    for name, (option, value, shown) in NEW_METHODS.items():
        method = methods.get(name)
        open_tab(page, "2 · Train")
        page.locator("#train-method").get_by_text(method.label, exact=True).click()
        expect(page.locator("#train-method-cards .al-chosen")).to_contain_text(method.label)
        for other in methods.names():  # only the chosen method's options are shown
            options = page.locator(f"#train-options-{other}")
            if other != name:
                expect(options).to_be_hidden()
            elif option:
                expect(options).to_be_visible()
        # set in the same update as the chosen card
        assert float(page.locator("#train-lr input").input_value()) == method.defaults["learning_rate"]
        base = page.locator("#train-base-model input")
        base.fill(str(app_server.tiny_model))
        base.press("Enter")
        if name == "compacter":  # its default factor 32 leaves the tiny model's 32 units no multiple of 4
            expect(count).to_contain_text("divisible by 4")
        else:
            expect(count).to_contain_text("(4 labels)")
        before = count.inner_text()
        if option:
            _set_option(page, name, option, value)
            expect(count).not_to_have_text(before)
            expect(count).to_contain_text("(4 labels)")
        if name == "full":
            expect(count).to_contain_text("every weight of the model")
        if name == "prompt":  # the tiny model has 128 positions: the virtual tokens need some of them
            page.locator("#train-max-length input").fill("128")
            page.locator("#train-launch").click()
            expect(page.locator("#train-status")).to_contain_text("exceed the model's 128 positions")
            page.locator("#train-max-length input").fill("64")
        shot(page, f"methods-train-{name}")
        page.locator("#train-epochs input").fill("1")
        page.locator("#train-name").get_by_role("textbox").fill(f"demo-{name}")
        page.locator("#train-launch").click()
        expect(page.get_by_role("tab", name="3 · Jobs")).to_have_attribute("aria-selected", "true", timeout=30_000)
        expect(page.locator("#job-header")).to_contain_text(f"demo-{name}")
        expect(page.locator("#job-header")).to_contain_text("Succeeded", timeout=JOB_TIMEOUT * 1000)
        expect(page.locator("#job-header")).to_contain_text(method.label)
        if shown:
            row = page.locator("#job-settings tr", has_text=shown[0])
            expect(row).to_contain_text(shown[1])
        shot(page, f"methods-job-{name}")

    open_tab(page, "4 · Playground")
    choose(page, "#play-adapter", re.compile("demo-full.*own model"))
    page.locator("#play-text").get_by_role("textbox").fill("I was charged twice this month")
    page.locator("#play-predict").click()
    expect(page.locator("#play-result")).to_contain_text("%")
    shot(page, "methods-playground-full")
    assert "Traceback" not in page.content()


def test_fusion_fuses_two_finished_adapters_chosen_in_the_page(page, app_server):
    """Two Pfeiffer jobs finish (queued through the API); the Train tab offers them under Fusion, the fusion job
    trains over them, and the Playground predicts with it like with any adapter."""
    from gradio_client import Client, handle_file

    from tests.test_app_server import wait_for_job
    from tests.test_gradio_api import status

    client = Client(app_server.url, verbose=False, download_files=False)
    ids = [client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                          label_column="sentiment", method="pfeiffer", epochs=1, base_model=str(app_server.tiny_model),
                          name=f"to-fuse-{k}", api_name="/submit_job") for k in (1, 2)]
    for job_id in ids:
        assert wait_for_job(status(client), job_id)["state"] == "succeeded"
    page.reload()
    open_tab(page, "1 · Data")
    page.get_by_label("Built-in demo data").check()
    page.get_by_label(re.compile("Support tickets")).check()
    page.locator("#data-next").click()
    page.locator("#train-method").get_by_text("Fusion", exact=True).click()
    expect(page.locator("#train-options-fusion")).to_be_visible()
    base = page.locator("#train-base-model input")
    base.fill(str(app_server.tiny_model))
    base.press("Enter")
    for k in (1, 2):
        choose(page, "#train-fusion-fuse", re.compile(f"to-fuse-{k} · Pfeiffer"))
    page.keyboard.press("Escape")  # the menu closed before the screenshot
    expect(page.locator("#train-param-count")).to_contain_text("6,272 in the method")  # 2 layers × (3·32² + 2·32)
    page.locator("#train-epochs input").fill("1")
    page.locator("#train-name").get_by_role("textbox").fill("demo-fusion")
    shot(page, "methods-train-fusion")
    page.locator("#train-launch").click()
    header = page.locator("#job-header")
    expect(header).to_contain_text("demo-fusion", timeout=30_000)
    expect(header).to_contain_text("Succeeded", timeout=JOB_TIMEOUT * 1000)
    expect(header).to_contain_text("Fusion")
    expect(page.locator("#job-settings tr", has_text="Adapters to fuse")).to_contain_text("to-fuse-2")
    shot(page, "methods-job-fusion")
    open_tab(page, "4 · Playground")
    choose(page, "#play-adapter", re.compile("demo-fusion"))
    page.locator("#play-text").get_by_role("textbox").fill("I was charged twice this month")
    page.locator("#play-predict").click()
    expect(page.locator("#play-result")).to_contain_text("%")
    assert "Traceback" not in page.content()


def test_the_base_model_picker_lists_families_and_says_what_a_decoder_cannot_take(page, app_server, tmp_path):
    """Recommended models per family with what they need, those not on this machine marked; a decoder LLM typed
    as a folder takes LoRA, and a bottleneck method on it is refused in words before anything is queued."""
    from tests.conftest import make_tiny_model

    open_tab(page, "2 · Train")
    page.locator("#train-base-model input").click()
    expect(page.get_by_role("option", name=re.compile(r"^DeBERTa-v3 base · encoder · 184M .* download needed"))
           ).to_be_visible()
    expect(page.get_by_role("option", name=re.compile(r"^Qwen2\.5 0\.5B · decoder LLM · 494M .* GB GPU"))
           ).to_be_visible()
    expect(page.get_by_role("option", name=re.compile(r"^all-MiniLM-L6-v2 \(bundled\)"))).not_to_contain_text(
        "download needed")
    shot(page, "base-model-picker")
    page.get_by_role("option", name=re.compile(r"^Qwen2\.5 0\.5B")).click()
    expect(page.locator("#train-param-count")).to_contain_text("not available offline")
    folder = make_tiny_model(tmp_path / "tiny-qwen2", "qwen2")
    base = page.locator("#train-base-model input")
    base.fill(str(folder))
    base.press("Enter")
    page.locator("#train-method").get_by_text("LoRA", exact=True).click()
    expect(page.locator("#train-param-count")).to_contain_text("trainable parameters")
    page.locator("#train-method").get_by_text("Pfeiffer", exact=True).click()
    expect(page.locator("#train-param-count")).to_contain_text("needs an encoder base model")
    shot(page, "decoder-refuses-pfeiffer")
