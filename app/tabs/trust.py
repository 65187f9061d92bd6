"""The job page's "Can I trust it?" section: test files, the error browser, calibration, the decision threshold and
suspicious labels of a finished job.

Callbacks only read the job's stored rows (app/trust_views.py) or call the engine through app.services; an
evaluation runs in this process with the shared Predictor (seconds for a few thousand rows), while the page stays
usable. Nothing here trains.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from app import access, services
from app import trust_views as views
from app.security import check_job_id, safe_filename, uploaded_path
from app.tabs.data import FILE_TYPES, GUESS_ROWS
from app.ui import friendly, note
from engine.adapter_io import read_metadata
from engine.data import guess_columns, read_table
from engine.errors import AdapterLabError, ConfigError
from engine.thresholds import positive_label, set_temperature_use
from worker import api as jobs
from worker import evaluations
from worker.access import check_change

RULES = {"Best F1": "max_f1", "At least this precision": "precision", "At least this recall": "recall"}


def _finished(job_id: str | None) -> tuple[str, Path] | None:
    """(job id, adapter folder) of a finished job with an AdapterLab adapter, else None."""
    try:
        job_id = check_job_id(job_id or "")
        folder = evaluations.finished_adapter(job_id, access.current())
        read_metadata(folder)
    except AdapterLabError:  # no job, not finished, or a folder from elsewhere: no section
        return None
    return job_id, folder


def load(job_id: str | None):
    """The whole section for a job: hidden unless it finished with an adapter."""
    found = _finished(job_id)
    if found is None:
        return (gr.update(visible=False), *(gr.skip(),) * 10)
    job_id, folder = found
    meta = read_metadata(folder)
    binary = len(meta["labels"]) == 2
    choices = views.sources(job_id, access.current())
    issues = evaluations.label_issues(job_id)
    issues_csv = views.csv_file(issues, services.work_dir(), "suspicious-labels.csv") if len(issues) else None
    label = positive_label(meta, (meta.get("threshold") or {}).get("label")) if binary else None
    return (gr.update(visible=True), views.evaluations_frame(job_id, access.current()),
            gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
            views.reliability_frame(meta.get("calibration")), views.calibration_words(meta),
            gr.update(value=meta.get("apply_temperature", True), interactive="temperature" in meta),
            gr.update(visible=binary), gr.Radio(choices=meta["labels"], value=label),
            views.issues_words(issues), views.issues_table(issues),
            gr.update(value=str(issues_csv) if issues_csv else None, visible=issues_csv is not None))


@friendly
def columns_for(job_id: str | None, path: str | None):
    """Column menus for an uploaded test file, pre-set to the columns the adapter was trained on."""
    if not path:
        return (gr.Dropdown(choices=[], value=None),) * 3
    found = _finished(job_id)
    meta = read_metadata(found[1]) if found else {}
    frame = read_table(uploaded_path(path, get_upload_folder()))
    columns = list(map(str, frame.columns))
    guess = guess_columns(columns, {c: frame[c].head(GUESS_ROWS).tolist() for c in frame.columns})

    def chosen(key: str, guessed: str | None) -> str | None:
        return meta.get(key) if meta.get(key) in columns else guessed

    return (gr.Dropdown(choices=columns, value=chosen("text_column", guess.get("text"))),
            gr.Dropdown(choices=["", *columns], value=chosen("text_pair_column", guess.get("pair")) or ""),
            gr.Dropdown(choices=columns, value=chosen("label_column", guess.get("label"))))


def evaluate(job_id: str | None, path: str | None, text: str | None, pair: str | None, label: str | None):
    """Evaluate the job's adapter on the uploaded file; the result joins the list and opens in the error browser."""
    try:
        if not path:
            raise ConfigError("Upload a labelled test file first.")
        if not text or not label:
            raise ConfigError("Choose the text and label columns of the test file.")
        job_id = check_job_id(job_id or "")
        source = uploaded_path(path, get_upload_folder())
        done = services.evaluate_file(job_id, source, Path(path).name, text, pair or None, label, access.current())
    except AdapterLabError as exc:  # said in the page, beside the button; nothing is stored
        return note(str(exc), "error"), gr.skip(), gr.skip()
    m = done["metrics"]
    return (note(f"{done['file_name']}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on "
                 f"{done['rows']:,} rows. Its rows are in the error browser.", "ok"),
            views.evaluations_frame(job_id, access.current()),
            gr.Dropdown(choices=views.sources(job_id, access.current()), value=done["id"]))


def _rows(job_id: str | None, source: str | None) -> tuple[pd.DataFrame, list[str]]:
    found = _finished(job_id)
    if found is None or not source:
        return pd.DataFrame(), []
    return views.rows(found[0], source, str(found[1]), access.current())


