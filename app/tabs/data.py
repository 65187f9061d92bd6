"""Step 1: pick the data (upload, demo, datasets folder or hub), map its columns, and see what training will use.

The tab only reads and checks the data with the engine. What the Train tab reads is one value, `chosen`: a
complete, checked choice of data, columns and label names, or None. Every load, clear, change of source or
failure replaces the whole of what the tab shows in one step, so nothing from an earlier file outlives it.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from app import services
from app.ui import friendly, note
from engine.data import DEMO_DATA, DEMO_PAIR_DATA, guess_columns, prepare, read_head
from engine.errors import AdapterLabError, DataError
from engine.options import default_of
from engine.training import TrainConfig

SOURCES = ["Upload a file", "Built-in demo data", "Server datasets folder", "Hugging Face Hub"]
DEMOS = {"Support tickets: sort a message into 4 topics": DEMO_DATA,
         "Duplicate questions: are two questions the same? (text pairs)": DEMO_PAIR_DATA}
FILE_TYPES = [".csv", ".tsv", ".txt", ".jsonl", ".json", ".parquet"]
FORMATS = "CSV, TSV, JSON Lines or Parquet"
NO_PAIR = ""
PREVIEW_ROWS = 8
GUESS_ROWS = 1000
IMBALANCE_RATIO = 5
FEW_ROWS = 5
RENAME_HEADERS = ["Label in the data", "Name to use"]
# The report says what training will use: its default cap on validation rows included
MAX_EVAL_SAMPLES = default_of(next(f for f in dataclasses.fields(TrainConfig) if f.name == "max_eval_samples"))
# What a check and a load return, in order (the components in `build` follow these names)
CHECKED = ("report", "chart", "renames", "chosen", "next_button", "next_hint")
SHOWN = ("loaded", "preview", "text", "pair", "label", "status", "validation", "val_upload", *CHECKED)


# Gradio refuses a file over the server's upload limit in the browser, with its own toast ("File(s) exceed the
# maximum allowed size of 1.0 Gb: ...") and no event on the server: this rewrites that toast in our words.
TOO_BIG_JS = r"""() => {
  const said = /^File\(s\) exceed the maximum allowed size of (.+?): (.+)$/;
  new MutationObserver(() => {
    for (const text of document.querySelectorAll('[data-testid=toast-text]')) {
      const m = text.textContent.trim().match(said);
      if (!m) continue;
      text.textContent = `${m[2]} is larger than this server takes from a browser (${m[1].replace('Mb', 'MB')
        .replace('Gb', 'GB')} at most), so it was not uploaded. Put it in the server's datasets folder and choose `
        + `"Server datasets folder", or ask whoever runs the server to raise --max-upload-mb.`;
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def size_limit(megabytes: int) -> str:
    return f"{megabytes / 1024:g} GB" if megabytes >= 1024 else f"{megabytes} MB"


@dataclass
class DataTab:
    """What other tabs read: the checked choice of data (or None) and the button to the next step."""

    chosen: gr.State
    next_button: gr.Button
    balance_button: gr.Button  # shown when the labels are imbalanced: turns on class balancing on the Train tab


def _preview(frame: pd.DataFrame) -> pd.DataFrame:
    head = frame.head(PREVIEW_ROWS).astype(str)
    return head.map(lambda v: v if len(v) <= 120 else v[:117] + "…")


def _menu(choices: list, value: str | None) -> gr.Dropdown:
    """A column menu with new choices; a component (not gr.update) so that `value=None` really clears it."""
    return gr.Dropdown(choices=choices, value=value)


def imbalanced(counts: dict[str, int]) -> bool:
    least = min(counts.values())
    return bool(least) and max(counts.values()) / least >= IMBALANCE_RATIO


def _imbalance(counts: dict[str, int]) -> list[str]:
    warnings = []
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    if imbalanced(counts):
        warnings.append(f"The labels are imbalanced: '{most}' has {counts[most]:,} training rows, '{least}' only "
                        f"{counts[least]:,}. The model may rarely predict '{least}'; judge it by macro-F1, which "
                        "weighs every label equally, and add examples of the rare labels if you can. *Balance "
                        "classes* (the button below, or on the Train tab) makes each label count equally in "
                        "training.")
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
    """What training will do with the rows, in plain words."""
    report = data.report
    sampled = report.validation_sampled_from
    if report.validation_source == "split" and sampled:
        use = (f"**{report.rows:,} rows** read: **{report.train_rows:,}** for training, and accuracy measured on "
               f"**{report.validation_rows:,}** of the {sampled:,} rows held out (a 10% split of the same file): "
               f"a seeded sample, so that each epoch's check stays quick (*Max validation rows* on the Train tab).")
    elif report.validation_source == "split":
        use = (f"**{report.rows:,} rows** read: **{report.train_rows:,}** for training and "
               f"**{report.validation_rows:,}** held out to measure accuracy (a 10% split of the same file).")
    elif sampled:
        use = (f"**{report.rows:,} rows** read: **{report.train_rows:,}** for training. Accuracy is measured on a "
               f"seeded sample of **{report.validation_rows:,}** of the {sampled:,} rows of "
               f"{report.validation_source} (*Max validation rows* on the Train tab).")
    else:
        use = (f"**{report.rows:,} rows** read: **{report.train_rows:,}** for training. Accuracy is measured on "
               f"the **{report.validation_rows:,} rows** of {report.validation_source}.")
    lines = [f"{use} **{len(data.labels)} labels**."]
    if report.dropped:
        reasons = "; ".join(f"{n:,} with {why}" for why, n in report.dropped.items())
        lines.append(f"**Dropped {sum(report.dropped.values()):,} rows** that cannot be used: {reasons}.")
    else:
        lines.append("No rows were dropped.")
    lines += [f"⚠️ {w}" for w in _imbalance(report.label_counts)]
    return "\n\n".join(lines)


def _missing(text: str | None, label: str | None) -> str:
    """Why Next is off, beside it."""
    if not text and not label:
        return "Choose the text and label columns."
    return "Choose the text column." if not text else "Choose the label column."


def _names(table: pd.DataFrame | None) -> dict[str, str]:
    """{label in the data: new name} from the rename table, only for labels given another name."""
    if table is None or len(table) == 0:
        return {}
    rows = table.astype(str).values.tolist()
    return {raw: new.strip() for raw, new, *_ in rows if new.strip() and new.strip() != raw}


def _checked(loaded: dict | None, text: str | None, pair: str | None, label: str | None,
             validation: dict | None, names: dict[str, str], rebuild: bool = True) -> tuple:
    """(report, bars, rename table, chosen, next button, hint): the data prepared exactly as training will.

    `rebuild` refills the rename table from the labels found (keeping names already given); while the user
    edits the table it is left as it is."""
    keep = gr.skip() if not rebuild else gr.update(visible=False)
    off = gr.update(interactive=False)
    if not loaded:
        return (gr.update(value="", visible=False), gr.update(visible=False), keep, None, off,
                note("Choose the data first.", "info"))
    if not text or not label:
        return (gr.update(value="", visible=False), gr.update(visible=False), keep, None, off,
                note(_missing(text, label), "info"))
    try:
        if text == label or (pair and pair in (text, label)):
            raise DataError("The text, second text and label must be three different columns.")
        raw = prepare(loaded["source"], validation["path"] if validation else None, text, pair or None, label,
                      name=loaded["name"], validation_name=validation["name"] if validation else None,
                      max_eval_samples=MAX_EVAL_SAMPLES)
        names = {k: v for k, v in names.items() if k in raw.labels}  # a new label column keeps no old names
        data = raw.renamed(names)
    except AdapterLabError as exc:
        return (gr.update(value=note(str(exc), "error"), visible=True), gr.update(visible=False), keep, None, off,
                note("Fix the problem above to go on.", "warn"))
    table = pd.DataFrame([[raw_label, names.get(raw_label, raw_label)] for raw_label in raw.labels],
                         columns=RENAME_HEADERS)
    chosen = {"source": loaded["source"], "name": loaded["name"], "validation": validation, "text": text,
              "pair": pair or None, "label": label, "labels": data.labels, "label_names": names or None,
              "imbalanced": imbalanced(data.report.label_counts)}
    return (gr.update(value=_report(data), visible=True),
            gr.update(value=label_bars(data.report.label_counts), visible=True),
            gr.update(value=table, visible=True) if rebuild else gr.skip(), chosen,
            gr.update(interactive=True), "")


def _cleared(status: str = "") -> tuple:
    """Every output of a load, empty: what the tab shows before any data, or after a failed load."""
    empty = _menu([], None)
    return (None, gr.update(value=None, visible=False), empty, empty, empty, status, None, gr.File(value=None),
            *_checked(None, None, None, None, None, {}))


def _pending(name: str) -> tuple:
    """What the check shows while it reads every row: a big file's summary comes a few seconds after its preview."""
    return (gr.update(value=note(f"Reading every row of {name} to count rows and labels…", "info"), visible=True),
            gr.update(visible=False), gr.update(value=None, visible=False), None, gr.update(interactive=False),
            note("Counting the rows…", "info"))


def _size(source: str) -> str:
    path = Path(source)
    return f" ({path.stat().st_size / 2**20:,.1f} MB)" if path.is_file() else ""  # MB as the upload box counts


def _loaded(source: str, name: str) -> tuple:
    """Show the table's first rows and the column guesses at once, read from its head however big it is; the
    check of those guesses (`check`, chained after every load) reads all of it."""
    try:
        head, whole = read_head(source, GUESS_ROWS)
    except AdapterLabError as exc:
        return _cleared(note(str(exc), "error"))
    columns = list(head)
    guess = guess_columns(columns, head)
    pair_choices = [("(none: one text per row)", NO_PAIR)] + [(c, c) for c in columns]
    loaded = {"source": source, "name": name}
    read = f": {len(head[columns[0]]):,} rows" if whole else f"{_size(source)}: the first {PREVIEW_ROWS} rows shown"
    status = note(f"Loaded {name}{read}, {len(columns)} columns. Check the columns below.", "ok")
    widths = [f"{100 / len(columns):.1f}%"] * len(columns)  # every column in view, even on a phone
    return (loaded, gr.update(value=_preview(pd.DataFrame(head)), column_widths=widths, visible=True),
            _menu(columns, guess["text"]), _menu(pair_choices, guess["text_pair"] or NO_PAIR),
            _menu(columns, guess["label"]), status, None, gr.File(value=None), *_pending(name))


@friendly
def load_upload(path: str | None = None) -> tuple:
    return _loaded(path, Path(path).name) if path else _cleared()


@friendly
def load_demo(choice: str | None) -> tuple:
    return _loaded(str(DEMOS[choice]), DEMOS[choice].name) if choice in DEMOS else _cleared()


@friendly
def load_folder(name: str | None) -> tuple:
    if not name:
        return _cleared()
    try:
        path = services.dataset_path(name)
    except AdapterLabError as exc:
        return _cleared(note(str(exc), "error"))
    return _loaded(str(path), name)


@friendly
def load_hub(name: str | None) -> tuple:
    name = (name or "").strip()
    if not name:
        return _cleared(note("Type a dataset name, for example imdb or glue:sst2, then press Load.", "warn"))
    return _loaded(name, name)


def folder_hint(files: list[str]) -> str:
    """Where the server's tables come from, said when there are none yet."""
    if files:
        return ""
    return note(f"No tables in the server's datasets folder yet. Put {FORMATS} files in {services.datasets_dir()} "
                "on the server, then press Refresh list.", "info")


def switch_source(kind: str) -> tuple:
    """A change of source forgets the data of the old one: its boxes, its file and everything shown from it."""
    files = services.dataset_files() if kind == SOURCES[2] else []
    boxes = [gr.update(visible=kind == s) for s in SOURCES]
    return (*boxes, gr.update(value=None), gr.Radio(value=None), _menu(files, None), folder_hint(files),
            *_cleared())


def refresh_folder(current: str | None, loaded: dict | None) -> tuple:
    """Re-read the folder; a chosen table that is still there stays chosen (and loaded), else all is cleared."""
    files = services.dataset_files()
    if current in files and loaded:
        return (_menu(files, current), folder_hint(files), *(gr.skip(),) * len(_cleared()))
    return (_menu(files, None), folder_hint(files), *_cleared())


@friendly
def check(loaded: dict | None, text: str | None, pair: str | None, label: str | None, validation: dict | None,
          table: pd.DataFrame | None) -> tuple:
    """Columns or validation file changed: check again, keeping the names given to labels that remain."""
    return _checked(loaded, text, pair, label, validation, _names(table))


@friendly
def rename(loaded: dict | None, text: str | None, pair: str | None, label: str | None, validation: dict | None,
           table: pd.DataFrame | None) -> tuple:
    """The rename table was edited: check with the new names, leaving the table as the user typed it."""
    return _checked(loaded, text, pair, label, validation, _names(table), rebuild=False)


def set_validation(path: str | None = None) -> dict | None:
    return {"path": path, "name": Path(path).name} if path else None


def build(max_upload_mb: int) -> DataTab:
    gr.Markdown(f"## Step 1 · Choose your data\nA table with one text per row (or two, for pairs) and a label "
                f"column: {FORMATS}.")
    loaded, validation, chosen = gr.State(None), gr.State(None), gr.State(None)
    kind = gr.Radio(SOURCES, value=SOURCES[0], label="Where is the data?", elem_id="data-source")
    with gr.Group(visible=True) as upload_box:
        upload = gr.File(label=f"Upload a table (up to {size_limit(max_upload_mb)})", file_types=FILE_TYPES,
                         elem_id="data-upload", height=120)
    with gr.Group(visible=False) as demo_box:
        demo = gr.Radio(list(DEMOS), label="Demo data set", elem_id="data-demo")
    with gr.Group(visible=False) as folder_box:
        with gr.Row(equal_height=True):
            folder = gr.Dropdown([], label="Datasets on the server", scale=4, elem_id="data-folder",
                                 info=f"Tables placed in {services.datasets_dir()}")
            refresh = gr.Button("↻ Refresh list", scale=1, size="md", elem_id="data-folder-refresh")
        folder_note = gr.Markdown(elem_id="data-folder-note")
    with gr.Group(visible=False) as hub_box:
        with gr.Row(equal_height=True):
            hub = gr.Textbox(label="Hugging Face dataset name", placeholder="e.g. imdb, or glue:sst2", scale=4,
                             elem_id="data-hub", info="The server downloads the 'train' split; it needs internet "
                                                      "access.")
            hub_load = gr.Button("Load", scale=1, size="md", elem_id="data-hub-load")
    status = gr.Markdown(elem_id="data-status")
    preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows", visible=False, interactive=False, wrap=True,
                           max_height=400, elem_id="data-preview")
    gr.Markdown("### Which columns hold what?")
    with gr.Row(elem_classes=["al-stack"]):
        text = gr.Dropdown([], label="Text column", info="The text to classify.", elem_id="col-text")
        pair = gr.Dropdown([], label="Second text column (optional)", elem_id="col-pair",
                           info="Only for pairs, e.g. question + answer.")
        label = gr.Dropdown([], label="Label column", info="The category to predict.", elem_id="col-label")
    with gr.Accordion("Optional: a separate validation file", open=False):
        gr.Markdown("By default 10% of the rows are held out to measure accuracy. Upload a file with the same "
                    "columns to measure on it instead.")
        val_upload = gr.File(label="Validation table", file_types=FILE_TYPES, height=100, elem_id="data-validation")
    with gr.Row(elem_classes=["al-stack"]):
        report = gr.Markdown(visible=False, elem_id="data-report")
        chart = gr.HTML(visible=False, elem_id="label-chart")
    balance_button = gr.Button("⚖ Balance classes when training", visible=False, size="md", scale=0,
                               min_width=300, elem_id="data-balance")
    renames = gr.Dataframe(headers=RENAME_HEADERS, label="Label names: type a clearer name for a label "
                           "(e.g. 0 → negative); it is kept with the job and the adapter", visible=False,
                           interactive=True, static_columns=[0], column_count=2, elem_id="data-label-names")
    with gr.Row(equal_height=True):
        next_button = gr.Button("Next: choose how to train →", variant="primary", interactive=False,
                                elem_id="data-next", scale=3)
        next_hint = gr.Markdown(note("Choose the data first.", "info"), elem_id="data-next-hint")

    named = {"loaded": loaded, "preview": preview, "text": text, "pair": pair, "label": label, "status": status,
             "validation": validation, "val_upload": val_upload, "report": report, "chart": chart,
             "renames": renames, "chosen": chosen, "next_button": next_button, "next_hint": next_hint}
    checked = [named[n] for n in CHECKED]
    shown = [named[n] for n in SHOWN]
    boxes = [upload_box, demo_box, folder_box, hub_box]
    kind.change(switch_source, kind, [*boxes, upload, demo, folder, folder_note, *shown])
    refresh.click(refresh_folder, [folder, loaded], [folder, folder_note, *shown])
    columns = [loaded, text, pair, label, validation, renames]
    upload.upload(load_upload, upload, shown).then(check, columns, checked)
    upload.clear(load_upload, None, shown)
    demo.input(load_demo, demo, shown).then(check, columns, checked)
    folder.input(load_folder, folder, shown).then(check, columns, checked)
    hub_load.click(load_hub, hub, shown).then(check, columns, checked)
    hub.submit(load_hub, hub, shown).then(check, columns, checked)
    val_upload.upload(set_validation, val_upload, validation).then(check, columns, checked)
    val_upload.clear(set_validation, None, validation).then(check, columns, checked)
    gr.on([text.input, pair.input, label.input], check, columns, checked)
    renames.input(rename, columns, checked)
    chosen.change(lambda c: gr.update(visible=bool(c and c.get("imbalanced"))), chosen, balance_button)
    return DataTab(chosen, next_button, balance_button)
