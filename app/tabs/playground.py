"""Step 4: try finished adapters: one text, the same text through several adapters, or a whole CSV.

All adapters share the web process's one Predictor, so switching between them never reloads the base model.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app import job_views as views
from app import services
from app.security import safe_filename
from app.tabs.data import FILE_TYPES
from app.ui import friendly, note
from engine.errors import AdapterLabError


def adapter_choices() -> list[tuple[str, str]]:
    """Menu entries 'name · method · macro-F1' with the job id as value."""
    out = []
    for a in services.adapters():
        score = f" · macro-F1 {a['metrics']['macro_f1']:.2f}" if a.get("metrics") else ""
        out.append((f"{a['name']} · {views.METHOD_NAMES.get(a['method'], a['method'])}{score} · {a['id']}", a["id"]))
    return out


def refresh_menus(single: str | None, several: list[str] | None, batch: str | None):
    """Newly finished adapters appear; a chosen adapter stays chosen while it exists."""
    options = adapter_choices()
    ids = {value for _, value in options}
    first = options[0][1] if options else None
    empty = "" if options else note("No finished adapters yet: train one on the Train tab.", "info")
    return (gr.update(choices=options, value=single if single in ids else first),
            gr.update(choices=options, value=[a for a in several or [] if a in ids]),
            gr.update(choices=options, value=batch if batch in ids else first), empty)


def pair_box(keys: str | list[str] | None):
    """Show the second text box only when a chosen adapter was trained on pairs."""
    keys = [keys] if isinstance(keys, str) else keys or []
    columns = []
    for key in keys:
        try:
            columns.append(services.pair_column(services.find_adapter(key)))
        except AdapterLabError:
            continue
    names = [c for c in columns if c]
    return gr.update(visible=bool(names), label=f"Second text ({names[0]})" if names else "Second text")


def batch_help(key: str | None) -> str:
    """Which columns the uploaded table needs for the chosen adapter."""
    if not key:
        return ""
    try:
        text, pair = services.text_columns(services.find_adapter(key))
    except AdapterLabError:
        return ""
    needs = f"a column named '{text}'" + (f" and one named '{pair}'" if pair else "")
    return note(f"This adapter reads {needs}, like its training data. Other columns are kept as they are.", "info")


@friendly
def predict(key: str, text: str, text_pair: str):
    result = services.predict(key, text, text_pair or None)
    return result["probabilities"]


@friendly
def compare(keys: list[str], text: str, text_pair: str) -> list[dict]:
    if not keys or len(keys) < 2:
        raise gr.Error("Choose two or more adapters to compare.", title="Please check")
    results = []
    for key in keys:
        adapter = services.find_adapter(key)
        pair = text_pair if services.pair_column(adapter) else None
        result = services.predict(key, text, pair)
        results.append({"name": f"{adapter['name']} ({views.METHOD_NAMES.get(adapter['method'])})", **result})
    return results


@friendly
def predict_batch(key: str, path: str | None):
    if not path:
        raise gr.Error("Upload a table to predict.", title="Please check")
    output, rows = services.predict_file(key, path, f"{safe_filename(Path(path).stem, 'data')}-predictions.csv")
    return gr.update(value=str(output), visible=True), note(f"Predicted {rows:,} rows. Download the CSV below: "
                                                            "it has a prediction column and one probability "
                                                            "column per label.", "ok")


def build() -> list:
    """The playground; returns the components to refresh when adapters may have changed."""
    with gr.Row(equal_height=True):
        gr.Markdown("## Step 4 · Try your adapters")
        refresh = gr.Button("↻ Refresh adapter list", size="sm", scale=0, min_width=200)
    empty = gr.Markdown(elem_id="play-empty")
    with gr.Tabs():
        with gr.Tab("One text"):
            adapter = gr.Dropdown([], label="Adapter", elem_id="play-adapter")
            text = gr.Textbox(label="Text", lines=3, placeholder="Type or paste a text to classify",
                              elem_id="play-text")
            text_pair = gr.Textbox(label="Second text", lines=2, visible=False, elem_id="play-text-pair")
            go = gr.Button("Predict", variant="primary", elem_id="play-predict")
            result = gr.Label(label="Prediction and probability per label", num_top_classes=20,
                              elem_id="play-result")
        with gr.Tab("Compare adapters"):
            several = gr.Dropdown([], multiselect=True, label="Adapters to compare (two or more)",
                                  elem_id="compare-adapters")
            compare_text = gr.Textbox(label="Text", lines=3, elem_id="compare-text")
            compare_pair = gr.Textbox(label="Second text", lines=2, visible=False, elem_id="compare-text-pair")
            compare_go = gr.Button("Compare", variant="primary", elem_id="compare-go")
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
            batch_go = gr.Button("Predict every row", variant="primary", elem_id="batch-go")
            batch_status = gr.Markdown()
            download = gr.File(label="Predictions", visible=False, interactive=False, elem_id="batch-download")

    menus = [adapter, several, batch_adapter, empty]
    refresh.click(refresh_menus, menus[:3], menus)
    adapter.change(pair_box, adapter, text_pair)
    several.change(pair_box, several, compare_pair)
    batch_adapter.change(batch_help, batch_adapter, batch_note)
    go.click(predict, [adapter, text, text_pair], result)
    text.submit(predict, [adapter, text, text_pair], result)
    compare_go.click(compare, [several, compare_text, compare_pair], results)
    batch_go.click(predict_batch, [batch_adapter, upload], [download, batch_status])
    return menus