def browse(job_id: str | None, source: str | None, cell: list | None, search: str, only_errors: bool, sort: str,
           number: float | None):
    """The confusion matrix, the words on the filter, one page of the filtered rows, its caption and number, and
    the download button holding every filtered row (a download button sends the file it holds when clicked)."""
    frame, labels = _rows(job_id, source)
    if frame.empty:
        return (pd.DataFrame(), views.cell_words(None), pd.DataFrame(), "No rows stored for this choice.", 1,
                gr.update(value=None, visible=False))
    chosen = tuple(cell) if cell else None
    shown = views.filtered(frame, chosen, search, only_errors, sort)
    rows, caption, number = views.page(shown, number or 1)
    csv = views.csv_file(shown, services.work_dir(), f"{safe_filename(source)}-rows.csv")
    return (views.confusion_frame(frame, labels), views.cell_words(chosen),
            gr.Dataframe(rows, column_widths=views.widths(rows)), caption, number,
            gr.update(value=str(csv), visible=not shown.empty))


def pick_cell(matrix: pd.DataFrame, evt: gr.SelectData):
    """A click on a count filters to its (true, predicted) cell; a click on a label shows every cell again."""
    row, column = evt.index
    if column == 0:
        return None, 1
    return [str(matrix.iloc[row, 0]), str(matrix.columns[column])], 1


@friendly
def use_temperature(job_id: str | None, on: bool):
    found = _finished(job_id)
    if found is None:
        return gr.skip()
    check_change(access.current(), "change the probabilities of", found[0], jobs.get_job(found[0])["owner"])
    set_temperature_use(found[1], on)
    gr.Info("Predict now uses the calibrated probabilities." if on else "Predict now uses the raw probabilities.")
    return views.threshold_words(read_metadata(found[1]))


def threshold_view(job_id: str | None, label: str | None):
    """The precision/recall curve of `label` on validation, the saved threshold, and its confusion matrix."""
    found = _finished(job_id)
    frame, labels = _rows(job_id, "validation")
    if found is None or frame.empty or len(labels) != 2 or label not in labels:
        return pd.DataFrame(columns=["threshold", "score", "measure"]), "", ""
    meta = read_metadata(found[1])
    matrix = views.confusion_frame(frame, labels)  # as predict decides now, with the saved threshold
    cm = {"labels": labels, "confusion_matrix": matrix[labels].to_numpy().tolist()}
    from app.job_views import confusion_html  # the job page's own matrix

    return views.pr_frame(evaluations.stored_rows(found[0], "validation"), meta, label), views.threshold_words(meta), \
        confusion_html(cm)


@friendly
def apply_threshold(job_id: str | None, label: str | None, rule: str, target: float | None):
    services.set_threshold(check_job_id(job_id or ""), RULES[rule], target, label, access.current())
    return threshold_view(job_id, label)


@friendly
def remove_threshold(job_id: str | None, label: str | None):
    services.set_threshold(check_job_id(job_id or ""), None, None, None, access.current())
    return threshold_view(job_id, label)


