"""The Jobs tab's comparison: two jobs or more, their validation curves overlaid, their results side by side and
only the settings that differ, highlighted. Its address (`?tab=jobs&compare=ID,ID`) can be shared.

It reads the job store (worker.api) through app/compare_views.py; nothing here trains.
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from app import access
from app import compare_views as views
from app.job_views import job_label
from app.security import check_job_id
from app.ui import friendly, note
from engine.errors import AdapterLabError
from worker import api as jobs

CURVES = {"Macro-F1": "macro_f1", "Accuracy": "accuracy", "Validation loss": "loss"}
COMPARE_JS = ("(ids) => { const params = new URLSearchParams(location.search); "
              "ids && ids.length ? params.set('compare', ids.join(',')) : params.delete('compare'); "
              "history.replaceState(history.state, '', '?' + params + location.hash); }")


def chosen_jobs(ids: list[str] | None) -> list[dict]:
    """The jobs of these ids that still exist, in the order chosen."""
    found, actor = [], access.current()
    for job_id in ids or []:
        try:
            found.append(jobs.get_job(check_job_id(job_id), actor))
        except AdapterLabError:
            continue
    return found


def curve_frame(result: dict, curve: str) -> pd.DataFrame:
    """One curve per job: the chosen validation score per epoch."""
    key = CURVES[curve]
    rows = [{"epoch": h["epoch"], "score": round(h[key], 4), "job": f"{j['name']} · {j['id']}"}
            for j in result["jobs"] for h in j["history"]]
    return pd.DataFrame(rows, columns=["epoch", "score", "job"])


def results_frame(result: dict) -> pd.DataFrame:
    def cell(value: object, digits: int) -> object:
        return round(value, digits) if isinstance(value, float) else value

    return pd.DataFrame([[j["name"], j["id"], j["state"], cell(j["macro_f1"], 4), cell(j["accuracy"], 4),
                          j["trainable_params"], cell(j["size_mb"], 3), cell(j["train_seconds"], 1),
                          cell(j["samples_per_second"], 1)] for j in result["jobs"]],
                        columns=["job", "id", "state", "macro-F1", "accuracy", "trainable parameters",
                                 "size (MB)", "training (s)", "samples/s"])


def differences_html(result: dict) -> str:
    """The settings that differ as a table, one column per job; the cells that differ from the first job are
    highlighted."""
    diffs = result["differences"]
    if not diffs:
        return note("These jobs were trained with the same settings.", "info")
    head = "".join(f"<th>{html.escape(j['name'])}<br><code>{j['id']}</code></th>" for j in result["jobs"])
    body = "".join(
        f"<tr><th scope='row'>{html.escape(name)}</th>" + "".join(
            f"<td class='{'al-differs' if i and v != values[0] else ''}'>{html.escape(v)}</td>"
            for i, v in enumerate(values)) + "</tr>" for name, values in diffs.items())
    return (f"<div class='al-compare'><div class='al-caption'>Settings that differ ({len(diffs)}); highlighted: "
            f"not as in the first job.</div><table><tr><th></th>{head}</tr>{body}</table></div>")


@friendly
def show(ids: list[str] | None):
    """The words above, one overlaid plot per curve, the results and the differing settings."""
    found = chosen_jobs(ids)
    if len(found) < 2:
        hidden = gr.update(visible=False)
        return note("Choose two jobs or more to compare them.", "info"), *(hidden,) * (len(CURVES) + 2)
    result = views.compare(found)
    plots = [curve_frame(result, curve) for curve in CURVES]
    return ("", *[gr.update(value=frame, visible=not frame.empty) for frame in plots],
            gr.update(value=results_frame(result), visible=True),
            gr.update(value=differences_html(result), visible=True))


def build(choices: list[tuple[str, str]]) -> tuple[gr.Accordion, gr.Dropdown]:
    """The comparison, in an accordion above the job page; returns it and its job menu (the address fills
    them)."""
    with gr.Accordion("Compare jobs", open=False, elem_id="compare") as section:
        picker = gr.Dropdown(choices, value=[], multiselect=True, label="Jobs to compare", elem_id="compare-picker",
                             info="Two or more: their curves, results and the settings that differ.")
        status = gr.HTML(note("Choose two jobs or more to compare them.", "info"), elem_id="compare-status")
        with gr.Row():
            plots = [gr.LinePlot(x="epoch", y="score", color="job", visible=False, height=260,
                                 title=f"{curve} per epoch (validation)", elem_id=f"compare-{key}")
                     for curve, key in CURVES.items()]
        results = gr.Dataframe(interactive=False, visible=False, label="Results", elem_id="compare-results")
        settings = gr.HTML(visible=False, elem_id="compare-settings")
    shown = [status, *plots, results, settings]
    picker.change(show, picker, shown, show_progress="hidden")
    picker.change(None, picker, None, js=COMPARE_JS)
    section.expand(lambda: gr.update(choices=menu()), None, picker)
    return section, picker


def menu() -> list[tuple[str, str]]:
    return [(job_label(j), j["id"]) for j in jobs.list_jobs(access.current())]


def landing(ids: str | None):
    """The comparison an address names (`compare=ID,ID`): the accordion opened and the jobs chosen."""
    wanted = [i for i in (ids or "").split(",") if i]
    if not wanted:
        return gr.skip(), gr.skip()
    return gr.Accordion(open=True), gr.Dropdown(choices=menu(), value=[j["id"] for j in chosen_jobs(wanted)])
