"""The Playground's callbacks without a server: the timer's refresh, the batch column menus, errors in place."""

from __future__ import annotations

import gradio as gr
import pytest

from app import services
from app.tabs import playground
from tests.conftest import write_csv

ADAPTERS = {"j1": {"id": "j1", "name": "reviews", "method": "pfeiffer", "metrics": None, "columns": ("review", None)},
            "j2": {"id": "j2", "name": "pairs", "method": "ia3", "metrics": None, "columns": ("q1", "q2")}}


@pytest.fixture()
def finished(monkeypatch) -> dict:
    """Finished adapters as the job store would list them (newest first); tests add and remove entries."""
    found = {"j1": ADAPTERS["j1"]}
    monkeypatch.setattr(services, "adapters", lambda actor: list(reversed(found.values())))
    monkeypatch.setattr(services.jobs, "finished_adapter", lambda key, actor: found.get(key))  # the lookup by id
    monkeypatch.setattr(services, "text_columns", lambda adapter: adapter["columns"])
    return found


def test_the_timer_touches_the_menus_only_when_the_adapters_changed(finished):
    single, several, batch, empty, shown = playground.refresh_menus(None, None, None)
    assert single.value == batch.value == "j1" and empty == ""
    assert playground.refresh_if_changed("j1", ["j1"], "j1", shown) == (gr.skip(),) * 5
    finished["j2"] = ADAPTERS["j2"]
    single, several, batch, _, now = playground.refresh_if_changed("j1", ["j1"], "j1", shown)
    assert [value for _, value in single.choices] == ["j2", "j1"] and now == single.choices
    assert (single.value, several.value, batch.value) == ("j1", ["j1"], "j1")  # the choice stays
    del finished["j1"], finished["j2"]
    single, several, batch, empty, _ = playground.refresh_if_changed("j1", ["j1"], "j1", now)
    assert single.value is None and several.value == [] and "No finished adapters" in empty


def test_column_menus_prefer_the_training_column_then_the_choice_then_a_guess(finished):
    finished["j2"] = ADAPTERS["j2"]
    text, pair = playground.column_menus("j1", dict.fromkeys(["id", "review", "message"], []), "message", None)
    assert text.value == "review" and text.visible and not pair.visible
    assert "trained on 'review'" in text.info
    text, _ = playground.column_menus("j1", dict.fromkeys(["id", "message", "notes"], []), "notes", None)
    assert text.value == "notes"
    text, _ = playground.column_menus("j1", {"id": ["1", "2", "3"], "body": ["a long text", "longer texts", "x"]},
                                      "gone", None)
    assert text.value == "body" and [v for _, v in text.choices] == ["id", "body"]  # by content: the longest cells
    text, pair = playground.column_menus("j2", dict.fromkeys(["a", "b"], []), None, None)
    assert (text.value, pair.value, pair.visible) == ("a", "b", True)
    text, pair = playground.column_menus("j2", dict.fromkeys(["review", "sentiment"], []), None, None)
    assert (text.value, pair.value) == ("review", None)  # a label column is no second text
    assert playground.column_menus("j2", {}, "a", "b")[0].visible is False


def test_problems_replace_the_results_with_a_note(finished, tmp_path):
    download, status, made = playground.predict_batch("j1", None, None, None)
    assert download["visible"] is False and "Upload a table to predict" in status and "al-error" in status
    assert made.items() >= {"adapter": "j1", "path": None, "text": None, "pair": None}.items()
    download, status, _ = playground.predict_batch("nope", str(tmp_path / "x.csv"), "text", None)
    assert download["value"] is None and "no finished adapter &#x27;nope&#x27;" in status
    probabilities, status, explained, _, words = playground.predict("j1", "  ", "")
    assert (probabilities, status) == (None, playground.note("Type a text to classify.", "error"))
    assert explained is None and words["visible"] is False
    probabilities, status, explained, _, _ = playground.explain("j1", "", "")
    assert probabilities is None and "Type a text to classify" in status and explained is None
    results, status = playground.compare(["j1"], "hello", "")
    assert results == [] and "two or more adapters" in status
    sample, text, _, download, status, _ = playground.table_changed("j1", str(tmp_path / "missing.csv"), None,
                                                                    None, None)
    assert sample == {} and text.visible is False and download["visible"] is False and "no such file" in status


