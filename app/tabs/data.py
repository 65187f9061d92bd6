"""Step 1: pick the data (upload, demo, datasets folder or hub), map its columns, and see what training will use.

The tab only reads and checks the data with the engine; the Train tab takes the chosen source and columns.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from app import services
from app.ui import friendly, note
from engine.data import DEMO_DATA, DEMO_PAIR_DATA, guess_columns, prepare, read_table
from engine.errors import AdapterLabError, DataError

SOURCES = ["Upload a file", "Built-in demo data", "Server datasets folder", "Hugging Face Hub"]
DEMOS = {"Support tickets: sort a message into 4 topics": DEMO_DATA,
         "Duplicate questions: are two questions the same? (text pairs)": DEMO_PAIR_DATA}
FILE_TYPES = [".csv", ".tsv", ".txt", ".jsonl", ".json", ".parquet"]
NO_PAIR = ""
PREVIEW_ROWS = 8
IMBALANCE_RATIO = 5
FEW_ROWS = 5


@dataclass
class DataTab:
    """What other tabs read: where the data is, its columns, and the label names found."""

    source: gr.State
    source_name: gr.State
    validation: gr.State
    labels: gr.State
    text: gr.Dropdown
    pair: gr.Dropdown
    label: gr.Dropdown
    next_button: gr.Button


def _preview(frame: pd.DataFrame) -> pd.DataFrame:
    head = frame.head(PREVIEW_ROWS).astype(str)
    return head.map(lambda v: v if len(v) <= 120 else v[:117] + "…")


def _loaded(source: str, name: str):
    """Read the table, show its first rows, and fill the column menus with good guesses."""
    try:
        frame = read_table(source)
    except AdapterLabError as exc:
        return _cleared(note(str(exc), "error"))
    columns = list(frame.columns)
    guess = guess_columns(columns)
    pair_choices = [("(none: one text per row)", NO_PAIR)] + [(c, c) for c in columns]
    status = note(f"Loaded {name}: {len(frame):,} rows, {len(columns)} columns. Check the columns below.", "ok")
    return (source, name, gr.update(value=_preview(frame), visible=True),
            gr.update(choices=columns, value=guess["text"]), gr.update(choices=pair_choices,
                                                                       value=guess["text_pair"] or NO_PAIR),
            gr.update(choices=columns, value=guess["label"]), status)


@friendly
def load_upload(path: str | None):
    if not path:
        return _cleared()
    return _loaded(path, Path(path).name)


@friendly
def load_demo(choice: str):
    return _loaded(str(DEMOS[choice]), DEMOS[choice].name)


@friendly
def load_folder(name: str | None):
    if not name:
        return _cleared()
    return _loaded(str(services.dataset_path(name)), name)


@friendly
def load_hub(name: str):
    name = (name or "").strip()
    if not name:
        raise gr.Error("Type a dataset name, for example `imdb` or `glue:sst2`.", title="Please check")
    return _loaded(name, name)


def _cleared(status: str = ""):
    empty = gr.update(choices=[], value=None)
    return None, None, gr.update(value=None, visible=False), empty, empty, empty, status


def _imbalance(counts: dict[str, int]) -> list[str]:
    warnings = []
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    if counts[least] and counts[most] / counts[least] >= IMBALANCE_RATIO:
        warnings.append(f"The labels are imbalanced: '{most}' has {counts[most]:,} training rows, '{least}' only "
                        f"{counts[least]:,}. The model may rarely predict '{least}'; judge it by macro-F1, which "
                        "weighs every label equally, and add examples of the rare labels if you can.")
    few = [label for label, n in counts.items() if n < FEW_ROWS]
    if few:
        warnings.append(f"Very few examples of {', '.join(repr(x) for x in few)}: fewer than {FEW_ROWS} rows "
                        "each. Predictions for these labels will be unreliable.")
    return warnings


def label_bars(counts: dict[str, int]) -> str:
    """The label distribution as horizontal bars (HTML), rare labels in amber."""
    top = max(counts.values()) or 1
    rare = {label for label, n in counts.items() if n < FEW_ROWS or top / max(n, 1) >= IMBALANCE_RATIO}
    rows = "".join(
        f'<div class="al-bar-row"><span class="al-bar-label" title="{html.escape(label)}">{html.escape(label)}'
        f'</span><span class="al-bar-track"><span class="al-bar-fill{" al-rare" if label in rare else ""}" '
        f'style="width:{100 * n / top:.1f}%"></span></span><span class="al-bar-count">{n:,}</span></div>'
        for label, n in counts.items())
    return f'<div class="al-bars"><div class="al-bars-title">Training rows per label</div>{rows}</div>'


def _report(data) -> str:
    report = data.report
    held_out = ("a 10% split of the same file" if report.validation_source == "split"
                else f"from {report.validation_source}")
    lines = [f"**{report.rows:,} rows** read: **{report.train_rows:,}** for training, "
             f"**{report.validation_rows:,}** held out to measure accuracy ({held_out}). "
             f"**{len(data.labels)} labels**."]
    if report.dropped:
        reasons = "; ".join(f"{n:,} with {why}" for why, n in report.dropped.items())
        lines.append(f"**Dropped {sum(report.dropped.values()):,} rows** that cannot be used: {reasons}.")
    else:
        lines.append("No rows were dropped.")
    lines += [f"⚠️ {w}" for w in _imbalance(report.label_counts)]
    return "\n\n".join(lines)


@friendly
def check(source: str | None, text: str | None, pair: str | None, label: str | None, validation: str | None):
    """Prepare the data exactly as training will, and report labels, dropped rows and imbalance."""
    if not source or not text or not label:
        return gr.update(value="", visible=False), gr.update(visible=False), [], gr.update(interactive=False)
    try:
        if text == label or (pair and pair in (text, label)):
            raise DataError("The text, second text and label must be three different columns.")
        data = prepare(source, validation, text, pair or None, label)
    except AdapterLabError as exc:
        return gr.update(value=note(str(exc), "error"), visible=True), gr.update(visible=False), [], \
            gr.update(interactive=False)
    return (gr.update(value=_report(data), visible=True),
            gr.update(value=label_bars(data.report.label_counts), visible=True), data.labels,
            gr.update(interactive=True))


def _upload_validation(path: str | None) -> str | None:
    return path or None


def build() -> DataTab:
    gr.Markdown("## Step 1 · Choose your data\nA table with one text per row (or two, for pairs) and a label "
                "column: CSV, TSV, JSON Lines or Parquet.")
    source, source_name, validation, labels = gr.State(None), gr.State(None), gr.State(None), gr.State([])
    kind = gr.Radio(SOURCES, value=SOURCES[0], label="Where is the data?", elem_id="data-source")
    with gr.Group(visible=True) as upload_box:
        upload = gr.File(label="Upload a table", file_types=FILE_TYPES, elem_id="data-upload", height=120)
    with gr.Group(visible=False) as demo_box:
        demo = gr.Radio(list(DEMOS), label="Demo data set", elem_id="data-demo")
    with gr.Group(visible=False) as folder_box:
        with gr.Row(equal_height=True):
            folder = gr.Dropdown([], label="Datasets on the server", scale=4, elem_id="data-folder",
                                 info=f"Tables placed in {services.datasets_dir()}")
            refresh = gr.Button("↻ Refresh list", scale=1, size="md")
    with gr.Group(visible=False) as hub_box:
        with gr.Row(equal_height=True):
            hub = gr.Textbox(label="Hugging Face dataset name", placeholder="e.g. imdb, or glue:sst2", scale=4,
                             info="The server downloads the 'train' split; it needs internet access.")
            hub_load = gr.Button("Load", scale=1, size="md")
    status = gr.Markdown(elem_id="data-status")
    preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows", visible=False, interactive=False, wrap=True,
                           max_height=400, elem_id="data-preview")
    gr.Markdown("### Which columns hold what?")
    with gr.Row():
        text = gr.Dropdown([], label="Text column", info="The text to classify.", elem_id="col-text")
        pair = gr.Dropdown([], label="Second text column (optional)", elem_id="col-pair",
                           info="Only for pairs, e.g. question + answer.")
        label = gr.Dropdown([], label="Label column", info="The category to predict.", elem_id="col-label")
    with gr.Accordion("Optional: a separate validation file", open=False):
        gr.Markdown("By default 10% of the rows are held out to measure accuracy. Upload a file with the same "
                    "columns to measure on it instead.")
        val_upload = gr.File(label="Validation table", file_types=FILE_TYPES, height=100)
    with gr.Row():
        report = gr.Markdown(visible=False, elem_id="data-report")
        chart = gr.HTML(visible=False, elem_id="label-chart")
    next_button = gr.Button("Next: choose how to train →", variant="primary", interactive=False,
                            elem_id="data-next")

    loaded = [source, source_name, preview, text, pair, label, status]
    boxes = [upload_box, demo_box, folder_box, hub_box]
    kind.change(lambda k: [gr.update(visible=k == s) for s in SOURCES], kind, boxes)
    kind.change(lambda k: gr.update(choices=services.dataset_files()) if k == SOURCES[2] else gr.skip(), kind,
                folder)
    refresh.click(lambda: gr.update(choices=services.dataset_files()), None, folder)
    checked = [report, chart, labels, next_button]
    columns = [source, text, pair, label, validation]
    for event in (upload.change(load_upload, upload, loaded), demo.input(load_demo, demo, loaded),
                  folder.input(load_folder, folder, loaded), hub_load.click(load_hub, hub, loaded),
                  hub.submit(load_hub, hub, loaded)):
        event.success(check, columns, checked)
    val_upload.change(_upload_validation, val_upload, validation).then(check, columns, checked)
    gr.on([text.input, pair.input, label.input], check, columns, checked)
    return DataTab(source, source_name, validation, labels, text, pair, label, next_button)