def build(picker: gr.Dropdown, refresh_on: gr.components.Component) -> None:
    """The section under a job's details; it (re)loads when the job shown changes or finishes."""
    cell, number_state = gr.State(None), gr.State(1)
    with gr.Column(visible=False, elem_id="trust") as section:
        gr.Markdown("### Can I trust it?\nTest it on data it has never seen, see where it is wrong, how sure it is, "
                    "and which of your labels look wrong.")
        with gr.Tabs():
            with gr.Tab("Test file", elem_id="trust-test"):
                with gr.Row():
                    test_file = gr.File(label="Labelled test file", file_types=FILE_TYPES, elem_id="trust-file",
                                        scale=2)
                    with gr.Column(scale=3):
                        with gr.Row():
                            text_col = gr.Dropdown([], label="Text column", elem_id="trust-text")
                            pair_col = gr.Dropdown([], label="Second text column (pairs)", elem_id="trust-pair")
                            label_col = gr.Dropdown([], label="Label column", elem_id="trust-label")
                        run = gr.Button("Evaluate", variant="primary", elem_id="trust-evaluate")
                status = gr.HTML(elem_id="trust-status")
                table = gr.Dataframe(label="Evaluations of this adapter", interactive=False,
                                     elem_id="trust-evaluations")
            with gr.Tab("Errors", elem_id="trust-errors"):
                source = gr.Dropdown([], label="Rows of", elem_id="trust-source")
                with gr.Row():
                    matrix = gr.Dataframe(label="Confusion matrix (click a count to see its rows)",
                                          interactive=False, elem_id="trust-matrix", scale=2)
                    with gr.Column(scale=3):
                        cell_words = gr.Markdown(elem_id="trust-cell")
                        with gr.Row():
                            search = gr.Textbox(label="Search the text", elem_id="trust-search", scale=2)
                            only_errors = gr.Checkbox(False, label="Only errors", elem_id="trust-only-errors")
                        sort = gr.Radio(list(views.SORTS), value=views.SORTS[0], label="Order",
                                        elem_id="trust-sort")
                caption = gr.Markdown(elem_id="trust-caption")
                rows = gr.Dataframe(interactive=False, wrap=True, max_height=520, elem_id="trust-rows")
                with gr.Row():
                    previous = gr.Button("← Previous", size="sm", elem_id="trust-prev", scale=0, min_width=120)
                    following = gr.Button("Next →", size="sm", elem_id="trust-next", scale=0, min_width=120)
                    rows_csv = gr.DownloadButton("⬇ These rows (.csv)", size="sm", elem_id="trust-download",
                                                 scale=0, min_width=180)
            with gr.Tab("Calibration", elem_id="trust-calibration"):
                with gr.Row():
                    reliability = gr.LinePlot(x="confidence", y="accuracy", color="curve", x_lim=[0, 1],
                                              y_lim=[0, 1], title="Reliability on the validation split",
                                              height=320, elem_id="trust-reliability", scale=3)
                    with gr.Column(scale=2):
                        calibration_words = gr.Markdown(elem_id="trust-calibration-words")
                        temperature = gr.Checkbox(True, label="Use the calibrated probabilities (CLI, Playground, "
                                                  "API)", elem_id="trust-temperature")
            with gr.Tab("Threshold", elem_id="trust-threshold-tab") as threshold_tab:
                with gr.Row():
                    pr_plot = gr.LinePlot(x="threshold", y="score", color="measure", x_lim=[0, 1], y_lim=[0, 1],
                                          title="Precision and recall against the threshold (validation)",
                                          height=320, elem_id="trust-pr", scale=3)
                    with gr.Column(scale=2):
                        positive = gr.Radio([], label="Threshold for the label", elem_id="trust-positive")
                        rule = gr.Radio(list(RULES), value="Best F1", label="Operating point",
                                        elem_id="trust-rule")
                        target = gr.Number(0.9, label="Target (for precision or recall)", minimum=0, maximum=1,
                                           step=0.01, elem_id="trust-target")
                        with gr.Row():
                            apply = gr.Button("Save this threshold", variant="primary", elem_id="trust-apply")
                            remove = gr.Button("Remove", elem_id="trust-remove")
                threshold_words = gr.Markdown(elem_id="trust-threshold")
                threshold_matrix = gr.HTML(elem_id="trust-threshold-matrix")
            with gr.Tab("Suspicious labels", elem_id="trust-issues-tab"):
                issues_words = gr.Markdown(elem_id="trust-issues-words")
                issues = gr.Dataframe(interactive=False, wrap=True, max_height=520, elem_id="trust-issues")
                issues_csv = gr.DownloadButton("⬇ All suspicious rows (.csv)", size="sm", elem_id="trust-issues-csv")

    loaded = [section, table, source, reliability, calibration_words, temperature, threshold_tab, positive,
              issues_words, issues, issues_csv]
    for event in (picker.change, refresh_on.change):
        event(load, picker, loaded, show_progress="hidden")
    test_file.upload(columns_for, [picker, test_file], [text_col, pair_col, label_col])
    run.click(evaluate, [picker, test_file, text_col, pair_col, label_col], [status, table, source],
              concurrency_limit=1, concurrency_id="evaluate")
    filters = [picker, source, cell, search, only_errors, sort]
    shown = [matrix, cell_words, rows, caption, number_state, rows_csv]
    source.change(lambda: (None, 1), None, [cell, number_state]).then(browse, [*filters, number_state], shown)
    for control in (search, only_errors, sort):
        control.change(browse, [*filters, gr.State(1)], shown, show_progress="hidden")
    matrix.select(pick_cell, matrix, [cell, number_state]).then(browse, [*filters, number_state], shown)
    previous.click(lambda n: max(1, n - 1), number_state, number_state).then(browse, [*filters, number_state], shown)
    following.click(lambda n: n + 1, number_state, number_state).then(browse, [*filters, number_state], shown)
    threshold_shown = [pr_plot, threshold_words, threshold_matrix]
    temperature.input(use_temperature, [picker, temperature], threshold_words).then(
        threshold_view, [picker, positive], threshold_shown).then(browse, [*filters, number_state], shown)
    positive.change(threshold_view, [picker, positive], threshold_shown)
    apply.click(apply_threshold, [picker, positive, rule, target], threshold_shown).then(
        browse, [*filters, number_state], shown)
    remove.click(remove_threshold, [picker, positive], threshold_shown).then(browse, [*filters, number_state], shown)
