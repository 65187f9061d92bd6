"""Step 4: try finished adapters: one text (and which of its words pushed the prediction), the same text through
several adapters, or a whole table.

All adapters share the web process's one Predictor, so switching between them never reloads the base model.
A result never outlives what produced it: a problem shows as a note in its place, and changing the adapter or the
table clears it. A timer adds adapters that finish while the page is open.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import gradio as gr

from app import access, services
from app.security import safe_filename
from app.tabs.data import FILE_TYPES, GUESS_ROWS
from app.ui import friendly, note
from engine import methods
from engine.data import guess_columns, read_table
from engine.errors import AdapterLabError, ConfigError, DataError

REFRESH_SECONDS = 5
# a Predict clicked this long before the table it needs arrived runs once it has (the click can reach the server
# ahead of the upload's own event, with no file yet)
CLICK_AHEAD_SECONDS = 10.0
T = TypeVar("T")


def adapter_choices() -> list[tuple[str, str]]:
    """Menu entries 'name · method · macro-F1' with the job id as value."""
    out = []
    for a in services.adapters(access.current()):
        score = f" · macro-F1 {a['metrics']['macro_f1']:.2f}" if a.get("metrics") else ""
        own = f" · own model, {a['size_mb']:.0f} MB" if a.get("method") == "full" and a.get("size_mb") else ""
        out.append((f"{a['name']} · {methods.label(a['method'])}{own}{score} · {a['id']}", a["id"]))
    return out


def _menus(options: list[tuple[str, str]], single: str | None, several: list[str] | None, batch: str | None):
    ids = {value for _, value in options}
    first = options[0][1] if options else None
    empty = "" if options else note("No finished adapters yet: train one on the Train tab.", "info")
    # Components, not gr.update: a gr.update with value None leaves the old value in the browser
    return (gr.Dropdown(choices=options, value=single if single in ids else first),
            gr.Dropdown(choices=options, value=[a for a in several or [] if a in ids], multiselect=True),
            gr.Dropdown(choices=options, value=batch if batch in ids else first), empty, options)


def refresh_menus(single: str | None, several: list[str] | None, batch: str | None):
    """Newly finished adapters appear; a chosen adapter stays chosen while it exists. Last: the choices shown."""
    return _menus(adapter_choices(), single, several, batch)


def refresh_if_changed(single: str | None, several: list[str] | None, batch: str | None,
                       shown: list[tuple[str, str]]):
    """The timer's refresh: the menus are only touched when the finished adapters changed, so an open menu or a
    choice being made is not disturbed every few seconds."""
    options = adapter_choices()
    if options == shown:
        return (gr.skip(),) * 5
    return _menus(options, single, several, batch)


def pair_box(keys: str | list[str] | None):
    """Show the second text box only when a chosen adapter was trained on pairs."""
    keys = [keys] if isinstance(keys, str) else keys or []
    columns = []
    for key in keys:
        try:
            columns.append(services.pair_column(services.find_adapter(key, access.current())))
        except AdapterLabError:
            continue
    names = [c for c in columns if c]
    return gr.update(visible=bool(names), label=f"Second text ({names[0]})" if names else "Second text")


def _attempt(work: Callable[..., T], *args) -> tuple[T | None, str]:
    """(work's result, no note), or (None, the problem as an error note): the note replaces the old results,
    where a toast would leave them standing under it."""
    try:
        return friendly(work)(*args), ""
    except gr.Error as exc:
        return None, note(exc.message, "error")


def _no_explanation():
    """The explanation's state, label menu and coloured text, emptied."""
    return None, gr.Dropdown(choices=[], value=None, visible=False), gr.update(value="", visible=False)


def single_changed(key: str | None):
    """A new adapter: the second text box follows it, and the other adapter's result and explanation go."""
    return pair_box(key), None, "", *_no_explanation()


def predict(key: str, text: str, text_pair: str):
    """The probabilities, or a note why there are none; an explanation shown was of another input, so it goes."""
    result, problem = _attempt(services.predict, key, text, text_pair or None, access.current())
    return (result["probabilities"] if result else None), problem, *_no_explanation()


def explain(key: str, text: str, text_pair: str):
    """The probabilities and the text coloured by each word's pull on the predicted label (the menu picks
    another label); the explained input is kept with it, so later edits of the boxes do not mix in."""
    result, problem = _attempt(services.explain, key, text, text_pair or None, access.current())
    if not result:
        return None, problem, *_no_explanation()
    shown = {"text": text, "pair": text_pair, "by_label": result["attributions_by_label"]}
    return (result["probabilities"], "", shown,
            gr.Dropdown(choices=list(shown["by_label"]), value=result["label"], visible=True),
            gr.update(value=highlighted(shown, result["label"]), visible=True))


def highlighted(shown: dict | None, label: str | None) -> str:
    """The explained text as HTML: each word on green (it pushed toward `label`) or red (away from it), deeper
    for a stronger push relative to the text's strongest word; its weight on hover."""
    if not shown or label not in shown["by_label"]:
        return ""
    words = shown["by_label"][label]
    scale = max((abs(w) for _, w in words), default=0.0) or 1.0
    segments = [shown["text"], shown["pair"]] if shown["pair"] else [shown["text"]]
    out, part, at = [], 0, 0
    for word, weight in words:  # each word is a slice of the text, in order: what lies between is kept as it is
        found = segments[part].find(word, at)
        while found < 0 and part + 1 < len(segments):  # the text is done: the rest is the second text's
            out.append(html.escape(segments[part][at:]) + '<br><span class="al-caption">second text</span><br>')
            part, at = part + 1, 0
            found = segments[part].find(word)
        colour = "22, 163, 74" if weight > 0 else "220, 38, 38"
        out.append(html.escape(segments[part][at:found]) + f'<mark style="background: rgba({colour}, '
                   f'{0.8 * abs(weight) / scale:.2f})" title="{weight:+.4f}">{html.escape(word)}</mark>')
        at = found + len(word)
    out.append(html.escape(segments[part][at:]))
    legend = (f"Green: pushed toward {label}; red: pushed away from it. The deeper the colour, the stronger the "
              "push; hover a word for its weight.")
    return f'<div class="al-words">{"".join(out)}</div><div class="al-caption">{html.escape(legend)}</div>'


def compare_all(keys: list[str], text: str, text_pair: str) -> list[dict]:
    """The same input through each chosen adapter, named for the side-by-side view."""
    if not keys or len(keys) < 2:
        raise ConfigError("Choose two or more adapters to compare.")
    results, actor = [], access.current()
    for key in keys:
        adapter = services.find_adapter(key, actor)
        pair = text_pair if services.pair_column(adapter) else None
        result = services.predict(key, text, pair, actor)
        results.append({"name": f"{adapter['name']} ({methods.label(adapter['method'])})", **result})
    return results


def several_changed(keys: list[str] | None):
    """Other adapters chosen: the second text box follows them, and the old results go."""
    return pair_box(keys), [], ""


def compare(keys: list[str], text: str, text_pair: str):
    results, problem = _attempt(compare_all, keys, text, text_pair)
    return results or [], problem


def _trained_columns(key: str | None) -> tuple[str | None, str | None]:
    if not key:
        return None, None
    try:
        return services.text_columns(services.find_adapter(key, access.current()))
    except AdapterLabError:
        return None, None


def batch_help(key: str | None) -> str:
    """Which columns the adapter was trained on, and that the table's may be named otherwise."""
    text, pair = _trained_columns(key)
    if not text:
        return ""
    trained = f"the column '{text}'" + (f" and the second text column '{pair}'" if pair else "")
    return note(f"This adapter was trained on {trained}. After you upload a table, choose which of its columns "
                "hold the text. Other columns are kept as they are.", "info")


def _first_in(columns: list[str], *candidates: str | None) -> str | None:
    return next((c for c in candidates if c in columns), None)


def column_menus(key: str | None, sample: dict[str, list], text: str | None, pair: str | None):
    """The text column menus for this adapter and table (`sample`: its first rows by column): the training column
    where the table has it, else the column already chosen, else a guess from the names and cells (never the label
    column for the second text). The second menu shows for adapters trained on pairs. Components, not gr.update:
    a gr.update with value None leaves the old value in the browser, which Gradio then refuses."""
    if not sample:
        return (gr.Dropdown(choices=[], value=None, visible=False),
                gr.Dropdown(choices=[], value=None, visible=False))
    columns = list(sample)
    trained_text, trained_pair = _trained_columns(key)
    guess = guess_columns(columns, sample)
    text = _first_in(columns, trained_text, text, guess["text"])
    others = [c for c in columns if c not in (text, guess["label"])]
    pair = _first_in(columns, trained_pair, pair, guess["text_pair"], *others[:1])
    return (gr.Dropdown(choices=columns, value=text, visible=True,
                        info=f"The adapter was trained on '{trained_text}'." if trained_text else None),
            gr.Dropdown(choices=columns, value=pair, visible=bool(trained_pair),
                        info=f"The adapter was trained on '{trained_pair}'." if trained_pair else None))


def _no_file():
    """The batch results, emptied: the download goes with the status."""
    return gr.update(value=None, visible=False), ""


def _unless_made_with(made: dict | None, **now: str | None):
    """Empty the batch results unless they were made with these very inputs: a prediction clicked at once after
    an upload or a new adapter may run before the clearing, which must then leave it alone."""
    if made and all(made.get(name) == value for name, value in now.items()):
        return gr.skip(), gr.skip()
    return _no_file()


def table_sample(path: str) -> dict[str, list]:
    """The table's first rows by column: enough to fill and guess the column menus."""
    frame = read_table(path)
    return {str(c): frame[c].head(GUESS_ROWS).tolist() for c in frame.columns}


def _clicked_ahead(made: dict | None) -> bool:
    """Whether Predict was clicked with no table just before this one arrived."""
    return bool(made) and made["path"] is None and time.monotonic() - made.get("clicked", 0.0) < CLICK_AHEAD_SECONDS


def table_changed(key: str | None, path: str | None, text: str | None, pair: str | None, made: dict | None):
    """A new table: its columns fill the menus (or a note says why it cannot be read); the old table's results go,
    or, where Predict was clicked while it was arriving, its predictions come."""
    sample, problem = _attempt(table_sample, path) if path else ({}, "")
    menus = column_menus(key, sample or {}, text, pair)
    if key and sample and _clicked_ahead(made):
        return sample, *menus, *predict_batch(key, path, menus[0].value, menus[1].value)
    download, status = _unless_made_with(made, adapter=key, path=path)
    return sample or {}, *menus, download, problem or status, gr.skip()


def batch_adapter_changed(key: str | None, sample: dict[str, list], text: str | None, pair: str | None,
                          made: dict | None):
    """A new adapter: its help and column menus; the other adapter's predictions go."""
    return batch_help(key), *column_menus(key, sample, text, pair), *_unless_made_with(made, adapter=key)


def columns_chosen(text: str | None, pair: str | None, made: dict | None):
    """Other columns chosen: the predictions from the old ones go."""
    return _unless_made_with(made, text=text, pair=pair)


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def predict_table(key: str, path: str | None, text_column: str | None, pair_column: str | None) -> tuple[Path, str]:
    """The predictions CSV and a status note saying how many rows were predicted and which were left out."""
    if not path:
        raise DataError("Upload a table to predict.")
    output, result = services.predict_file(key, path, f"{safe_filename(Path(path).stem, 'data')}-predictions.csv",
                                           text_column, pair_column, access.current())
    done = f"{result.predicted:,} of {_rows(result.rows)}" if result.skipped else _rows(result.rows)
    status = note(f"Predicted {done}. Download the CSV below: it has a prediction column and one probability "
                  "column per label.", "ok")
    if result.skipped:
        status += note(f"{_rows(result.skipped)} had no text in {result.columns_named}: "
                       f"{'it is' if result.skipped == 1 else 'they are'} in the file with an empty prediction.",
                       "warn")
    return output, status


def predict_batch(key: str, path: str | None, text_column: str | None, pair_column: str | None):
    """The download and status, or a problem in their place; last, what they were made with."""
    made = {"adapter": key, "path": path, "text": text_column, "pair": pair_column, "clicked": time.monotonic()}
    done, problem = _attempt(predict_table, key, path, text_column, pair_column)
    if not done:
        return gr.update(value=None, visible=False), problem, made
    output, status = done
    return gr.update(value=str(output), visible=True), status, made


def build() -> list:
    """The playground; returns the adapter menus, the no-adapters note and the choices shown (inputs of
    `refresh_menus` first), to refresh when adapters may have changed."""
    with gr.Row(equal_height=True):
        gr.Markdown("## Step 4 · Try your adapters")
        refresh = gr.Button("↻ Refresh adapter list", size="sm", scale=0, min_width=200)
    empty = gr.Markdown(elem_id="play-empty")
    shown = gr.State([])
    with gr.Tabs():
        with gr.Tab("One text"):
            adapter = gr.Dropdown([], label="Adapter", elem_id="play-adapter")
            text = gr.Textbox(label="Text", lines=3, placeholder="Type or paste a text to classify",
                              elem_id="play-text")
            text_pair = gr.Textbox(label="Second text", lines=2, visible=False, elem_id="play-text-pair")
            with gr.Row():
                go = gr.Button("Predict", variant="primary", elem_id="play-predict")
                why = gr.Button("Explain", elem_id="play-explain")
            status = gr.Markdown(elem_id="play-status")
            result = gr.Label(label="Prediction and probability per label", num_top_classes=20,
                              elem_id="play-result")
            explained = gr.State(None)  # the input explained and every label's word weights
            explain_label = gr.Dropdown([], label="Colour the words by their pull on", visible=False,
                                        elem_id="play-explain-label")
            words = gr.HTML(visible=False, elem_id="play-words")
        with gr.Tab("Compare adapters"):
            several = gr.Dropdown([], multiselect=True, label="Adapters to compare (two or more)",
                                  elem_id="compare-adapters")
            compare_text = gr.Textbox(label="Text", lines=3, elem_id="compare-text")
            compare_pair = gr.Textbox(label="Second text", lines=2, visible=False, elem_id="compare-text-pair")
            compare_go = gr.Button("Compare", variant="primary", elem_id="compare-go")
            compare_status = gr.Markdown(elem_id="compare-status")
            results = gr.State([])

            @gr.render(inputs=results)
            def side_by_side(found: list[dict]):
                with gr.Row(elem_id="compare-results"):
                    for item in found:
                        gr.Label(item["probabilities"], label=item["name"], num_top_classes=20, min_width=220)
        with gr.Tab("Batch (CSV)"):
            batch_adapter = gr.Dropdown([], label="Adapter", elem_id="batch-adapter")
            batch_note = gr.Markdown()
            upload = gr.File(label="Table to predict (CSV, TSV, JSON Lines or Parquet)",
                             file_types=FILE_TYPES, height=120, elem_id="batch-upload")
            sample = gr.State({})  # the uploaded table's first rows, for the column menus
            made = gr.State(None)  # the inputs the batch results shown were made with
            with gr.Row():
                text_column = gr.Dropdown([], label="Text column", visible=False, elem_id="batch-text-column")
                pair_column = gr.Dropdown([], label="Second text column", visible=False,
                                          elem_id="batch-pair-column")
            batch_go = gr.Button("Predict every row", variant="primary", elem_id="batch-go")
            batch_status = gr.Markdown(elem_id="batch-status")
            download = gr.File(label="Predictions", visible=False, interactive=False, elem_id="batch-download")

    menus = [adapter, several, batch_adapter, empty, shown]
    refresh.click(refresh_menus, menus[:3], menus)
    gr.Timer(REFRESH_SECONDS).tick(refresh_if_changed, menus[:3] + [shown], menus, show_progress="hidden")
    # Events that write results run one at a time, in the order they were sent: a predict clicked just after an
    # upload runs after the upload's clearing, never before it. Predictions share one lock anyway.
    ordered = {"concurrency_id": "playground-results", "concurrency_limit": 1}
    explanation = [explained, explain_label, words]
    adapter.change(single_changed, adapter, [text_pair, result, status, *explanation], **ordered)
    several.change(several_changed, several, [compare_pair, results, compare_status], **ordered)
    go.click(predict, [adapter, text, text_pair], [result, status, *explanation], **ordered)
    text.submit(predict, [adapter, text, text_pair], [result, status, *explanation], **ordered)
    why.click(explain, [adapter, text, text_pair], [result, status, *explanation], **ordered)
    explain_label.input(highlighted, [explained, explain_label], words, **ordered)
    compare_go.click(compare, [several, compare_text, compare_pair], [results, compare_status], **ordered)
    batch_outputs = [download, batch_status]
    batch_adapter.change(batch_adapter_changed, [batch_adapter, sample, text_column, pair_column, made],
                         [batch_note, text_column, pair_column, *batch_outputs], **ordered)
    upload.change(table_changed, [batch_adapter, upload, text_column, pair_column, made],
                  [sample, text_column, pair_column, *batch_outputs, made], **ordered)
    text_column.input(columns_chosen, [text_column, pair_column, made], batch_outputs, **ordered)
    pair_column.input(columns_chosen, [text_column, pair_column, made], batch_outputs, **ordered)
    batch_go.click(predict_batch, [batch_adapter, upload, text_column, pair_column], [*batch_outputs, made],
                   **ordered)
    return menus