def test_a_clearing_that_runs_late_leaves_newer_results_alone(finished, tmp_path):
    """Predict clicked at once after an upload or an adapter change may run first: its results stay."""
    path = str(write_csv(tmp_path / "t.csv", [{"review": "i love it"}]))
    made = {"adapter": "j1", "path": path, "text": "review", "pair": None}
    *_, download, status, _ = playground.table_changed("j1", path, None, None, made)
    assert (download, status) == (gr.skip(), gr.skip())
    *_, download, status, _ = playground.table_changed("j1", path, None, None, {**made, "path": "/other.csv"})
    assert download["visible"] is False and status == ""
    assert playground.batch_adapter_changed("j1", {}, None, None, made)[-2:] == (gr.skip(), gr.skip())
    assert playground.batch_adapter_changed("j2", {}, None, None, made)[-1] == ""
    assert playground.columns_chosen("review", None, made) == (gr.skip(), gr.skip())
    assert playground.columns_chosen("id", None, made)[0]["visible"] is False


def test_predict_clicked_before_its_table_arrived_runs_when_it_does(finished, tmp_path, monkeypatch):
    """The click can reach the server ahead of the upload's event, with no file yet: the table's arrival then
    predicts it with the columns it fills in, instead of clearing the note the click left."""
    path = str(write_csv(tmp_path / "t.csv", [{"id": "1", "review": "i love it"}]))
    asked = []

    def predict_file(key, table, name, text, pair, actor):
        asked.append((key, table, text))
        return tmp_path / name, type("Result", (), {"skipped": 0, "rows": 1})()

    monkeypatch.setattr(services, "predict_file", predict_file)
    _, status, made = playground.predict_batch("j1", None, "review", None)
    assert "Upload a table to predict" in status
    sample, text, _, download, status, now = playground.table_changed("j1", path, None, None, made)
    assert asked == [("j1", path, "review")] and text.value == "review"
    assert download["visible"] is True and "Predicted 1 row" in status and now["path"] == path
    *_, download, status, _ = playground.table_changed("j1", path, None, None, {**made, "clicked": 0.0})
    assert len(asked) == 1 and download["visible"] is False  # a click long ago: the table only clears


EXPLAINED = {"label": "pos", "probabilities": {"neg": 0.2, "pos": 0.8},
             "attributions": [["I", 0.5], ["love", 1.0], ["<it>", -0.25], ["!", -1.0]],
             "attributions_by_label": {"neg": [["I", -0.5], ["love", -2.0], ["<it>", 0.5], ["!", 1.0]],
                                       "pos": [["I", 0.5], ["love", 1.0], ["<it>", -0.25], ["!", -1.0]]}}


def test_explain_colours_the_words_for_the_chosen_label(finished, monkeypatch):
    monkeypatch.setattr(services, "explain", lambda key, text, pair, actor: EXPLAINED)
    probabilities, status, shown, menu, words = playground.explain("j1", "I  love <it>!", "")
    assert probabilities == EXPLAINED["probabilities"] and status == ""
    assert menu.value == "pos" and [v for _, v in menu.choices] == ["neg", "pos"] and menu.visible
    html = words["value"]
    assert html.startswith('<div class="al-words"><mark style="background: rgba(22, 163, 74, 0.40)" title="+0.5000">'
                           'I</mark>  <mark style="background: rgba(22, 163, 74, 0.80)"')  # the text's own spaces
    assert '<mark style="background: rgba(220, 38, 38, 0.20)" title="-0.2500">&lt;it&gt;</mark>' in html
    assert "Green: pushed toward pos; red: pushed away from it." in html
    other = playground.highlighted(shown, "neg")
    assert 'rgba(220, 38, 38, 0.80)" title="-2.0000">love' in other and "pushed toward neg" in other
    assert playground.highlighted(None, "pos") == "" and playground.highlighted(shown, "gone") == ""
    *_, shown, menu, words = playground.single_changed("j1")  # another adapter: the explanation goes
    assert shown is None and menu.visible is False and words["visible"] is False


def test_a_second_text_is_shown_after_the_first():
    shown = {"text": "good day", "pair": "bad night", "by_label": {"a": [["good", 1.0], ["day", 0.0], ["bad", -1.0],
                                                                        ["night", 0.0]]}}
    html = playground.highlighted(shown, "a")
    assert html.index("day") < html.index("second text") < html.index("bad")
    assert 'rgba(220, 38, 38, 0.80)" title="-1.0000">bad</mark>' in html
